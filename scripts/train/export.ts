/**
 * Step 3 of the embedded-model pipeline: the tensors train.py saved -> a GGUF laid out like the
 * official BitNet b1.58 2B4T file (architecture `bitnet-b1.58`, I2_S projections, F16 embedding,
 * F32 norms, gpt2-type tokenizer), plus the trained chat template and `tokenizer.ggml.pre`.
 *
 *   deno run --allow-read --allow-write scripts/train/export.ts --in DIR --out models/NAME.gguf --name NAME
 *
 * `--in` holds `model.json` + `model.bin` (format in train.py's docstring); `--tokenizer` defaults
 * to `scripts/train/work/tokenizer.json` (prepare.ts).
 */
import { type GgufTensorSpec, type GgufTypedValue, writeGguf } from "../../engine/format/gguf_writer.ts";
import { GGML_TYPE } from "../../engine/format/ggml_types.ts";
import { encodeF16, packI2S } from "../../engine/format/ternary_pack.ts";
import { flags } from "./flags.ts";

export interface TensorEntry {
  name: string;
  dtype: "f32" | "i8";
  shape: number[];
  offset: number;
  nbytes: number;
  scale?: number;
}

export interface ModelJson {
  config: {
    vocab: number;
    dim: number;
    n_layers: number;
    n_heads: number;
    n_kv_heads: number;
    ffn: number;
    ctx: number;
    rope_base: number;
    eps: number;
  };
  tensors: TensorEntry[];
}

export interface TokenizerJson {
  tokens: string[];
  merges: string[];
  token_type: number[];
  bos_id: number;
  eos_id: number;
  eot_id: number;
  pad_id: number;
}

/** The format the model was trained on (bitnet-spec §4.4), without BOS; same as 2B4T's HF template. */
export const CHAT_TEMPLATE = "{% for message in messages %}{{ message['role'] | capitalize + ': ' + " +
  "message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

const ARCH = "bitnet-b1.58";
const FILE_TYPE_I2_S = 40;
/** Tensor order inside a block, as the official file lists them. */
const BLOCK_ORDER = [
  "attn_norm",
  "attn_q",
  "attn_k",
  "attn_v",
  "attn_output",
  "attn_sub_norm",
  "ffn_norm",
  "ffn_gate",
  "ffn_up",
  "ffn_down",
  "ffn_sub_norm",
];

/** GGUF metadata in the official file's key order (bitnet-spec §3.2), plus `pre` and `eot_token_id`. */
export function metadata(
  name: string,
  m: ModelJson["config"],
  tok: TokenizerJson,
): [string, GgufTypedValue][] {
  const u32 = (value: number) => ({ type: "u32", value }) as const;
  const str = (value: string) => ({ type: "string", value }) as const;
  const f32 = (value: number) => ({ type: "f32", value }) as const;
  return [
    ["general.architecture", str(ARCH)],
    ["general.name", str(name)],
    [`${ARCH}.vocab_size`, u32(m.vocab)],
    [`${ARCH}.context_length`, u32(m.ctx)],
    [`${ARCH}.embedding_length`, u32(m.dim)],
    [`${ARCH}.block_count`, u32(m.n_layers)],
    [`${ARCH}.feed_forward_length`, u32(m.ffn)],
    [`${ARCH}.rope.dimension_count`, u32(m.dim / m.n_heads)],
    [`${ARCH}.attention.head_count`, u32(m.n_heads)],
    [`${ARCH}.attention.head_count_kv`, u32(m.n_kv_heads)],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: true }],
    [`${ARCH}.attention.layer_norm_rms_epsilon`, f32(m.eps)],
    [`${ARCH}.rope.freq_base`, f32(m.rope_base)],
    ["general.file_type", u32(FILE_TYPE_I2_S)],
    ["tokenizer.ggml.model", str("gpt2")],
    ["tokenizer.ggml.pre", str("llama-bpe")],
    ["tokenizer.ggml.tokens", { type: "array", elem: "string", value: tok.tokens }],
    // token_type before scores (the official file has scores first): engine/format/gguf_writer.ts's buffer
    // growth fails inside f32/u32 writes (reported); with this order it grows inside i32/string ones.
    ["tokenizer.ggml.token_type", { type: "array", elem: "i32", value: Int32Array.from(tok.token_type) }],
    ["tokenizer.ggml.scores", { type: "array", elem: "f32", value: new Float32Array(tok.tokens.length) }],
    ["tokenizer.ggml.merges", { type: "array", elem: "string", value: tok.merges }],
    ["tokenizer.ggml.bos_token_id", u32(tok.bos_id)],
    ["tokenizer.ggml.eos_token_id", u32(tok.eos_id)],
    ["tokenizer.ggml.eot_token_id", u32(tok.eot_id)],
    ["tokenizer.ggml.padding_token_id", u32(tok.pad_id)],
    ["tokenizer.chat_template", str(CHAT_TEMPLATE)],
    ["general.quantization_version", u32(2)],
  ];
}

/** Writes the GGUF for train.py's output directory `inDir`; returns the file size in bytes. */
export function exportGguf(inDir: string, tokenizerPath: string, out: string, name: string): number {
  const model: ModelJson = JSON.parse(Deno.readTextFileSync(`${inDir}/model.json`));
  const tok: TokenizerJson = JSON.parse(Deno.readTextFileSync(tokenizerPath));
  const blob = Deno.readFileSync(`${inDir}/model.bin`);
  const cfg = model.config;
  if (tok.tokens.length !== cfg.vocab) {
    throw new TypeError(
      `Cannot export: the tokenizer has ${tok.tokens.length} tokens, the model ${cfg.vocab}`,
    );
  }
  const byName = new Map(model.tensors.map((t) => [t.name, t]));
  const f32 = (t: TensorEntry) => new Float32Array(blob.slice(t.offset, t.offset + t.nbytes).buffer);
  const spec = (name: string): GgufTensorSpec => {
    const t = byName.get(name);
    if (t === undefined) {
      throw new TypeError(`Cannot export: tensor "${name}" is missing from ${inDir}/model.json`);
    }
    const dims = [...t.shape].reverse(); // ne0 = row length (input features)
    if (name === "token_embd.weight") return { name, type: GGML_TYPE.F16, dims, data: encodeF16(f32(t)) };
    if (t.dtype === "f32") return { name, type: GGML_TYPE.F32, dims, data: new Uint8Array(f32(t).buffer) };
    const trits = new Int8Array(blob.buffer, blob.byteOffset + t.offset, t.nbytes);
    return { name, type: GGML_TYPE.I2_S, dims, data: packI2S(trits, Math.fround(t.scale!)) };
  };
  const tensors = [spec("token_embd.weight")];
  for (let i = 0; i < cfg.n_layers; i++) {
    for (const n of BLOCK_ORDER) tensors.push(spec(`blk.${i}.${n}.weight`));
  }
  tensors.push(spec("output_norm.weight"));
  if (tensors.length !== model.tensors.length) {
    throw new TypeError(
      `Cannot export: ${model.tensors.length} tensors in model.json, ${tensors.length} expected`,
    );
  }
  return writeGguf(out, { metadata: metadata(name, cfg, tok), tensors }).bytes;
}

if (import.meta.main) {
  const args = flags({
    in: "scripts/train/work/final",
    tokenizer: "scripts/train/work/tokenizer.json",
    out: "",
    name: "",
  });
  if (args.out === "" || args.name === "") throw new TypeError("--out and --name are required");
  const bytes = exportGguf(args.in, args.tokenizer, args.out, args.name);
  console.log(`wrote ${args.out}: ${bytes} bytes`);
}
