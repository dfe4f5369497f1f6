/**
 * Turns a GGUF header into the frozen model config the loader and the engine use: shape, numerics,
 * the tensors of every layer (validated by name, type and shape), the LM head source and the FFN
 * activation. Parsed once; C never reads metadata and routes never see GGUF.
 *
 * Architectures: `bitnet-b1.58` (the official 2B4T file), `bitnet-25` (its first upload; carries
 * an `output.weight` copy) and `bitnet` (mainline llama.cpp naming, usually TQ1_0/TQ2_0, with
 * optional per-projection `.scale` tensors).
 *
 * FFN activation rule: `{arch}.hidden_activation` (or `hidden_act`) decides when present
 * (`relu2`/`relu_squared`/`relu_sqr`/`squared_relu` -> relu², `silu`/`swish` -> SiLU); otherwise
 * `bitnet-b1.58` and `bitnet-25` are relu² (2B4T, bitnet.cpp's graph); `bitnet` is relu² when its
 * tokenizer is the byte-level BPE `gpt2` model (the BitNetForCausalLM family: 2B4T converted with
 * mainline tools) and SiLU otherwise (the 1bitLLM family with a LLaMA SentencePiece vocabulary,
 * which mainline's hard-coded SiLU graph was written for).
 *
 * @module
 */
import { describeGgmlType, GGML_TYPE } from "../format/ggml_types.ts";
import type { GgufFile, GgufTensorInfo, GgufValue } from "../format/gguf.ts";
import { quote } from "../format/printable.ts";

export type Arch = "bitnet-b1.58" | "bitnet-25" | "bitnet";
export const ARCHES: readonly Arch[] = ["bitnet-b1.58", "bitnet-25", "bitnet"];

/** A ternary projection: its tensor and, for `bitnet` files, an optional scalar `.scale` tensor. */
export interface TernaryTensor {
  readonly info: GgufTensorInfo;
  readonly scale?: GgufTensorInfo;
  /** Output features (ne1). */
  readonly rows: number;
  /** Input features (ne0). */
  readonly cols: number;
}

export interface LayerTensors {
  readonly attnNorm: GgufTensorInfo;
  readonly attnSubNorm: GgufTensorInfo;
  readonly ffnNorm: GgufTensorInfo;
  readonly ffnSubNorm: GgufTensorInfo;
  readonly wq: TernaryTensor;
  readonly wk: TernaryTensor;
  readonly wv: TernaryTensor;
  readonly wo: TernaryTensor;
  readonly wGate: TernaryTensor;
  readonly wUp: TernaryTensor;
  readonly wDown: TernaryTensor;
}

/** The model as the engine sees it. Frozen. */
export interface ModelConfig {
  readonly path: string;
  readonly arch: Arch;
  readonly name: string;
  readonly dim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly kvDim: number;
  readonly ffnDim: number;
  readonly nVocab: number;
  /** Context length the model was trained for. */
  readonly contextLength: number;
  readonly ropeBase: number;
  readonly normEps: number;
  readonly activation: "relu2" | "silu";
  /** Why that activation was chosen (printed at start-up). */
  readonly activationRule: string;
  readonly tokenEmbd: GgufTensorInfo;
  /** The LM head matrix: `output.weight` when present, else `token_embd.weight` (tied). */
  readonly output: GgufTensorInfo;
  readonly tiedOutput: boolean;
  readonly outputNorm: GgufTensorInfo;
  readonly layers: readonly LayerTensors[];
}

const TERNARY_TYPES: readonly number[] = [GGML_TYPE.I2_S, GGML_TYPE.TQ2_0, GGML_TYPE.TQ1_0];
const EMBED_TYPES: readonly number[] = [GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.Q8_0];

/**
 * Largest value of each integer hyper-parameter: far beyond any real model, small enough that no
 * size computed from them overflows (a corrupt header otherwise asks for absurd memory or loops).
 */
const LIMITS: Record<string, number> = {
  embedding_length: 1 << 16,
  block_count: 1024,
  feed_forward_length: 1 << 18,
  "attention.head_count": 1024,
  "attention.head_count_kv": 1024,
  "rope.dimension_count": 1 << 16,
  context_length: 1 << 24,
};

/**
 * RMS-norm epsilon range: real models use 1e-6 to 1e-5; below 1e-12 a zero row divides by ~0,
 * above 0.1 the norm no longer normalizes.
 */
const EPS_RANGE = [1e-12, 0.1] as const;

/** RoPE base range: 1 or less has no meaning (frequencies >= 1); real models use 1e4 to 1e7. */
const ROPE_BASE_RANGE = [1, 1e12] as const;

/** A model file that is well-formed GGUF but not a model this engine can run. */
export class ModelConfigError extends TypeError {
  constructor(path: string, detail: string) {
    super(`Cannot load model ${quote(path, 1024)}: ${detail}`);
    this.name = "ModelConfigError";
  }
}

/**
 * Reads the model config from a GGUF header.
 *
 * @example
 * ```ts ignore
 * const config = modelConfigFromGguf(openGguf("models/tiny.gguf"));
 * config.activation; // "relu2"
 * ```
 */
export function modelConfigFromGguf(gguf: GgufFile): ModelConfig {
  const fail = (detail: string): never => {
    throw new ModelConfigError(gguf.path, detail);
  };
  const meta = gguf.metadata;
  const archValue = meta.get("general.architecture");
  if (typeof archValue !== "string") fail('key "general.architecture" is missing');
  const arch = archValue as Arch;
  if (!ARCHES.includes(arch)) {
    fail(`key "general.architecture" is ${describe(archValue!)}, expected one of ${ARCHES.join(", ")}`);
  }
  const num = (key: string, fallback?: number): number => {
    const v = meta.get(`${arch}.${key}`);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      return fail(
        `key "${arch}.${key}" is ${v === undefined ? "missing" : `${describe(v)}`}, expected a number`,
      );
    }
    return v;
  };
  const int = (key: string, fallback?: number, max = LIMITS[key]): number => {
    const v = num(key, fallback);
    if (!Number.isInteger(v) || v < 1 || v > max) {
      fail(`key "${arch}.${key}" is ${v}, expected an integer from 1 to ${max}`);
    }
    return v;
  };

  const dim = int("embedding_length");
  const nLayers = int("block_count");
  const ffnDim = int("feed_forward_length");
  const nHeads = int("attention.head_count");
  const nKvHeads = int("attention.head_count_kv", nHeads);
  if (nKvHeads > nHeads) {
    fail(`key "${arch}.attention.head_count_kv" is ${nKvHeads}, more than head_count ${nHeads}`);
  }
  const headDim = dim / nHeads;
  if (!Number.isInteger(headDim)) fail(`embedding_length ${dim} is not a multiple of head_count ${nHeads}`);
  const ropeDims = int("rope.dimension_count", headDim);
  if (ropeDims !== headDim) {
    fail(`key "${arch}.rope.dimension_count" is ${ropeDims}, expected ${headDim} (full-head RoPE)`);
  }
  if (nHeads % nKvHeads) {
    fail(`attention.head_count ${nHeads} is not a multiple of head_count_kv ${nKvHeads}`);
  }
  if (dim % 128) fail(`embedding_length ${dim} is not a multiple of 128 (I2_S blocks)`);
  if (ffnDim % 128) fail(`feed_forward_length ${ffnDim} is not a multiple of 128 (I2_S blocks)`);
  if (headDim % 16) fail(`head dimension ${headDim} is not a multiple of 16`);
  const contextLength = int("context_length");
  const ropeBase = num("rope.freq_base", 10000);
  const normEps = num("attention.layer_norm_rms_epsilon", 1e-5);
  const [epsMin, epsMax] = EPS_RANGE, [baseMin, baseMax] = ROPE_BASE_RANGE;
  if (!(normEps >= epsMin && normEps <= epsMax)) {
    fail(`key "${arch}.attention.layer_norm_rms_epsilon" is ${normEps}, expected ${epsMin} to ${epsMax}`);
  }
  if (!(ropeBase > baseMin && ropeBase <= baseMax)) {
    fail(`key "${arch}.rope.freq_base" is ${ropeBase}, expected more than ${baseMin} and at most ${baseMax}`);
  }
  const kvDim = nKvHeads * headDim;

  const tensor = (name: string, types: readonly number[], dims: readonly number[]): GgufTensorInfo => {
    const t = gguf.tensorsByName.get(name);
    if (!t) return fail(`tensor "${name}" is missing`);
    if (!types.includes(t.type)) {
      fail(
        `tensor "${name}" has type ${describeGgmlType(t.type)}, expected one of ${
          types.map(describeGgmlType).join(", ")
        }`,
      );
    }
    if (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i])) {
      fail(`tensor "${name}" has shape [${t.dims.join(", ")}], expected [${dims.join(", ")}]`);
    }
    return t;
  };
  const tokenEmbd0 = gguf.tensorsByName.get("token_embd.weight");
  if (!tokenEmbd0) fail('tensor "token_embd.weight" is missing');
  const nVocab = tokenEmbd0!.dims[1] ?? 0;
  const vocabKey = meta.get(`${arch}.vocab_size`);
  if (typeof vocabKey === "number" && vocabKey !== nVocab) {
    fail(`key "${arch}.vocab_size" is ${vocabKey} but tensor "token_embd.weight" has ${nVocab} rows`);
  }
  const tokenEmbd = tensor("token_embd.weight", EMBED_TYPES, [dim, nVocab]);
  const outputInfo = gguf.tensorsByName.get("output.weight");
  const output = outputInfo ? tensor("output.weight", EMBED_TYPES, [dim, nVocab]) : tokenEmbd;
  const outputNorm = tensor("output_norm.weight", [GGML_TYPE.F32], [dim]);

  const ternary = (name: string, cols: number, rows: number): TernaryTensor => {
    const info = tensor(name, TERNARY_TYPES, [cols, rows]);
    const scaleName = name.replace(/\.weight$/, ".scale");
    const scale = gguf.tensorsByName.get(scaleName);
    if (scale) tensor(scaleName, [GGML_TYPE.F32], scale.dims.length === 1 ? [1] : [1, 1]);
    return Object.freeze({ info, scale, rows, cols });
  };
  const layers: LayerTensors[] = [];
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}.`;
    layers.push(Object.freeze({
      attnNorm: tensor(`${p}attn_norm.weight`, [GGML_TYPE.F32], [dim]),
      attnSubNorm: tensor(`${p}attn_sub_norm.weight`, [GGML_TYPE.F32], [dim]),
      ffnNorm: tensor(`${p}ffn_norm.weight`, [GGML_TYPE.F32], [dim]),
      ffnSubNorm: tensor(`${p}ffn_sub_norm.weight`, [GGML_TYPE.F32], [ffnDim]),
      wq: ternary(`${p}attn_q.weight`, dim, dim),
      wk: ternary(`${p}attn_k.weight`, dim, kvDim),
      wv: ternary(`${p}attn_v.weight`, dim, kvDim),
      wo: ternary(`${p}attn_output.weight`, dim, dim),
      wGate: ternary(`${p}ffn_gate.weight`, dim, ffnDim),
      wUp: ternary(`${p}ffn_up.weight`, dim, ffnDim),
      wDown: ternary(`${p}ffn_down.weight`, ffnDim, dim),
    }));
  }
  const { activation, rule } = pickActivation(arch, meta, fail);
  const name = meta.get("general.name");
  return Object.freeze({
    path: gguf.path,
    arch,
    name: typeof name === "string" ? name : arch,
    dim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    kvDim,
    ffnDim,
    nVocab,
    contextLength,
    ropeBase,
    normEps,
    activation,
    activationRule: rule,
    tokenEmbd,
    output,
    tiedOutput: !outputInfo,
    outputNorm,
    layers: Object.freeze(layers),
  });
}

function pickActivation(
  arch: Arch,
  meta: ReadonlyMap<string, GgufValue>,
  fail: (d: string) => never,
): { activation: "relu2" | "silu"; rule: string } {
  for (const key of [`${arch}.hidden_activation`, `${arch}.hidden_act`]) {
    const v = meta.get(key);
    if (v === undefined) continue;
    const s = typeof v === "string" ? v.toLowerCase() : "";
    if (["relu2", "relu_squared", "relu_sqr", "squared_relu", "relu²"].includes(s)) {
      return { activation: "relu2", rule: `${key} = ${quote(String(v))}` };
    }
    if (["silu", "swish"].includes(s)) return { activation: "silu", rule: `${key} = ${quote(String(v))}` };
    fail(`key "${key}" is ${describe(v)}, expected "relu2" or "silu"`);
  }
  if (arch !== "bitnet") return { activation: "relu2", rule: `architecture ${arch} (2B4T family)` };
  const tok = meta.get("tokenizer.ggml.model");
  return tok === "gpt2"
    ? {
      activation: "relu2",
      rule: 'architecture bitnet with a "gpt2" BPE vocabulary (BitNetForCausalLM family)',
    }
    : {
      activation: "silu",
      rule: `architecture bitnet with tokenizer ${quote(String(tok))} (1bitLLM family)`,
    };
}

function describe(v: GgufValue): string {
  if (typeof v === "string") return quote(v);
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return "an array";
  return String(v);
}
