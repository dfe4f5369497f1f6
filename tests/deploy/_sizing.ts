/**
 * The memory budget the deploy files are sized from: the plan the server prints at start for the
 * 2B4T model plus the runtime around it. Weights and scratch are what `engine.describe()` printed
 * for the 2B4T-shaped model (Q7 head, 128-token batch); the KV cache is computed for the settings.
 */
import { kvCacheBytes, type PlanShape } from "../../engine/model/memory_plan.ts";

const MIB = 2 ** 20;

/** microsoft/bitnet-b1.58-2B-4T. */
export const SHAPE_2B4T: PlanShape = {
  dim: 2560,
  nLayers: 30,
  nHeads: 20,
  nKvHeads: 5,
  headDim: 128,
  ffnDim: 6912,
  nVocab: 128256,
};

/** "weights 850.8 MiB ... scratch 18.7 MiB" (describe(), head Q7). */
export const WEIGHTS_MIB = 850.8;
export const SCRATCH_MIB = 18.7;
/** The rest of the plan's 1.44 GiB total: stacks, RoPE tables, batch arrays, page alignment. */
export const OTHER_MIB = 5;
/** deno + V8 (~80 MiB measured) with margin, and one worker isolate (~15 MiB measured) per thread. */
export const RUNTIME_MIB = 128;
export const PER_THREAD_MIB = 16;

/** Plan total in MiB for the 2B4T model at these settings. */
export function planMiB(nCtx: number, nSlots: number): number {
  return WEIGHTS_MIB + kvCacheBytes(SHAPE_2B4T, { nCtx, nSlots }) / MIB + SCRATCH_MIB + OTHER_MIB;
}

/** The least memory limit (MiB): plan total + the prompt cache (BN_CACHE_MEM) + runtime + threads. */
export function budgetMiB(nCtx: number, nSlots: number, threads: number, cacheMiB: number): number {
  return planMiB(nCtx, nSlots) + cacheMiB + RUNTIME_MIB + PER_THREAD_MIB * threads;
}

/** "1792Mi", "2Gi", "1700M" (systemd's M is MiB) -> MiB. */
export function parseMiB(q: string): number {
  const m = q.match(/^(\d+(?:\.\d+)?)(Mi|Gi|M|G)$/);
  if (!m) throw new SyntaxError(`Cannot read the memory quantity "${q}"`);
  return Number(m[1]) * (m[2].startsWith("G") ? 1024 : 1);
}
