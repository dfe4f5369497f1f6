/**
 * The host side of the kernel thread pool. N workers instantiate the module over the shared
 * memory; they may first run load jobs (reading the model in parallel), then sit in
 * `bn_worker_loop`. A command is posted by bumping `pool.cmd_gen` (Atomics.notify) and its end is
 * awaited with `Atomics.waitAsync` on `pool.done_gen`, so the host isolate never blocks.
 *
 * @module
 */
import type { AbiLayout, KernelModule } from "../../wasm/loader.ts";
import { BN_CMD } from "../../wasm/loader.ts";
import type { LoadJob, LoadJobError } from "../../wasm/load_jobs.ts";
import type { Region } from "../model/memory_plan.ts";

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

/** A started pool: `load` (optional), then `enterLoop`, then `run` commands one at a time. */
export class ThreadPool {
  readonly threads: number;
  readonly #memory: WebAssembly.Memory;
  readonly #w: PoolWords;
  readonly #workers: Worker[];
  /** Per-worker message handlers for the current phase (load). */
  readonly #listeners: ((data: Record<string, unknown>) => void)[];
  #tail: Promise<unknown> = Promise.resolve();
  #broken: Error | null = null;
  #onBroken: ((e: Error) => void)[] = [];
  #looping = false;
  #closed = false;

  private constructor(memory: WebAssembly.Memory, words: PoolWords, workers: Worker[]) {
    this.#memory = memory;
    this.#w = words;
    this.#workers = workers;
    this.threads = workers.length;
    this.#listeners = [];
  }

  /**
   * Starts `stackTops.length` workers over `memory`, all sharing the bn_ctx at `ctx`, and waits
   * until each has instantiated the module. `spin` is how many polls a waiting worker makes
   * before it sleeps. 200000 polls outlast the main isolate's work between two decode steps, so
   * workers rarely need a futex wake: 2B4T decode at 2 threads took 49 ms/token against 58 with
   * 20000 polls (means of 3 runs each; the spread between runs was +-6 ms).
   */
  static async start(
    km: KernelModule,
    memory: WebAssembly.Memory,
    abi: AbiLayout,
    ctx: number,
    stackTops: readonly number[],
    spin = 200000,
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
        const worker = new Worker(new URL("../../wasm/worker.ts", import.meta.url), { type: "module" });
        workers.push(worker);
        worker.onmessage = (e: MessageEvent) => {
          const data = e.data ?? {};
          if (data.ready) resolve();
          else if (data.fatal) {
            const err = new PoolBrokenError(`kernel worker ${ith} failed: ${data.fatal}`);
            reject(err);
            pool.#fail(err);
          } else pool.#listeners[ith]?.(data);
        };
        worker.onerror = (e) => {
          e.preventDefault();
          const err = new PoolBrokenError(`kernel worker ${ith} failed: ${e.message}`);
          reject(err);
          pool.#fail(err);
        };
        worker.postMessage({ type: "init", module: km.module, memory, ctx, ith, stackTop });
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

  /**
   * Runs `jobs[i]` on worker i (file `path`, staging `stages[i]`) and resolves with the first
   * failure, or null. `onProgress` gets the bytes each worker reports.
   */
  async load(
    path: string,
    jobs: readonly LoadJob[][],
    stages: readonly Region[],
    onProgress?: (bytes: number) => void,
  ): Promise<LoadJobError | null> {
    if (this.#looping) throw new Error("load() must come before enterLoop()");
    const results = this.#workers.map((worker, ith) =>
      new Promise<LoadJobError | null>((resolve, reject) => {
        this.#onBroken.push(reject);
        this.#listeners[ith] = (data) => {
          if (typeof data.progress === "number") onProgress?.(data.progress);
          else if (data.loaded) resolve((data.error as LoadJobError | null) ?? null);
        };
        worker.postMessage({ type: "load", path, jobs: jobs[ith] ?? [], stage: stages[ith] });
      })
    );
    try {
      const errors = await Promise.all(results);
      return errors.find((e) => e !== null) ?? null;
    } finally {
      this.#onBroken = [];
      this.#listeners.length = 0;
    }
  }

  /** Sends every worker into `bn_worker_loop`; commands can run afterwards. */
  enterLoop(): void {
    if (this.#looping) return;
    this.#looping = true;
    for (const worker of this.#workers) worker.postMessage({ type: "loop" });
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
    if (!this.#looping) throw new Error("run() before enterLoop()");
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
    if (this.#broken || !this.#looping) return this.#terminate();
    const exited = this.#workers.map((worker) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        worker.addEventListener("message", (e: MessageEvent) => {
          if (e.data?.exited !== undefined) {
            clearTimeout(timer);
            resolve();
          }
        });
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
