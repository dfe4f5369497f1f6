/**
 * The host side of the kernel thread pool: N workers sit in `bn_worker_loop` over the shared
 * memory; a command is posted by bumping `pool.cmd_gen` (Atomics.notify) and its end is awaited
 * with `Atomics.waitAsync` on `pool.done_gen`, so the host isolate never blocks.
 *
 * @module
 */
import type { AbiLayout, KernelModule, WorkerInit } from "../wasm/loader.ts";
import { BN_CMD } from "../wasm/loader.ts";

/** Thrown when a worker failed; the pool cannot run anything afterwards. */
export class PoolBrokenError extends Error {
  override name = "PoolBrokenError";
}

interface PoolWords {
  cmdGen: number;
  doneGen: number;
  abort: number;
  cmd: number;
  status: number;
  nth: number;
  spin: number;
}

/** A started pool. One command at a time; `run` calls queue behind each other. */
export class ThreadPool {
  readonly threads: number;
  readonly #memory: WebAssembly.Memory;
  readonly #w: PoolWords;
  readonly #workers: Worker[];
  #tail: Promise<unknown> = Promise.resolve();
  #broken: Error | null = null;
  #onBroken: ((e: Error) => void)[] = [];
  #closed = false;

  private constructor(memory: WebAssembly.Memory, words: PoolWords, workers: Worker[]) {
    this.#memory = memory;
    this.#w = words;
    this.#workers = workers;
    this.threads = workers.length;
  }

  /**
   * Starts `stackTops.length` workers over `memory`, all sharing the bn_ctx at `ctx`.
   * `spin` is how many polls a waiting worker makes before it sleeps.
   */
  static async start(
    km: KernelModule,
    memory: WebAssembly.Memory,
    abi: AbiLayout,
    ctx: number,
    stackTops: readonly number[],
    spin = 20000,
  ): Promise<ThreadPool> {
    const off = (name: string) => {
      const o = abi.offsets.get(name);
      if (o === undefined) throw new Error(`kernel ABI has no field ${name}`);
      return (ctx + o) >>> 2;
    };
    const words: PoolWords = {
      cmdGen: off("pool.cmd_gen"),
      doneGen: off("pool.done_gen"),
      abort: off("pool.abort"),
      cmd: off("pool.cmd"),
      status: off("pool.status"),
      nth: off("pool.nth"),
      spin: off("pool.spin"),
    };
    const i32 = new Int32Array(memory.buffer);
    for (const w of Object.values(words)) Atomics.store(i32, w, 0);
    Atomics.store(i32, words.nth, stackTops.length);
    Atomics.store(i32, words.spin, spin);
    const workers: Worker[] = [];
    const pool = new ThreadPool(memory, words, workers);
    const ready = stackTops.map((stackTop, ith) =>
      new Promise<void>((resolve, reject) => {
        const worker = new Worker(new URL("../wasm/worker.ts", import.meta.url), { type: "module" });
        workers.push(worker);
        worker.onmessage = (e: MessageEvent) => {
          if (e.data?.ready) resolve();
          else if (e.data?.error) {
            const err = new PoolBrokenError(`kernel worker ${ith} failed: ${e.data.error}`);
            reject(err);
            pool.#fail(err);
          }
        };
        worker.onerror = (e) => {
          e.preventDefault();
          const err = new PoolBrokenError(`kernel worker ${ith} failed: ${e.message}`);
          reject(err);
          pool.#fail(err);
        };
        const init: WorkerInit = { module: km.module, memory, ctx, ith, stackTop };
        worker.postMessage(init);
      })
    );
    try {
      await Promise.all(ready);
    } catch (e) {
      pool.#terminate();
      throw e;
    }
    return pool;
  }

  /** Asks a running command to stop at the next layer boundary (it then returns ABORTED). */
  setAbort(on: boolean): void {
    Atomics.store(new Int32Array(this.#memory.buffer), this.#w.abort, on ? 1 : 0);
  }

  /** Posts `cmd` to every worker and resolves with the status thread 0 reports. */
  run(cmd: number): Promise<number> {
    const next = this.#tail.then(() => this.#runNow(cmd));
    this.#tail = next.catch(() => {});
    return next;
  }

  async #runNow(cmd: number): Promise<number> {
    if (this.#broken) throw this.#broken;
    if (this.#closed) throw new PoolBrokenError("the kernel pool is closed");
    const i32 = new Int32Array(this.#memory.buffer);
    const w = this.#w;
    Atomics.store(i32, w.cmd, cmd);
    const gen = Atomics.add(i32, w.cmdGen, 1) + 1;
    Atomics.notify(i32, w.cmdGen);
    let failed: ((e: Error) => void) | undefined;
    const broken = new Promise<never>((_, reject) => {
      failed = reject;
      this.#onBroken.push(reject);
    });
    try {
      for (;;) {
        const seen = Atomics.load(i32, w.doneGen);
        if (seen === gen) break;
        const r = Atomics.waitAsync(i32, w.doneGen, seen);
        if (r.async) await Promise.race([r.value, broken]);
      }
    } finally {
      this.#onBroken = this.#onBroken.filter((f) => f !== failed);
    }
    return Atomics.load(i32, w.status);
  }

  #fail(err: Error): void {
    if (this.#broken) return;
    this.#broken = err;
    for (const f of this.#onBroken) f(err);
    this.#terminate();
  }

  #terminate(): void {
    for (const worker of this.#workers) worker.terminate();
  }

  /** Ends the workers (after the running command, if any). */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#tail;
    this.#closed = true;
    if (this.#broken) return;
    const exited = this.#workers.map((worker) =>
      new Promise<void>((resolve) => {
        const done = () => resolve();
        worker.addEventListener("message", (e: MessageEvent) => e.data?.exited !== undefined && done());
        setTimeout(done, 2000);
      })
    );
    const i32 = new Int32Array(this.#memory.buffer);
    Atomics.store(i32, this.#w.cmd, BN_CMD.QUIT);
    Atomics.add(i32, this.#w.cmdGen, 1);
    Atomics.notify(i32, this.#w.cmdGen);
    await Promise.all(exited);
    this.#terminate();
  }
}
