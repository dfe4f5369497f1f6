/**
 * Loads a GGUF model into one shared WebAssembly.Memory and starts its kernel workers.
 *
 * The memory plan is computed from the header before anything is read. Tensors already in a
 * compute layout (I2_S, F32 norms, the F16/F32/Q8_0 embedding) are read with positioned reads
 * straight into their final, aligned place: no intermediate buffer, no second copy. TQ2_0/TQ1_0
 * tensors go through a staging buffer and are repacked exactly to I2_S (lossy cases are refused).
 * An F16 LM head (with the embedding, when tied) can be quantized at load: `head: "q8_0"` (ggml's
 * Q8_0 blocks) or `head: "q7"` (this engine's fast layout, kernels/head.c); its accuracy cost is
 * measured in models/README.md.
 *
 * @module
 */
import { compileKernel, detectKernel, KERNEL_IDS, type KernelVariant, WasmHost } from "../wasm/loader.ts";
import { CtxWriter } from "./ctx_writer.ts";
import { GGML_TYPE, ggmlTypeName } from "./ggml_types.ts";
import { type GgufFile, type GgufTensorInfo, openGguf } from "./gguf.ts";
import { type MemoryPlan, planMemory } from "./memory_plan.ts";
import {
  type ModelConfig,
  ModelConfigError,
  modelConfigFromGguf,
  type TernaryTensor,
} from "./model_config.ts";
import { ModelRuntime } from "./runtime.ts";
import { ThreadPool } from "./thread_pool.ts";

/** How an F16 LM head is kept: as in the file, or quantized at load (Q8_0 or the Q7 layout). */
export type HeadMode = "file" | "q8_0" | "q7";

/** bn.h's BN_TYPE_Q7: the fast head layout (not a ggml type). */
export const HEAD_Q7 = 200;

/** Display name of a stored embedding/head type. */
export function storedTypeName(type: number): string {
  return type === HEAD_Q7 ? "Q7" : ggmlTypeName(type);
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
  /** Logits rows per step; default min(maxBatch, max(nSlots, 8)). */
  readonly maxOut?: number;
  readonly head?: HeadMode;
  /** Polls before a waiting worker sleeps. */
  readonly spin?: number;
  /** Called as bytes are read: (done, total). */
  readonly onProgress?: (done: number, total: number) => void;
}

/** A model ready to run, with what loading it took. */
export interface LoadedModel {
  readonly config: ModelConfig;
  readonly gguf: GgufFile;
  readonly runtime: ModelRuntime;
  readonly loadMs: number;
}

const READ_CHUNK = 32 << 20;

/** A tensor's place in the load: where it is read from and what happens to it. */
interface LoadItem {
  readonly name: string;
  readonly src: GgufTensorInfo;
  readonly bytes: number;
  readonly kind: "direct" | "repack" | "q8_0" | "q7";
  readonly scale?: GgufTensorInfo;
}

/** The type an embedding-shaped tensor has in memory: F16 becomes Q8_0 or Q7 by head mode. */
function storedType(info: GgufTensorInfo, head: HeadMode): number {
  if (info.type !== GGML_TYPE.F16 || head === "file") return info.type;
  return head === "q8_0" ? GGML_TYPE.Q8_0 : HEAD_Q7;
}

/** Bytes of an embedding-shaped tensor stored as `type`. */
function storedBytes(info: GgufTensorInfo, type: number): number {
  const n = info.dims[0] * info.dims[1];
  if (type === GGML_TYPE.Q8_0 && info.type !== GGML_TYPE.Q8_0) return (n / 32) * 34;
  if (type === HEAD_Q7) return n + (n / 32) * 4;
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
  const maxOut = options.maxOut ?? Math.min(maxBatch, Math.max(nSlots, 8));
  const headMode = options.head ?? "file";

  // what goes where, in file order so the reads are sequential
  const items = loadItems(config, headMode);
  items.sort((a, b) => a.src.offset - b.src.offset);
  const staging = Math.max(
    0,
    ...items.map((it) =>
      it.kind === "repack" ? it.src.nbytes : it.kind === "direct" ? 0 : Math.min(it.src.nbytes, READ_CHUNK)
    ),
  );
  const km = await compileKernel(kernel === "ref" ? "simd128" : kernel);
  const plan = planMemory(
    config,
    { nCtx, nSlots, maxBatch, maxOut, nThreads: threads },
    items.map((it) => ({ name: it.name, bytes: it.bytes })),
    staging,
    km.heapBase,
    km.abi.ctxBytes,
    km.abi.layerBytes,
  );
  const memory = new WebAssembly.Memory({ initial: plan.pages, maximum: plan.pages, shared: true });
  const host = await WasmHost.create(km, memory, plan.stackTops[0]);

  await readTensors(gguf, items, plan, memory, host, options.onProgress);
  writeRope(memory, plan, config, nCtx);
  const ctx = new CtxWriter(memory, host.abi, plan.ctx);
  writeCtx(ctx, memory, plan, config, { nCtx, nSlots, maxBatch, maxOut, threads }, headMode, kernel);
  if (host.checkCtx(plan.ctx) !== 0) {
    throw new ModelConfigError(path, "the kernel module refused this configuration");
  }
  const pool = await ThreadPool.start(km, memory, host.abi, plan.ctx, plan.stackTops.slice(1), options.spin);
  const runtime = new ModelRuntime({
    config,
    plan,
    sizes: { nCtx, nSlots, maxBatch, maxOut, threads },
    kernel,
    headType: storedTypeName(storedType(config.output, headMode)),
    memory,
    pool,
    ctx,
  });
  return { config, gguf, runtime, loadMs: performance.now() - t0 };
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
    return t.info.type === GGML_TYPE.I2_S && !t.scale ? asIs(t.info) : {
      name: t.info.name,
      src: t.info,
      bytes: n / 4 + 32,
      kind: t.info.type === GGML_TYPE.I2_S ? "direct" : "repack",
      scale: t.scale,
    };
  };
  // in head mode "q8_0" every F16 embedding-shaped tensor is quantized; a tied head's Q8_0 copy
  // then serves the embedding lookup too (one copy in memory)
  const embedding = (info: GgufTensorInfo): LoadItem => {
    const type = storedType(info, head);
    if (type === info.type) return asIs(info);
    return {
      name: info.name,
      src: info,
      bytes: storedBytes(info, type),
      kind: type === HEAD_Q7 ? "q7" : "q8_0",
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

/** Positioned reads of `bytes` at file offset `offset` straight into memory at `dst`. */
function readInto(
  file: Deno.FsFile,
  offset: number,
  memory: WebAssembly.Memory,
  dst: number,
  bytes: number,
  path: string,
) {
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < bytes) {
    const n = file.readSync(new Uint8Array(memory.buffer, dst + done, bytes - done));
    if (n === null || n === 0) {
      throw new ModelConfigError(path, `unexpected end of file at byte ${offset + done}`);
    }
    done += n;
  }
}

async function readTensors(
  gguf: GgufFile,
  items: readonly LoadItem[],
  plan: MemoryPlan,
  memory: WebAssembly.Memory,
  host: WasmHost,
  onProgress?: (done: number, total: number) => void,
): Promise<void> {
  const total = items.reduce((s, it) => s + it.src.nbytes, 0);
  let done = 0, sinceYield = 0;
  const progress = async (n: number) => {
    done += n;
    sinceYield += n;
    onProgress?.(done, total);
    if (sinceYield >= READ_CHUNK) {
      sinceYield = 0;
      await new Promise((r) => setTimeout(r, 0)); // keep the host isolate responsive (/health)
    }
  };
  using file = Deno.openSync(gguf.path, { read: true });
  const stage = plan.staging.offset;
  for (const it of items) {
    const dst = plan.tensors.get(it.name)!.offset;
    const fail = (detail: string): never => {
      throw new ModelConfigError(gguf.path, `tensor "${it.name}" ${detail}`);
    };
    if (it.kind === "direct") {
      for (let at = 0; at < it.src.nbytes; at += READ_CHUNK) {
        const n = Math.min(READ_CHUNK, it.src.nbytes - at);
        readInto(file, it.src.offset + at, memory, dst + at, n, gguf.path);
        await progress(n);
      }
      if (it.src.type === GGML_TYPE.I2_S) {
        const n = it.src.dims[0] * it.src.dims[1];
        if (!host.i2sValid(dst, n)) fail("holds the invalid 2-bit code 3 (corrupt I2_S data)");
        const scale = new DataView(memory.buffer, dst + n / 4, 4).getFloat32(0, true);
        if (!Number.isFinite(scale)) fail(`has a non-finite scale ${scale}`);
        if (it.scale) applyScaleTensor(file, it, memory, dst + n / 4, gguf.path);
      } else if (it.src.type === GGML_TYPE.F16 && !host.f16Finite(dst, it.src.nbytes / 2)) {
        fail("holds an infinite or NaN value");
      }
    } else if (it.kind === "repack") {
      readInto(file, it.src.offset, memory, stage, it.src.nbytes, gguf.path);
      await progress(it.src.nbytes);
      const n = it.src.dims[0] * it.src.dims[1];
      const kind = it.src.type === GGML_TYPE.TQ2_0 ? "tq2_0" : "tq1_0";
      const scale = host.repackTernary(kind, stage, dst, n);
      if (scale === null) {
        fail(
          `(${
            ggmlTypeName(it.src.type)
          }) cannot be repacked exactly: its blocks have different scales or invalid ` +
            "codes, so it is not a ternary tensor with one scale",
        );
      }
      if (it.scale) applyScaleTensor(file, it, memory, dst + n / 4, gguf.path);
    } else {
      // F16 -> Q8_0 or Q7 in row-aligned chunks through the staging buffer
      const dim = it.src.dims[0], rows = it.src.dims[1], rowBytes = dim * 2;
      const rowsPerChunk = Math.max(1, Math.floor(plan.staging.bytes / rowBytes));
      for (let r = 0; r < rows; r += rowsPerChunk) {
        const nr = Math.min(rowsPerChunk, rows - r);
        readInto(file, it.src.offset + r * rowBytes, memory, stage, nr * rowBytes, gguf.path);
        if (!host.f16Finite(stage, nr * dim)) fail("holds an infinite or NaN value");
        if (it.kind === "q8_0") host.quantizeQ8_0(stage, dst + r * (dim / 32) * 34, nr * dim);
        else host.quantizeQ7(stage, dst + r * dim, dst + rows * dim + r * (dim / 32) * 4, nr * dim);
        await progress(nr * rowBytes);
      }
    }
  }
}

/** bitnet files may carry the scale as a separate [1] tensor: fold it into the I2_S scale. */
function applyScaleTensor(
  file: Deno.FsFile,
  it: LoadItem,
  memory: WebAssembly.Memory,
  scaleAt: number,
  path: string,
) {
  const buf = new Uint8Array(4);
  file.seekSync(it.scale!.offset, Deno.SeekMode.Start);
  if (file.readSync(buf) !== 4) throw new ModelConfigError(path, `tensor "${it.scale!.name}" is truncated`);
  const s = new DataView(buf.buffer).getFloat32(0, true);
  const view = new DataView(memory.buffer, scaleAt, 4);
  view.setFloat32(0, Math.fround(view.getFloat32(0, true) * s), true);
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
  c.u32("pool.nth", sizes.threads);
}
