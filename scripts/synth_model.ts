/**
 * Writes a deterministic random-weight BitNet b1.58 GGUF of any shape: ternary projections with one
 * scale per tensor (I2_S, TQ2_0 or TQ1_0), F32 norms near 1, a small gaussian-ish F16 or Q8_0
 * embedding, and a byte-level BPE vocabulary (synthetic, or the real LLaMA-3 one).
 *
 * The same seed gives the same bytes, and the same trits and scales whatever `--type`, `--arch` or
 * `--embd` is chosen, so files of different layouts describe the same model.
 *
 * ```sh
 * deno task synth --preset tiny --type tq2_0 --out /tmp/tiny-tq2.gguf
 * deno task synth --preset 2b4t --out /tmp/2b4t.gguf   # the official shape, ~1.2 GB
 * ```
 *
 * @example
 * ```ts ignore
 * import { synthModel } from "./synth_model.ts";
 * const summary = await synthModel({ preset: "tiny", type: "i2_s", out: "/tmp/tiny.gguf" });
 * summary.bytes; // file size
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { GGML_TYPE } from "../engine/format/ggml_types.ts";
import { type GgufTensorSpec, type GgufTypedValue, writeGguf } from "../engine/format/gguf_writer.ts";
import { packI2S, packTQ1, packTQ2, quantizeQ8_0 } from "../engine/format/ternary_pack.ts";
import { BYTE_TO_CHAR } from "../engine/text/byte_unicode.ts";
import { splitmix32 } from "./_prng.ts";

/** Everything that decides the generated file. */
export interface SynthOptions {
  readonly preset: "tiny" | "2b4t";
  readonly type: "i2_s" | "tq2_0" | "tq1_0";
  readonly embd: "f16" | "q8_0";
  readonly arch: "bitnet-b1.58" | "bitnet-25" | "bitnet";
  readonly vocab: "synthetic" | "llama3";
  readonly seed: number;
  readonly out: string;
  readonly dim: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly ffn: number;
  readonly ctx: number;
  readonly nVocab: number;
  readonly hiddenAct?: "relu2" | "silu";
}

/** What {@linkcode synthModel} wrote. */
export interface SynthSummary {
  readonly options: SynthOptions;
  readonly bytes: number;
  readonly tensors: number;
  readonly seconds: number;
}

const PRESETS = {
  tiny: { dim: 256, layers: 2, heads: 4, kvHeads: 2, ffn: 768, ctx: 256, vocab: "synthetic", nVocab: 512 },
  "2b4t": {
    dim: 2560,
    layers: 30,
    heads: 20,
    kvHeads: 5,
    ffn: 6912,
    ctx: 4096,
    vocab: "llama3",
    nVocab: 128256,
  },
} as const;

const LLAMA3_VOCAB = 128256;
const ROPE_BASE = 500000;
const RMS_EPS = 1e-5;
const FILE_TYPE = { i2_s: 40, tq1_0: 36, tq2_0: 37 } as const;
const TERNARY = { i2_s: GGML_TYPE.I2_S, tq2_0: GGML_TYPE.TQ2_0, tq1_0: GGML_TYPE.TQ1_0 } as const;
const PACK = { i2_s: packI2S, tq2_0: packTQ2, tq1_0: packTQ1 } as const;
const ROW_MULTIPLE = { i2_s: 128, tq2_0: 256, tq1_0: 256 } as const;

/**
 * Fills in preset defaults and checks the shape.
 *
 * @throws {RangeError} for a shape the chosen layouts cannot hold
 * @throws {TypeError} for an unknown preset, type, arch, vocab or embedding type
 *
 * @example
 * ```ts
 * import { resolveSynthOptions } from "./synth_model.ts";
 * resolveSynthOptions({ preset: "tiny", type: "tq1_0", out: "/tmp/t.gguf" }).arch; // "bitnet"
 * ```
 */
export function resolveSynthOptions(given: Partial<SynthOptions> & { out: string }): SynthOptions {
  const preset = given.preset ?? "tiny";
  if (!(preset in PRESETS)) throw new TypeError(`Unknown preset "${preset}", expected tiny or 2b4t`);
  const p = PRESETS[preset];
  const type = given.type ?? "i2_s";
  oneOf("type", type, Object.keys(TERNARY));
  const o: SynthOptions = {
    preset,
    type,
    embd: given.embd ?? "f16",
    arch: given.arch ?? (type === "i2_s" ? "bitnet-b1.58" : "bitnet"),
    vocab: given.vocab ?? p.vocab,
    seed: given.seed ?? 1,
    out: given.out,
    dim: given.dim ?? p.dim,
    layers: given.layers ?? p.layers,
    heads: given.heads ?? p.heads,
    kvHeads: given.kvHeads ?? p.kvHeads,
    ffn: given.ffn ?? p.ffn,
    ctx: given.ctx ?? p.ctx,
    nVocab: given.nVocab ?? ((given.vocab ?? p.vocab) === "llama3" ? LLAMA3_VOCAB : p.nVocab),
    hiddenAct: given.hiddenAct,
  };
  oneOf("embd", o.embd, ["f16", "q8_0"]);
  oneOf("arch", o.arch, ["bitnet-b1.58", "bitnet-25", "bitnet"]);
  oneOf("vocab", o.vocab, ["synthetic", "llama3"]);
  if (o.hiddenAct !== undefined) oneOf("hidden-act", o.hiddenAct, ["relu2", "silu"]);
  for (const k of ["seed", "dim", "layers", "heads", "kvHeads", "ffn", "ctx", "nVocab"] as const) {
    if (!Number.isSafeInteger(o[k]) || o[k] < (k === "seed" ? 0 : 1)) {
      throw new RangeError(`--${k} must be a positive integer, got ${o[k]}`);
    }
  }
  const m = ROW_MULTIPLE[o.type];
  if (o.dim % m !== 0 || o.ffn % m !== 0) {
    throw new RangeError(`${o.type} needs --dim and --ffn multiples of ${m}, got ${o.dim} and ${o.ffn}`);
  }
  if (o.dim % o.heads !== 0 || (o.dim / o.heads) % 2 !== 0) {
    throw new RangeError(`--dim ${o.dim} must split into --heads ${o.heads} heads of even size`);
  }
  if (o.heads % o.kvHeads !== 0) {
    throw new RangeError(`--heads ${o.heads} must be a multiple of --kv-heads ${o.kvHeads}`);
  }
  if (o.vocab === "llama3" && o.nVocab !== LLAMA3_VOCAB) {
    throw new RangeError(`--vocab llama3 has ${LLAMA3_VOCAB} tokens, got --n-vocab ${o.nVocab}`);
  }
  if (o.vocab === "synthetic" && o.nVocab < 256 + SPECIALS_MIN) {
    throw new RangeError(`--n-vocab must be at least ${256 + SPECIALS_MIN}, got ${o.nVocab}`);
  }
  return Object.freeze(o);
}

/**
 * Generates the model described by `given` (preset defaults filled in) and streams it to `given.out`.
 *
 * @example
 * ```ts ignore
 * import { synthModel } from "./synth_model.ts";
 * await synthModel({ preset: "tiny", type: "tq2_0", seed: 7, out: "/tmp/tiny-tq2.gguf" });
 * ```
 */
export async function synthModel(given: Partial<SynthOptions> & { out: string }): Promise<SynthSummary> {
  const o = resolveSynthOptions(given);
  const t0 = performance.now();
  const vocab = o.vocab === "llama3" ? await llama3Vocab() : syntheticVocab(o.nVocab);
  const tensors = modelTensors(o);
  const { bytes } = writeGguf(o.out, { metadata: modelMetadata(o, vocab), tensors });
  return { options: o, bytes, tensors: tensors.length, seconds: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------------------------------------
// Metadata

interface Vocab {
  readonly tokens: string[];
  readonly merges: string[];
  readonly types: Int32Array;
  readonly bos: number;
  readonly eos: number;
}

function modelMetadata(o: SynthOptions, vocab: Vocab): [string, GgufTypedValue][] {
  const a = o.arch;
  const u32 = (value: number) => ({ type: "u32", value }) as const;
  const str = (value: string) => ({ type: "string", value }) as const;
  const official = o.vocab === "llama3" && a === "bitnet-b1.58";
  const m: [string, GgufTypedValue][] = [
    ["general.architecture", str(a)],
    [
      "general.name",
      str(o.preset === "2b4t" ? (a === "bitnet-25" ? "bitnet2b_2501" : "bitnet2b") : `synthetic-${o.preset}`),
    ],
    [`${a}.vocab_size`, u32(o.nVocab)],
    [`${a}.context_length`, u32(o.ctx)],
    [`${a}.embedding_length`, u32(o.dim)],
    [`${a}.block_count`, u32(o.layers)],
    [`${a}.feed_forward_length`, u32(o.ffn)],
    [`${a}.rope.dimension_count`, u32(o.dim / o.heads)],
    [`${a}.attention.head_count`, u32(o.heads)],
    [`${a}.attention.head_count_kv`, u32(o.kvHeads)],
  ];
  if (o.hiddenAct !== undefined) m.push([`${a}.hidden_activation`, str(o.hiddenAct)]);
  m.push(
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: true }],
    [`${a}.attention.layer_norm_rms_epsilon`, { type: "f32", value: RMS_EPS }],
    [`${a}.rope.freq_base`, { type: "f32", value: ROPE_BASE }],
    ["general.file_type", u32(FILE_TYPE[o.type])],
    ["tokenizer.ggml.model", str("gpt2")],
  );
  if (!official) m.push(["tokenizer.ggml.pre", str("llama-bpe")]);
  m.push(
    ["tokenizer.ggml.tokens", { type: "array", elem: "string", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "array", elem: "f32", value: new Float32Array(vocab.tokens.length) }],
    ["tokenizer.ggml.token_type", { type: "array", elem: "i32", value: vocab.types }],
    ["tokenizer.ggml.merges", { type: "array", elem: "string", value: vocab.merges }],
    ["tokenizer.ggml.bos_token_id", u32(vocab.bos)],
    ["tokenizer.ggml.eos_token_id", u32(vocab.eos)],
    ["tokenizer.ggml.padding_token_id", u32(vocab.eos)],
    ["tokenizer.chat_template", str(o.preset === "2b4t" ? PLACEHOLDER_TEMPLATE : TRAINED_TEMPLATE)],
    ["general.quantization_version", u32(2)],
  );
  return m;
}

/** The placeholder bitnet.cpp's converter embeds in the official file (bitnet-spec §4.4). */
const PLACEHOLDER_TEMPLATE = "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}" +
  "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

/** The format 2B4T was trained on (bitnet-spec §4.4), without BOS. */
const TRAINED_TEMPLATE = "{% for message in messages %}{{ message['role'] | capitalize + ': ' + " +
  "message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

/** LLaMA-3.0 names of the 256 special tokens 128000..128255 (3.1 renamed 128004, 128008, 128010). */
function llama3Specials(count: number): string[] {
  const named: Record<number, string> = {
    0: "<|begin_of_text|>",
    1: "<|end_of_text|>",
    6: "<|start_header_id|>",
    7: "<|end_header_id|>",
    9: "<|eot_id|>",
  };
  const out: string[] = [];
  for (let i = 0, r = 0; i < count; i++) out.push(named[i] ?? `<|reserved_special_token_${r++}|>`);
  return out;
}

async function llama3Vocab(): Promise<Vocab> {
  // Dev-only dependency: scripts may import it, engine/ and routes/ never do.
  const { default: tok } = await import("llama3-tokenizer-js");
  const tokens = [...tok.vocabById.slice(0, 128000), ...llama3Specials(256)];
  const types = new Int32Array(tokens.length).fill(1).fill(3, 128000);
  // The package keeps merges as a Map from "A B" to rank, inserted in rank order.
  return { tokens, merges: [...tok.merges.keys()], types, bos: 128000, eos: 128001 };
}

const SPECIALS_MIN = 16;

/** 256 byte tokens (GPT-2 order, as LLaMA-3), BPE merges learned from {@linkcode CORPUS}, specials. */
function syntheticVocab(nVocab: number): Vocab {
  const tokens: string[] = [];
  for (let b = 0; b < 256; b++) if (BYTE_TO_CHAR[b].codePointAt(0)! < 256) tokens.push(BYTE_TO_CHAR[b]);
  for (let b = 0; b < 256; b++) if (BYTE_TO_CHAR[b].codePointAt(0)! >= 256) tokens.push(BYTE_TO_CHAR[b]);
  const merges = learnMerges(tokens, nVocab - 256 - SPECIALS_MIN);
  const regular = tokens.length;
  tokens.push(...llama3Specials(nVocab - regular));
  const types = new Int32Array(nVocab).fill(1).fill(3, regular);
  return { tokens, merges, types, bos: regular, eos: regular + 1 };
}

/** Greedy BPE on the pieces of {@linkcode CORPUS}; appends up to `want` new tokens to `tokens`. */
function learnMerges(tokens: string[], want: number): string[] {
  const known = new Set(tokens);
  const encoder = new TextEncoder();
  const counts = new Map<string, number>();
  for (const piece of CORPUS.match(/ ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+/gu) ?? []) {
    const symbols = [...encoder.encode(piece)].map((b) => BYTE_TO_CHAR[b]).join("\u0000");
    counts.set(symbols, (counts.get(symbols) ?? 0) + 1);
  }
  let words = [...counts].map(([w, n]) => ({ parts: w.split("\u0000"), n }));
  const merges: string[] = [];
  for (let added = 0; added < want;) {
    const pairs = new Map<string, number>();
    for (const { parts, n } of words) {
      for (let i = 0; i + 1 < parts.length; i++) {
        const key = parts[i] + " " + parts[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best = "";
    let bestCount = 0;
    for (const [key, n] of pairs) {
      if (n > bestCount || (n === bestCount && key < best)) [best, bestCount] = [key, n];
    }
    if (bestCount === 0) break; // every piece is one token already
    const [left, right] = best.split(" ");
    merges.push(best);
    if (!known.has(left + right)) {
      known.add(left + right);
      tokens.push(left + right);
      added++;
    }
    words = words.map(({ parts, n }) => {
      const next: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        if (i + 1 < parts.length && parts[i] === left && parts[i + 1] === right) next.push(left + right), i++;
        else next.push(parts[i]);
      }
      return { parts: next, n };
    });
  }
  return merges;
}

// ---------------------------------------------------------------------------------------------
// Tensors

function modelTensors(o: SynthOptions): GgufTensorSpec[] {
  const t = TERNARY[o.type];
  const kv = (o.dim / o.heads) * o.kvHeads;
  const embdType = o.embd === "f16" ? GGML_TYPE.F16 : GGML_TYPE.Q8_0;
  const embd = (name: string): GgufTensorSpec => ({
    name,
    type: embdType,
    dims: [o.dim, o.nVocab],
    data: () => embeddingChunks(o, streamFor(o.seed, "token_embd.weight")),
  });
  const norm = (name: string, n: number): GgufTensorSpec => ({
    name,
    type: GGML_TYPE.F32,
    dims: [n],
    data: () => [normWeights(n, streamFor(o.seed, name))],
  });
  const ternary = (name: string, cols: number, rows: number): GgufTensorSpec => ({
    name,
    type: t,
    dims: [cols, rows],
    data: () => [ternaryWeights(o.type, cols * rows, streamFor(o.seed, name))],
  });
  const out = [embd("token_embd.weight")];
  if (o.arch === "bitnet-25") out.push(embd("output.weight")); // an exact copy, as in the early file
  for (let i = 0; i < o.layers; i++) {
    const b = `blk.${i}.`;
    out.push(
      norm(b + "attn_norm.weight", o.dim),
      ternary(b + "attn_q.weight", o.dim, o.dim),
      ternary(b + "attn_k.weight", o.dim, kv),
      ternary(b + "attn_v.weight", o.dim, kv),
      norm(b + "attn_sub_norm.weight", o.dim),
      ternary(b + "attn_output.weight", o.dim, o.dim),
      norm(b + "ffn_norm.weight", o.dim),
      ternary(b + "ffn_gate.weight", o.dim, o.ffn),
      ternary(b + "ffn_up.weight", o.dim, o.ffn),
      norm(b + "ffn_sub_norm.weight", o.ffn),
      ternary(b + "ffn_down.weight", o.ffn, o.dim),
    );
  }
  out.push(norm("output_norm.weight", o.dim));
  return out;
}

/** Uniform trits (one third zeros) times one scale β in [0.5, 2], rounded to f16 so every layout holds it exactly. */
function ternaryWeights(type: SynthOptions["type"], n: number, rng: Rng): Uint8Array {
  const beta = Math.f16round(0.5 + 1.5 * (rng() / 2 ** 32));
  const trits = new Int8Array(n + 4);
  const digits = TRIT_DIGITS;
  for (let i = 0; i < n;) {
    const r = rng();
    for (let s = 0; s < 32; s += 8) {
      const b = (r >>> s) & 255;
      if (b >= 243) continue; // 3^5 = 243: keep the five base-3 digits uniform
      const d = b * 5;
      trits[i] = digits[d], trits[i + 1] = digits[d + 1], trits[i + 2] = digits[d + 2];
      trits[i + 3] = digits[d + 3], trits[i + 4] = digits[d + 4];
      i += 5;
    }
  }
  return PACK[type](trits.subarray(0, n), beta);
}

/** Digit k of b in base 3, minus 1, at index b * 5 + k. */
const TRIT_DIGITS = (() => {
  const t = new Int8Array(243 * 5);
  for (let b = 0; b < 243; b++) {
    for (let k = 0, v = b; k < 5; k++, v = Math.floor(v / 3)) t[b * 5 + k] = (v % 3) - 1;
  }
  return t;
})();

function normWeights(n: number, rng: Rng): Uint8Array {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = 1 + 0.2 * (rng() / 2 ** 32 - 0.5);
  return new Uint8Array(w.buffer);
}

/** Embedding rows in ~4 MiB chunks: each value one of 4096 gaussian samples (σ 0.02) picked at random. */
function* embeddingChunks(o: SynthOptions, rng: Rng): Generator<Uint8Array> {
  const table = new Float16Array(4096);
  for (let i = 0; i < table.length; i += 2) {
    const u = (rng() + 1) / (2 ** 32 + 1);
    const v = rng() / 2 ** 32;
    const r = 0.02 * Math.sqrt(-2 * Math.log(u));
    table[i] = r * Math.cos(2 * Math.PI * v);
    table[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  const bits = new Uint16Array(table.buffer);
  const rows = Math.max(1, Math.floor((4 << 20) / (o.dim * 2)));
  for (let row = 0; row < o.nVocab; row += rows) {
    const n = Math.min(rows, o.nVocab - row) * o.dim;
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i += 2) {
      const r = rng();
      out[i] = bits[r & 4095];
      if (i + 1 < n) out[i + 1] = bits[(r >>> 12) & 4095];
    }
    yield o.embd === "f16" ? new Uint8Array(out.buffer) : quantizeQ8_0(new Float16Array(out.buffer));
  }
}

/** One uint32 stream per tensor ({@linkcode splitmix32}). */
type Rng = () => number;

function streamFor(seed: number, name: string): Rng {
  let h = 0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1) ^ Math.floor(seed / 2 ** 32);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return splitmix32(h);
}

function oneOf(flag: string, value: string, allowed: readonly string[]): void {
  if (!allowed.includes(value)) {
    throw new TypeError(`--${flag} must be one of ${allowed.join(", ")}, got "${value}"`);
  }
}

/** Text the synthetic vocabulary's merges are learned from (original prose, fixed forever). */
const CORPUS = `
The little server wakes before the sun and reads its model from the disk, one block at a time.
Every weight in the model is one of three values: minus one, zero, or plus one. A single scale for
each matrix turns those trits back into real numbers, and that is all the precision it needs. The
tokens arrive as bytes, and the bytes are merged into pieces that the model has seen many times
before: the, and, of, to, in, is, that, with, for, as, on, was, it, by, this, be, are, from.
When a question comes in, the server splits it into words, looks up each word, and then walks
through thirty layers of attention and feed forward blocks. Each layer normalizes the hidden state,
projects it into queries, keys and values, rotates the queries and keys by their positions, and
mixes the values of earlier tokens by how well their keys match. Then the hidden state is
normalized again, squared after a rectifier, gated, and projected down to the model width.
At the end, the final norm and the shared embedding matrix give one score for every token in the
vocabulary, and the sampler picks the next token. The answer streams back to the person who asked,
one small piece after another, until the model writes the end of its turn or the limit is reached.
Numbers such as 1, 2, 3, 10, 42, 100, 2025 and 4096 appear in the text, along with punctuation:
commas, periods, questions? exclamations! "quotes", (parentheses), colons: and semicolons; too.
Testing matters more than speed. A careful engineer writes the scalar reference first, checks the
fast kernels against it on odd shapes and tails, and only then measures how quickly they run. The
same input must give the same output on every machine, with any number of threads, every time.
Memory is precious on the edge: the weights, the key and value cache, and a little scratch space
must all fit, and the server says clearly what to lower when they do not. Requests that wait too
long are told to retry later, and a request that is cancelled frees its slot before the next step.
`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: Object.fromEntries(
      [
        "preset",
        "type",
        "embd",
        "arch",
        "vocab",
        "seed",
        "out",
        "dim",
        "layers",
        "heads",
        "kv-heads",
        "ffn",
        "ctx",
        "n-vocab",
        "hidden-act",
      ]
        .map((k) => [k, { type: "string" as const }]),
    ),
  });
  const num = (k: string) => (values[k] === undefined ? undefined : Number(values[k]));
  const v = values as Record<string, string | undefined>;
  try {
    const preset = (v.preset ?? "tiny") as SynthOptions["preset"];
    const summary = await synthModel({
      preset,
      type: v.type as SynthOptions["type"],
      embd: v.embd as SynthOptions["embd"],
      arch: v.arch as SynthOptions["arch"],
      vocab: v.vocab as SynthOptions["vocab"],
      hiddenAct: v["hidden-act"] as SynthOptions["hiddenAct"],
      seed: num("seed"),
      out: v.out ?? `/tmp/synth-${preset}-${v.type ?? "i2_s"}.gguf`,
      dim: num("dim"),
      layers: num("layers"),
      heads: num("heads"),
      kvHeads: num("kv-heads"),
      ffn: num("ffn"),
      ctx: num("ctx"),
      nVocab: num("n-vocab"),
    });
    const o = summary.options;
    console.log(
      `wrote ${o.out}: ${summary.bytes} bytes, ${summary.tensors} tensors in ${
        summary.seconds.toFixed(1)
      } s\n` +
        `  arch ${o.arch}, ${o.type.toUpperCase()} projections, ${o.embd.toUpperCase()} embedding, ` +
        `${o.vocab} vocab of ${o.nVocab}, seed ${o.seed}\n` +
        `  dim ${o.dim}, layers ${o.layers}, heads ${o.heads}/${o.kvHeads} (head_dim ${o.dim / o.heads}), ` +
        `ffn ${o.ffn}, ctx ${o.ctx}` + (o.hiddenAct ? `, hidden_activation ${o.hiddenAct}` : ""),
    );
  } catch (e) {
    if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
    console.error(`synth_model: ${e.message}`);
    Deno.exit(2);
  }
}
