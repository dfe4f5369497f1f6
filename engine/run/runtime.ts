/**
 * A loaded model in shared memory plus its kernel thread pool: one `forward()` call runs one batch
 * step (one WASM command for the whole batch, never one per op) and returns the logits rows.
 *
 * @module
 */
import { BN_CMD, BN_STATUS, bnClock, PROFILE_STRIDE } from "../../wasm/loader.ts";
import type { KernelVariant, TernaryLayout, TernaryProbe } from "../../wasm/loader.ts";
import { ProfileAccumulator, type StepProfile } from "./step_profile.ts";
import type { CtxWriter } from "./ctx_writer.ts";
import { SlotKv } from "./kv_slots.ts";
import type { MemoryPlan } from "../model/memory_plan.ts";
import type { ModelConfig } from "../model/model_config.ts";
import type { ThreadPool } from "./thread_pool.ts";

/** One forward step: tokens of any mix of sequences (slots) at their positions. */
export interface ForwardBatch {
  readonly tokens: ArrayLike<number>;
  readonly pos: ArrayLike<number>;
  readonly slot: ArrayLike<number>;
  /** Batch rows whose logits are wanted, ascending. */
  readonly outIdx: ArrayLike<number>;
}

/** The step was stopped by `abort()` before it finished. */
export class ForwardAbortedError extends Error {
  override name = "ForwardAbortedError";
}

/** Sizes the runtime was planned for. */
export interface RuntimeSizes {
  readonly nCtx: number;
  readonly nSlots: number;
  readonly maxBatch: number;
  readonly maxOut: number;
  readonly threads: number;
}

/** Runs forward steps; one at a time (calls queue). */
export class ModelRuntime {
  readonly config: ModelConfig;
  readonly plan: MemoryPlan;
  readonly sizes: RuntimeSizes;
  readonly kernel: KernelVariant;
  /** How the ternary matrices are laid out, and what the start-up probe measured (null: not probed). */
  readonly ternary: { readonly layout: TernaryLayout; readonly probe: TernaryProbe | null };
  /** How the LM head is stored in memory ("F16", "Q8_0", ...). */
  readonly headType: string;
  readonly memory: WebAssembly.Memory;
  /** The KV cache's slots, for saving, restoring and copying prompt prefixes between steps. */
  readonly kv: SlotKv;
  readonly #pool: ThreadPool;
  readonly #ctx: CtxWriter;
  #closed = false;
  #profile: ProfileAccumulator | null = null;

  constructor(
    args: {
      config: ModelConfig;
      plan: MemoryPlan;
      sizes: RuntimeSizes;
      kernel: KernelVariant;
      ternary: { readonly layout: TernaryLayout; readonly probe: TernaryProbe | null };
      headType: string;
      memory: WebAssembly.Memory;
      pool: ThreadPool;
      ctx: CtxWriter;
    },
  ) {
    this.config = args.config;
    this.plan = args.plan;
    this.sizes = args.sizes;
    this.kernel = args.kernel;
    this.ternary = args.ternary;
    this.headType = args.headType;
    this.memory = args.memory;
    const { nLayers, nKvHeads, headDim } = args.config, { nSlots, nCtx } = args.sizes;
    this.kv = new SlotKv(args.memory, args.plan, { nLayers, nKvHeads, headDim, nSlots, nCtx });
    this.#pool = args.pool;
    this.#ctx = args.ctx;
  }

  /**
   * Runs one step. Resolves with a view of the logits, `[outIdx.length][nVocab]`, valid until the
   * next call (copy what you keep).
   *
   * When `signal` aborts while the step runs, the workers stop at the next layer boundary.
   *
   * @throws {ForwardAbortedError} when `signal` stopped the step (or was already aborted)
   * @throws {RangeError} for a batch outside the planned sizes
   */
  async forward(batch: ForwardBatch, signal?: AbortSignal): Promise<Float32Array> {
    if (this.#closed) throw new Error("the model runtime is closed");
    if (signal?.aborted) throw new ForwardAbortedError("forward step aborted");
    const n = batch.tokens.length, nOut = batch.outIdx.length;
    const { maxBatch, maxOut, nCtx, nSlots } = this.sizes;
    if (n < 1 || n > maxBatch) throw new RangeError(`forward: ${n} tokens, expected 1..${maxBatch}`);
    if (nOut > maxOut) throw new RangeError(`forward: ${nOut} logits rows, expected at most ${maxOut}`);
    if (batch.pos.length !== n || batch.slot.length !== n) {
      throw new RangeError("forward: tokens/pos/slot lengths differ");
    }
    const buf = this.memory.buffer;
    const b = this.plan.batch;
    const tokens = new Int32Array(buf, b.tokens, n), pos = new Int32Array(buf, b.pos, n);
    const slot = new Int32Array(buf, b.slot, n), out = new Int32Array(buf, b.outIdx, Math.max(nOut, 1));
    for (let i = 0; i < n; i++) {
      const t = batch.tokens[i], p = batch.pos[i], s = batch.slot[i];
      if (!(t >= 0 && t < this.config.nVocab)) {
        throw new RangeError(`forward: token ${t} outside the vocabulary`);
      }
      if (!(p >= 0 && p < nCtx)) throw new RangeError(`forward: position ${p} outside 0..${nCtx - 1}`);
      if (!(s >= 0 && s < nSlots)) throw new RangeError(`forward: slot ${s} outside 0..${nSlots - 1}`);
      tokens[i] = t;
      pos[i] = p;
      slot[i] = s;
    }
    for (let j = 0; j < nOut; j++) {
      const o = batch.outIdx[j];
      if (!(o >= 0 && o < n) || (j > 0 && o <= batch.outIdx[j - 1])) {
        throw new RangeError("forward: bad outIdx");
      }
      out[j] = o;
    }
    this.#ctx.u32("batch.n_tokens", n);
    this.#ctx.u32("batch.n_out", nOut);
    const onAbort = () => this.#pool.setAbort(true);
    signal?.addEventListener("abort", onAbort);
    let status: number;
    try {
      const submit = this.#profile ? bnClock() : 0;
      status = await this.#pool.run(BN_CMD.FORWARD);
      if (this.#profile) {
        const rec = new Float64Array(buf, this.plan.scratch.prof.offset, this.sizes.threads * PROFILE_STRIDE);
        if (status === BN_STATUS.OK) this.#profile.add(rec, submit, bnClock());
        else rec.fill(0); // an aborted step is not a measurement
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      this.#pool.setAbort(false);
    }
    if (status === BN_STATUS.ABORTED) throw new ForwardAbortedError("forward step aborted");
    if (status !== BN_STATUS.OK) throw new Error(`forward step failed with kernel status ${status}`);
    return new Float32Array(buf, this.plan.scratch.logits.offset, nOut * this.config.nVocab);
  }

  /**
   * Turns the step profile on or off (kernels/prof.c: every worker times each part of a step; off
   * costs one load and a branch per part). While on, steps are summed until {@linkcode takeProfile}.
   * The profile is for measuring (`deno task bench`), not for serving: its clock calls cost a little.
   */
  setProfiling(on: boolean): void {
    const rec = new Float64Array(
      this.memory.buffer,
      this.plan.scratch.prof.offset,
      this.sizes.threads * PROFILE_STRIDE,
    );
    rec.fill(0);
    this.#profile = on ? new ProfileAccumulator(this.sizes.threads) : null;
    this.#ctx.u32("state.prof", on ? this.plan.scratch.prof.offset : 0);
  }

  /**
   * The mean time per step of each part since profiling was turned on or last taken, and a fresh
   * start.
   *
   * @throws {Error} when profiling is off
   */
  takeProfile(): StepProfile {
    if (!this.#profile) throw new Error("takeProfile(): profiling is off (setProfiling(true) first)");
    return this.#profile.take();
  }

  /**
   * Reads the loaded weights once per rep with every worker (kernel command SWEEP) and returns the
   * best rate in GB/s (1e9 bytes/s): the memory bandwidth decoding can use.
   */
  async sweep(reps = 5): Promise<number> {
    const regions = [...this.plan.tensors.values()];
    const start = Math.min(...regions.map((r) => r.offset));
    const end = Math.max(...regions.map((r) => r.offset + r.bytes));
    const lines = Math.floor((end - start) / 64);
    this.#ctx.u32("mm.w", start);
    this.#ctx.u32("mm.rows", lines);
    this.#ctx.u32("mm.cols", 64);
    this.#ctx.u32("mm.ydot", this.plan.scratch.logits.offset);
    let best = Infinity;
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      const status = await this.#pool.run(BN_CMD.SWEEP);
      if (status !== BN_STATUS.OK) throw new Error(`sweep failed with kernel status ${status}`);
      best = Math.min(best, performance.now() - t0);
    }
    return (lines * 64) / (best * 1e6);
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.close();
  }
}
