/**
 * Worker of `scripts/bench/ternary.ts`: instantiates the kernel module over the shared memory with
 * its own stack (wasm/loader.ts's WasmHost), then times ternary probe passes over the matrices it is sent.
 *
 * Messages: `{ init: { km, memory, stackTop } }` -> `{ ready: true }`; `{ run: Job }` ->
 * `{ ms }` (the wall time of the passes on this thread).
 *
 * @module
 */
import { type KernelModule, type KernelVariant, type TernaryLayout, WasmHost } from "../../wasm/loader.ts";

/** One timed run: `reps` passes of this thread's rows of every matrix against `n` activation rows. */
export interface Job {
  readonly kernel: KernelVariant;
  readonly layout: TernaryLayout;
  readonly mats: readonly {
    readonly w: number;
    readonly rows: number;
    readonly cols: number;
    readonly m0: number;
    readonly m1: number;
  }[];
  readonly q: number;
  readonly n: number;
  readonly dots: number;
  readonly reps: number;
}

declare const self: { onmessage: ((e: MessageEvent) => void) | null; postMessage(msg: unknown): void };

let host: WasmHost | null = null;

self.onmessage = async (e: MessageEvent) => {
  const { init, run } = e.data;
  if (init) {
    const { km, memory, stackTop } = init as {
      km: KernelModule;
      memory: WebAssembly.Memory;
      stackTop: number;
    };
    host = await WasmHost.create(km, memory, stackTop);
    self.postMessage({ ready: true });
    return;
  }
  const job = run as Job;
  const t0 = performance.now();
  for (let r = 0; r < job.reps; r++) {
    for (const m of job.mats) {
      // rows [m0, m1) of the matrix: the probe sees them as a matrix of their own, which the
      // layouts allow at group boundaries (m0 a multiple of 16, the codes before it skipped)
      const skip = (m.m0 * m.cols) / 4;
      const status = host!.probeI2(
        job.kernel,
        job.layout,
        m.w + skip,
        m.m1 - m.m0,
        m.cols,
        job.q,
        job.n,
        job.dots,
      );
      if (status !== 0) throw new Error(`bn_probe_i2 failed with status ${status}`);
    }
  }
  self.postMessage({ ms: performance.now() - t0 });
};
