/**
 * Loads a GGUF model into one shared WebAssembly.Memory and starts its kernel workers.
 *
 * The memory plan is computed from the header before anything is read; then the kernel workers
 * read the file in parallel (wasm/load_jobs.ts) before they start computing. Tensors already in a
 * compute layout (F32 norms, the F16/F32/Q8_0 embedding) are read with positioned reads straight into
 * their final, aligned place: no intermediate buffer, no second copy. I2_S tensors are read in
 * 512 KiB pieces into each worker's staging buffer and placed from cache with their rows regrouped
 * for the kernels' layout (kernels/bn_impl.h): in sixteens for the kernels V8 fuses into 256-bit
 * code, or in fours for the 128-bit ones, whichever a start-up probe measures faster
 * (`probeTernaryLayout`; `revec: false` keeps the 128-bit ones). TQ2_0/TQ1_0 tensors go through a
 * staging buffer and are repacked exactly to I2_S (lossy cases are refused).
 * An F16 LM head (with the embedding, when tied) can be quantized at load: `head: "q8_0"` (ggml's
 * Q8_0 blocks) or `head: "q7"` (this engine's fast layout, kernels/head.c); its accuracy cost is
 * measured in models/README.md.
 *
 * @module
 */
import {
  compileKernel,
  detectKernel,
  KERNEL_IDS,
  type KernelModule,
  type KernelVariant,
  LAYOUT_GROUP_ROWS,
  LAYOUT_IDS,
  probeTernaryLayout,
  type TernaryLayout,
  type TernaryProbe,
  WasmHost,
} from "../../wasm/loader.ts";
import { type LoadJob, partitionJobs, repackTmpBytes } from "../../wasm/load_jobs.ts";
import { CtxWriter } from "../run/ctx_writer.ts";
import { GGML_TYPE, ggmlTypeName } from "../format/ggml_types.ts";
import { type GgufFile, type GgufTensorInfo, openGguf } from "../format/gguf.ts";
import { quote } from "../format/printable.ts";
import { type MemoryPlan, planMemory } from "./memory_plan.ts";
import {
  type ModelConfig,
  ModelConfigError,
  modelConfigFromGguf,
  type TernaryTensor,
} from "./model_config.ts";
import { ModelRuntime } from "../run/runtime.ts";
import { ThreadPool } from "../run/thread_pool.ts";

/** How an F16 LM head is kept: as in the file, or quantized at load (Q8_0 or the Q7 layout). */
export type HeadMode = "file" | "q8_0" | "q7";

/** `auto` quantizes an F16 head to Q7 only when it is large enough for the speed to matter. */
export type HeadOption = HeadMode | "auto";

/** Smallest F16 head `auto` turns into Q7 (2B4T's is 657 MB; the embedded default model's 2 MB). */
export const AUTO_Q7_MIN_BYTES = 64 << 20;

/** The head mode `option` means for this model: `auto` is q7 for a large F16 head, else file. */
export function resolveHeadMode(option: HeadOption, config: ModelConfig): HeadMode {
  if (option !== "auto") return option;
  const out = config.output;
  return out.type === GGML_TYPE.F16 && out.nbytes >= AUTO_Q7_MIN_BYTES ? "q7" : "file";
}

/** bn.h's BN_TYPE_Q7: the fast head layout (not a ggml type). */
export const HEAD_Q7 = 200;

/**
 * bn.h's BN_TYPE_F16P: an F16 embedding/head kept exactly, with its rows in fours and each group
 * scaled by a power of two so that no value is subnormal (kernels/head_f16.c).
 */
export const HEAD_F16P = 201;

/** Display name of a stored embedding/head type (F16P holds the exact F16 values: "F16"). */
export function storedTypeName(type: number): string {
  return type === HEAD_Q7 ? "Q7" : type === HEAD_F16P ? "F16" : ggmlTypeName(type);
}

export interface LoadOptions {
  /** Kernel variant; default: the best this runtime supports. */
  readonly kernel?: KernelVariant;
  /** Worker threads; default: `navigator.hardwareConcurrency`. */
  readonly threads?: number;
  /** Positions per slot; default: min(model context, 4096). */
  readonly nCtx?: number;
  /** Concurrent sequences; default 1. */
  readonly nSlots?: number;
  /** Tokens per forward step; default 128. */
  readonly maxBatch?: number;
  /** Logits rows per step; default min(maxBatch, max(nSlots, 32)) (prompt logprobs need one per token). */
  readonly maxOut?: number;
  /** How an F16 LM head is kept (default `file`; `auto`: see {@linkcode resolveHeadMode}). */
  readonly head?: HeadOption;
  /**
   * Use the kernels V8's revectorizer fuses into 256-bit code where a start-up probe measures them
   * faster (default true; see {@linkcode chooseTernaryLayout}). False keeps the 128-bit kernels and
   * their layout, whose machine code is the same with V8's flag on or off.
   */
  readonly revec?: boolean;
  /** The ternary layout, bypassing the probe (tests, benchmarks). */
  readonly layout?: TernaryLayout;
  /** Polls before a waiting worker sleeps. */
  readonly spin?: number;
  /** Called as bytes are read: (done, total). */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * Synchronous work for the main thread while the workers read the tensors (the engine builds
   * the tokenizer here); if it throws, loading stops with that error.
   */
  readonly whileLoading?: (gguf: GgufFile) => void;
}

/** A model ready to run, with what loading it took. */
export interface LoadedModel {
  readonly config: ModelConfig;
  readonly gguf: GgufFile;
  readonly runtime: ModelRuntime;
  readonly loadMs: number;
}

const READ_CHUNK = 32 << 20;
/** I2_S reads go through staging small enough to stay in L2 until they are placed in fours. */
const I2S_CHUNK = 512 << 10;

/** A tensor's place in the load: where it is read from and what happens to it. */
interface LoadItem {
  readonly name: string;
  readonly src: GgufTensorInfo;
  readonly bytes: number;
  readonly kind: "direct" | "repack" | "q8_0" | "q7" | "f16p";
  readonly scale?: GgufTensorInfo;
}

/** The type an embedding-shaped tensor has in memory: F16 becomes F16P, Q8_0 or Q7 by head mode. */
function storedType(info: GgufTensorInfo, head: HeadMode): number {
  if (info.type !== GGML_TYPE.F16) return info.type;
  return head === "file" ? HEAD_F16P : head === "q8_0" ? GGML_TYPE.Q8_0 : HEAD_Q7;
}

/** Bytes of an embedding-shaped tensor stored as `type`. */
function storedBytes(info: GgufTensorInfo, type: number): number {
  const n = info.dims[0] * info.dims[1];
  if (type === GGML_TYPE.Q8_0 && info.type !== GGML_TYPE.Q8_0) return (n / 32) * 34;
  if (type === HEAD_Q7) return n + (n / 32) * 4;
  if (type === HEAD_F16P) return 2 * n + Math.ceil(info.dims[1] / 4); // values, then a shift per four rows
  return info.nbytes;
}

/**
 * Loads `path` and starts its workers.
 *
 * @example
 * ```ts ignore
 * const { runtime, config } = await loadModel("models/default.gguf", { threads: 2 });
 * const logits = await runtime.forward({ tokens: [1], pos: [0], slot: [0], outIdx: [0] });
 * ```
 */
export async function loadModel(path: string, options: LoadOptions = {}): Promise<LoadedModel> {
  const t0 = performance.now();
  const gguf = openGguf(path);
  const config = modelConfigFromGguf(gguf);
  const kernel = options.kernel ?? detectKernel();
  const threads = options.threads ?? navigator.hardwareConcurrency ?? 1;
  const nSlots = options.nSlots ?? 1;
  const nCtx = options.nCtx ?? Math.min(config.contextLength, 4096);
  const maxBatch = options.maxBatch ?? 128;
  const maxOut = options.maxOut ?? Math.min(maxBatch, Math.max(nSlots, 32));
  const headMode = resolveHeadMode(options.head ?? "file", config);
  const km = await compileKernel(kernel === "ref" ? "simd128" : kernel);

  // what goes where, in file order so the reads are sequential
  const items = loadItems(config, headMode);
  items.sort((a, b) => a.src.offset - b.src.offset);
  // each worker has its own staging buffer for repacks and head quantization
  // (enough for either layout: the probe that picks one runs while the workers start)
  const stagingEach = Math.max(
    0,
    ...items.map((it) => Math.max(stagingBytes(it, "r4"), stagingBytes(it, "r16"))),
  );
  const plan = planMemory(
    config,
    { nCtx, nSlots, maxBatch, maxOut, nThreads: threads },
    items.map((it) => ({ name: it.name, bytes: it.bytes })),
    stagingEach * threads,
    km.heapBase,
    km.abi.ctxBytes,
    km.abi.layerBytes,
  );
  const memory = new WebAssembly.Memory({ initial: plan.pages, maximum: plan.pages, shared: true });
  const host = await WasmHost.create(km, memory, plan.stackTops[0]);
  const starting = ThreadPool.start(km, memory, host.abi, plan.ctx, plan.stackTops.slice(1), options.spin);
  // the start-up probe on this thread while the workers start on theirs (they only instantiate)
  const chosen = await chooseTernaryLayout(km, kernel, options).catch(async (e) => {
    await starting.then((p) => p.close(), () => {});
    throw e;
  });
  const { layout, probe } = chosen;
  const pool = await starting;
  try {
    const jobs = loadJobs(items, plan, layout);
    const total = jobs.reduce((s, j) => s + (j.kind === "quant" ? 2 * j.rows * j.dim : j.bytes), 0);
    let done = 0;
    const stages = Array.from({ length: threads }, (_, i) => ({
      offset: plan.staging.offset + i * stagingEach,
      bytes: stagingEach,
    }));
    const loading = pool.load(path, partitionJobs(jobs, threads), stages, (bytes) => {
      done += bytes;
      options.onProgress?.(done, total);
    });
    try {
      options.whileLoading?.(gguf); // main-thread work that overlaps the workers' reads
    } catch (e) {
      await loading;
      throw e;
    }
    const failure = await loading;
    if (failure) throw new ModelConfigError(path, `tensor ${quote(failure.tensor)} ${failure.detail}`);
    finishTernary(gguf.path, items, plan, memory);
    writeRope(memory, plan, config, nCtx);
    const ctx = new CtxWriter(memory, host.abi, plan.ctx);
    writeCtx(
      ctx,
      memory,
      plan,
      config,
      { nCtx, nSlots, maxBatch, maxOut, threads },
      headMode,
      kernel,
      layout,
    );
    if (host.checkCtx(plan.ctx) !== 0) {
      throw new ModelConfigError(path, "the kernel module refused this configuration");
    }
    pool.enterLoop();
    const runtime = new ModelRuntime({
      config,
      plan,
      sizes: { nCtx, nSlots, maxBatch, maxOut, threads },
      kernel,
      ternary: { layout, probe },
      headType: storedTypeName(storedType(config.output, headMode)),
      memory,
      pool,
      ctx,
    });
    return { config, gguf, runtime, loadMs: performance.now() - t0 };
  } catch (e) {
    await pool.close();
    throw e;
  }
}

/**
 * The ternary layout to load in: `options.layout` when given; `r4` (the 128-bit kernels) with
 * `revec: false` or the `ref` kernel; else what {@linkcode probeTernaryLayout} measures faster on
 * this runtime and CPU (with the probe's figures).
 */
export async function chooseTernaryLayout(
  km: KernelModule,
  kernel: KernelVariant,
  options: Pick<LoadOptions, "revec" | "layout">,
): Promise<{ layout: TernaryLayout; probe: TernaryProbe | null }> {
  if (options.layout) return { layout: options.layout, probe: null };
  if (options.revec === false || kernel === "ref") return { layout: "r4", probe: null };
  const probe = await probeTernaryLayout(km);
  return { layout: probe.layout, probe };
}

function loadItems(config: ModelConfig, head: HeadMode): LoadItem[] {
  const items: LoadItem[] = [];
  const asIs = (info: GgufTensorInfo): LoadItem => ({
    name: info.name,
    src: info,
    bytes: info.nbytes,
    kind: "direct",
  });
  const tern = (t: TernaryTensor): LoadItem => {
    const n = t.rows * t.cols;
    return t.info.type === GGML_TYPE.I2_S
      ? { ...asIs(t.info), scale: t.scale }
      : { name: t.info.name, src: t.info, bytes: n / 4 + 32, kind: "repack", scale: t.scale };
  };
  // every F16 embedding-shaped tensor is placed in fours (head mode "file") or quantized ("q8_0"/"q7");
  // a tied head's copy then serves the embedding lookup too (one copy in memory)
  const embedding = (info: GgufTensorInfo): LoadItem => {
    const type = storedType(info, head);
    if (type === info.type) return asIs(info);
    return {
      name: info.name,
      src: info,
      bytes: storedBytes(info, type),
      kind: type === HEAD_Q7 ? "q7" : type === HEAD_F16P ? "f16p" : "q8_0",
    };
  };
  items.push(embedding(config.tokenEmbd));
  if (!config.tiedOutput) items.push(embedding(config.output));
  items.push(asIs(config.outputNorm));
  for (const L of config.layers) {
    for (const n of [L.attnNorm, L.attnSubNorm, L.ffnNorm, L.ffnSubNorm]) items.push(asIs(n));
    for (const t of [L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown]) items.push(tern(t));
  }
  return items;
}

/** A worker's staging bytes for one item: a TQ source, one I2_S read (i2sStep), an F16 chunk. */
function stagingBytes(it: LoadItem, layout: TernaryLayout): number {
  const cols = it.src.dims[0];
  if (it.kind === "repack") return Math.max(it.src.nbytes, repackTmpBytes(cols, layout));
  if (it.kind === "direct") return it.src.type === GGML_TYPE.I2_S ? i2sStep(cols, I2S_CHUNK, layout) : 0;
  return READ_CHUNK;
}

/** Bytes of one I2_S read: whole groups of rows of `layout` (cols/4 bytes a row), about `chunk` in all. */
function i2sStep(cols: number, chunk: number, layout: TernaryLayout): number {
  const group = (LAYOUT_GROUP_ROWS[layout] * cols) / 4;
  return Math.max(1, Math.floor(chunk / group)) * group;
}

/** A read of `bytes` at byte `at` of a tensor, holding `rows` I2_S rows to regroup (0: none). */
export interface ReadChunk {
  readonly at: number;
  readonly bytes: number;
  readonly rows: number;
}

function plainChunks(nbytes: number, chunk: number): ReadChunk[] {
  const out: ReadChunk[] = [];
  for (let at = 0; at < nbytes; at += chunk) out.push({ at, bytes: Math.min(chunk, nbytes - at), rows: 0 });
  return out;
}

/**
 * An I2_S tensor (rows x cols codes, then its scale: `nbytes` in all) in reads of about `chunk`
 * bytes that each start at a group of rows of `layout`, so that every read can be regrouped as it
 * lands; the last read also holds the rows past the last group and the scale.
 */
export function i2sChunks(
  rows: number,
  cols: number,
  nbytes: number,
  chunk: number,
  layout: TernaryLayout = "r4",
): ReadChunk[] {
  const step = i2sStep(cols, chunk, layout);
  const out: ReadChunk[] = [];
  for (let at = 0; at < nbytes; at += step) {
    const bytes = Math.min(step, nbytes - at);
    out.push({
      at,
      bytes,
      rows: Math.max(0, Math.min(rows - (4 * at) / cols, Math.floor((4 * bytes) / cols))),
    });
  }
  return out;
}

/** What the workers check in each tensor type they read as is (see wasm/load_jobs.ts). */
const CHECKS: Record<number, "i2s" | "f16" | "f32" | "q8_0"> = {
  [GGML_TYPE.I2_S]: "i2s",
  [GGML_TYPE.F16]: "f16",
  [GGML_TYPE.F32]: "f32",
  [GGML_TYPE.Q8_0]: "q8_0",
};

/** The load as jobs: big tensors in chunks so that every worker gets a share. */
function loadJobs(items: readonly LoadItem[], plan: MemoryPlan, layout: TernaryLayout): LoadJob[] {
  const jobs: LoadJob[] = [];
  for (const it of items) {
    const dst = plan.tensors.get(it.name)!.offset;
    const src = it.src, tensor = it.name;
    if (it.kind === "direct") {
      const i2s = src.type === GGML_TYPE.I2_S, q8 = src.type === GGML_TYPE.Q8_0;
      const [cols, rows] = [src.dims[0], src.dims[1] ?? 1];
      const codeBytes = i2s ? (cols * rows) / 4 : src.nbytes;
      const check = CHECKS[src.type] ?? null;
      const chunks = i2s
        ? i2sChunks(rows, cols, src.nbytes, I2S_CHUNK, layout)
        : plainChunks(src.nbytes, q8 ? READ_CHUNK - (READ_CHUNK % 34) : READ_CHUNK); // Q8_0: whole blocks
      for (const { at, bytes, rows } of chunks) {
        const checkBytes = Math.max(0, Math.min(bytes, codeBytes - at));
        jobs.push({
          kind: "read",
          tensor,
          offset: src.offset + at,
          bytes,
          dst: dst + at,
          check,
          checkBytes,
          at,
          rows,
          cols,
          layout,
        });
      }
    } else if (it.kind === "repack") {
      const type = src.type === GGML_TYPE.TQ2_0 ? "tq2_0" : "tq1_0";
      jobs.push({
        kind: "repack",
        tensor,
        type,
        offset: src.offset,
        bytes: src.nbytes,
        rows: src.dims[1],
        cols: src.dims[0],
        dst,
        layout,
      });
    } else {
      // whole groups of four rows per job (the Q7 and F16P layouts place rows in fours)
      const dim = src.dims[0], rows = src.dims[1], per = 4 * Math.max(1, Math.floor(READ_CHUNK / (8 * dim)));
      for (let row0 = 0; row0 < rows; row0 += per) {
        jobs.push({
          kind: "quant",
          tensor,
          to: it.kind,
          offset: src.offset + row0 * 2 * dim,
          dim,
          row0,
          rows: Math.min(per, rows - row0),
          totalRows: rows,
          dstW: dst,
          dstS: dst + rows * dim,
        });
      }
    }
  }
  return jobs;
}

/**
 * Largest magnitude of a ternary tensor's scale (its weights are {-1, 0, 1} x scale): real ones are
 * around 0.01 to 10; beyond this the products overflow float32.
 */
export const SCALE_LIMIT = 1e6;

/** After the reads: I2_S scales must be finite and sane, and bitnet `.scale` tensors fold into them. */
function finishTernary(
  path: string,
  items: readonly LoadItem[],
  plan: MemoryPlan,
  memory: WebAssembly.Memory,
) {
  using file = Deno.openSync(path, { read: true });
  for (const it of items) {
    if (it.kind !== "direct" && it.kind !== "repack") continue;
    if (it.kind === "direct" && it.src.type !== GGML_TYPE.I2_S) continue;
    const n = it.src.dims[0] * it.src.dims[1];
    const view = new DataView(memory.buffer, plan.tensors.get(it.name)!.offset + n / 4, 4);
    let scale = view.getFloat32(0, true);
    if (it.scale) {
      const buf = new Uint8Array(4);
      file.seekSync(it.scale.offset, Deno.SeekMode.Start);
      if (file.readSync(buf) !== 4) {
        throw new ModelConfigError(path, `tensor ${quote(it.scale.name)} is truncated`);
      }
      scale = Math.fround(scale * new DataView(buf.buffer).getFloat32(0, true));
      view.setFloat32(0, scale, true);
    }
    if (!(Math.abs(scale) <= SCALE_LIMIT)) {
      const what = Number.isFinite(scale) ? "an absurd" : "a non-finite";
      throw new ModelConfigError(
        path,
        `tensor ${
          quote(it.name)
        } has ${what} scale ${scale}, expected a finite value within +-${SCALE_LIMIT}`,
      );
    }
  }
}

/** cos/sin of pos * base^(-2i/head_dim), computed in f64 and stored as f32. */
function writeRope(memory: WebAssembly.Memory, plan: MemoryPlan, config: ModelConfig, nCtx: number) {
  const half = config.headDim / 2;
  const cos = new Float32Array(memory.buffer, plan.ropeCos, nCtx * half);
  const sin = new Float32Array(memory.buffer, plan.ropeSin, nCtx * half);
  const freqs = Array.from({ length: half }, (_, i) => Math.pow(config.ropeBase, (-2 * i) / config.headDim));
  for (let p = 0; p < nCtx; p++) {
    for (let i = 0; i < half; i++) {
      cos[p * half + i] = Math.cos(p * freqs[i]);
      sin[p * half + i] = Math.sin(p * freqs[i]);
    }
  }
}

function writeCtx(
  c: CtxWriter,
  memory: WebAssembly.Memory,
  plan: MemoryPlan,
  config: ModelConfig,
  sizes: { nCtx: number; nSlots: number; maxBatch: number; maxOut: number; threads: number },
  headMode: HeadMode,
  kernel: KernelVariant,
  layout: TernaryLayout,
) {
  const at = (name: string) => plan.tensors.get(name)!.offset;
  c.u32("config.dim", config.dim);
  c.u32("config.n_layers", config.nLayers);
  c.u32("config.n_heads", config.nHeads);
  c.u32("config.n_kv_heads", config.nKvHeads);
  c.u32("config.head_dim", config.headDim);
  c.u32("config.ffn_dim", config.ffnDim);
  c.u32("config.n_vocab", config.nVocab);
  c.u32("config.n_ctx", sizes.nCtx);
  c.u32("config.n_slots", sizes.nSlots);
  c.u32("config.max_batch", sizes.maxBatch);
  c.u32("config.max_out", sizes.maxOut);
  c.u32("config.act", config.activation === "relu2" ? 0 : 1);
  c.u32("config.embd_type", storedType(config.tokenEmbd, headMode));
  c.u32("config.head_type", storedType(config.output, headMode));
  c.f32("config.norm_eps", config.normEps);
  c.u32("weights.token_embd", at(config.tokenEmbd.name));
  c.u32("weights.output", at(config.output.name));
  c.u32("weights.output_norm", at(config.outputNorm.name));
  c.u32("weights.rope_cos", plan.ropeCos);
  c.u32("weights.rope_sin", plan.ropeSin);
  c.u32("weights.layers", plan.layers);
  const layers = new Uint32Array(memory.buffer, plan.layers, config.nLayers * 11);
  config.layers.forEach((L, l) => {
    const ptrs = [L.attnNorm, L.attnSubNorm, L.ffnNorm, L.ffnSubNorm].map((t) => at(t.name))
      .concat([L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown].map((t) => at(t.info.name)));
    layers.set(ptrs, l * 11);
  });
  const s = plan.scratch;
  for (
    const k of [
      "x",
      "xb",
      "xq",
      "xscale",
      "xsum",
      "q",
      "att",
      "hb",
      "hb2",
      "scores",
      "hq",
      "hscale",
      "hsum",
      "hxs",
    ] as const
  ) {
    c.u32(`state.${k}`, s[k].offset);
  }
  c.u32("state.k_cache", plan.kCache.offset);
  c.u32("state.v_cache", plan.vCache.offset);
  c.u32("state.n_threads", sizes.threads);
  c.u32("batch.tokens", plan.batch.tokens);
  c.u32("batch.pos", plan.batch.pos);
  c.u32("batch.slot", plan.batch.slot);
  c.u32("batch.out_idx", plan.batch.outIdx);
  c.u32("batch.logits", s.logits.offset);
  c.u32("kernel", KERNEL_IDS[kernel]);
  c.u32("layout", LAYOUT_IDS[layout]);
  c.u32("pool.nth", sizes.threads);
}
