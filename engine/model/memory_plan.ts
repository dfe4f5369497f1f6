/**
 * Lays out the one shared WebAssembly.Memory before anything is loaded: stacks, the bn_ctx, batch
 * arrays, RoPE tables, every weight tensor at its final aligned address, scratch, logits and the KV
 * cache. wasm32 caps memory at 4 GiB; a plan that does not fit is refused with what to lower.
 *
 * @module
 */
import { PROFILE_STRIDE, type Region, STACK_BYTES } from "../../wasm/loader.ts";

/** Model dimensions the plan needs. */
export interface PlanShape {
  readonly dim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly ffnDim: number;
  readonly nVocab: number;
}

/** Run-time sizes chosen by the operator. */
export interface PlanSizes {
  /** Positions per slot (context length). */
  readonly nCtx: number;
  /** Sequences with their own KV cache. */
  readonly nSlots: number;
  /** Tokens per forward step. */
  readonly maxBatch: number;
  /** Logits rows per forward step (<= maxBatch). */
  readonly maxOut: number;
  /** Kernel worker threads. */
  readonly nThreads: number;
}

export type { Region } from "../../wasm/loader.ts";

/** Where everything lives. All offsets are byte addresses in the shared memory. */
export interface MemoryPlan {
  /** Stack tops: [host, worker 0, worker 1, ...]. */
  readonly stackTops: readonly number[];
  readonly ctx: number;
  readonly layers: number;
  readonly batch: {
    readonly tokens: number;
    readonly pos: number;
    readonly slot: number;
    readonly outIdx: number;
  };
  readonly ropeCos: number;
  readonly ropeSin: number;
  /** Final address of each placed tensor, by name. */
  readonly tensors: ReadonlyMap<string, Region>;
  readonly scratch: Readonly<Record<ScratchName, Region>>;
  readonly kCache: Region;
  readonly vCache: Region;
  /** Load-time staging for tensors that are converted (may overlap the KV cache, unused until serving). */
  readonly staging: Region;
  readonly totalBytes: number;
  readonly pages: number;
  readonly bytes: { readonly weights: number; readonly kv: number; readonly scratch: number };
}

export type ScratchName =
  | "x"
  | "xb"
  | "xq"
  | "xscale"
  | "xsum"
  | "q"
  | "att"
  | "hb"
  | "hb2"
  | "scores"
  | "hq"
  | "hscale"
  | "hsum"
  | "hxs"
  | "prof"
  | "logits";

/** wasm32's ceiling: 65536 pages of 64 KiB. */
export const WASM_MAX_BYTES = 4 * 1024 ** 3;
const PAGE = 65536;
const ALIGN = 64;

const align = (n: number, a = ALIGN) => Math.ceil(n / a) * a;

/** Human-readable byte count: "1.21 GiB", "300 MiB". */
export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/** Bytes of the f16 KV cache (K and V) for `sizes`. */
export function kvCacheBytes(shape: PlanShape, sizes: Pick<PlanSizes, "nCtx" | "nSlots">): number {
  return 2 * shape.nLayers * sizes.nSlots * shape.nKvHeads * sizes.nCtx * shape.headDim * 2;
}

/**
 * Plans the memory. `tensors` are placed in the given order (the file's order keeps reads
 * sequential); `stagingBytes` is the largest load-time conversion buffer needed.
 *
 * @example
 * ```ts
 * const plan = planMemory(shape, sizes, [{ name: "blk.0.attn_q.weight", bytes: 1638432 }], 0, 70000, 1200, 44);
 * ```
 */
export function planMemory(
  shape: PlanShape,
  sizes: PlanSizes,
  tensors: readonly { readonly name: string; readonly bytes: number }[],
  stagingBytes: number,
  heapBase: number,
  ctxBytes: number,
  layerBytes: number,
): MemoryPlan {
  for (const [k, v] of Object.entries(sizes)) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`Memory plan: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (sizes.maxOut > sizes.maxBatch) throw new RangeError("Memory plan: maxOut must not exceed maxBatch");
  let at = align(heapBase, PAGE);
  const take = (bytes: number, a = ALIGN): Region => {
    at = align(at, a);
    const r = { offset: at, bytes };
    at += bytes;
    return r;
  };
  const stackTops: number[] = [];
  for (let i = 0; i < sizes.nThreads + 1; i++) stackTops.push(take(STACK_BYTES, 16).offset + STACK_BYTES);
  const ctx = take(ctxBytes).offset;
  const layers = take(layerBytes * shape.nLayers).offset;
  const b = sizes.maxBatch;
  const batch = {
    tokens: take(4 * b).offset,
    pos: take(4 * b).offset,
    slot: take(4 * b).offset,
    outIdx: take(4 * b).offset,
  };
  const half = shape.headDim / 2;
  const ropeCos = take(4 * sizes.nCtx * half).offset;
  const ropeSin = take(4 * sizes.nCtx * half).offset;

  const weightsStart = at;
  const placed = new Map<string, Region>();
  for (const t of tensors) placed.set(t.name, take(t.bytes));
  const weights = at - weightsStart;

  const scratchStart = at;
  const wide = Math.max(shape.dim, shape.ffnDim);
  const scratch: Record<ScratchName, Region> = {
    x: take(4 * b * shape.dim),
    xb: take(4 * b * wide),
    xq: take(b * wide, 128), // the ternary kernels' 16-byte loads assume 128-aligned activation blocks
    xscale: take(4 * b),
    xsum: take(4 * b),
    q: take(4 * b * shape.dim),
    att: take(4 * b * shape.dim),
    hb: take(4 * b * shape.ffnDim),
    hb2: take(4 * b * shape.ffnDim),
    scores: take(4 * sizes.nThreads * 2 * sizes.nCtx),
    hq: take(sizes.maxOut * shape.dim),
    hscale: take(4 * sizes.maxOut * (shape.dim / 32)),
    hsum: take(16 * sizes.maxOut * (shape.dim / 32)),
    hxs: take(4 * sizes.maxOut * (2 * shape.dim + 4)),
    prof: take(8 * sizes.nThreads * PROFILE_STRIDE),
    logits: take(4 * sizes.maxOut * shape.nVocab),
  };
  const scratchBytes = at - scratchStart;

  const kvEach = kvCacheBytes(shape, sizes) / 2;
  const kCache = take(kvEach);
  const vCache = take(kvEach);
  const staging = stagingBytes <= 2 * kvEach
    ? { offset: kCache.offset, bytes: stagingBytes }
    : take(stagingBytes);
  const totalBytes = align(at, PAGE);
  if (totalBytes > WASM_MAX_BYTES) {
    throw new RangeError(
      `Memory plan needs ${formatBytes(totalBytes)} (weights ${formatBytes(weights)}, KV cache ${
        formatBytes(2 * kvEach)
      } for ${sizes.nSlots} slot(s) x ${sizes.nCtx} positions, scratch ${formatBytes(scratchBytes)}); ` +
        `WebAssembly memory is limited to 4 GiB: lower --ctx or --slots (or --batch)`,
    );
  }
  return {
    stackTops,
    ctx,
    layers,
    batch,
    ropeCos,
    ropeSin,
    tensors: placed,
    scratch,
    kCache,
    vCache,
    staging,
    totalBytes,
    pages: totalBytes / PAGE,
    bytes: { weights, kv: 2 * kvEach, scratch: scratchBytes },
  };
}
