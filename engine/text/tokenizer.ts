/**
 * Byte-level BPE tokenizer (GGUF `tokenizer.ggml.model = "gpt2"`: LLaMA-3, BitNet b1.58 2B4T).
 *
 * Encoding: optional split on special tokens (only with `parseSpecial`), pre-tokenization with the
 * LLaMA-3 regex (see `pretokenize.ts`), UTF-8 bytes of each piece, then either the whole piece as
 * one token (`ignore_merges`: LLaMA-3 emits a piece that is itself in the vocabulary directly) or
 * the BPE merge loop. Results per piece are cached (bounded). Decoding maps token strings back
 * through the GPT-2 byte table; invalid UTF-8 becomes U+FFFD (WHATWG decoder). No
 * `clean_up_tokenization_spaces`: text round-trips exactly.
 *
 * Special tokens: control (type 3) and user-defined (type 4) tokens are matched in the text only when
 * `parseSpecial` is true, longest text first at the leftmost position; otherwise their text is
 * ordinary text (so user input cannot inject `<|eot_id|>`). Hugging Face and llama.cpp always match
 * user-defined tokens; LLaMA-3 has none, and the stricter rule keeps injection out by construction.
 *
 * Strings are JavaScript strings: a lone surrogate has no UTF-8 form and is encoded as U+FFFD (as
 * `TextEncoder` does), so only well-formed strings round-trip through encode/decode.
 *
 * @module
 */

import { BYTE_TO_CHAR, CHAR_TO_BYTE } from "./byte_unicode.ts";
import { bpeMerge, BpeScratch, MergeTable } from "./_bpe.ts";
import { GPT2_PATTERN, LLAMA3_PATTERN } from "./pretokenize.ts";
import { hashRange, VocabIndex } from "./_vocab_index.ts";
import { quote } from "../format/printable.ts";

/** GGUF token types (`tokenizer.ggml.token_type`). */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** The pre-tokenizers this tokenizer implements. */
export type PreTokenizer = "llama3" | "gpt2";

/** Plain data a {@linkcode Tokenizer} is built from. */
export interface TokenizerData {
  /** Token strings by id: GPT-2 byte-level strings for normal tokens, literal text for special ones. */
  tokens: readonly string[];
  /** Merges as `"A B"`; the rank is the index. */
  merges: readonly string[];
  /** GGUF token types by id (see {@linkcode TokenType}); absent: all normal except BOS/EOS/EOT (control). */
  tokenTypes?: Int32Array | readonly number[];
  bosId: number;
  eosId: number;
  /** End-of-turn token; absent: the id of `<|eot_id|>` if the vocabulary has it. */
  eotId?: number;
  padId?: number;
  /** Whether {@linkcode Tokenizer.encode} prepends BOS by default. */
  addBos: boolean;
  /** Pre-tokenizer; default `"llama3"`. */
  pre?: PreTokenizer;
  /** Emit a piece that is itself a vocabulary token without merging; default: `pre === "llama3"`. */
  ignoreMerges?: boolean;
}

/** Options of {@linkcode Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend BOS (default: the model's `add_bos_token`). Never added twice. */
  addBos?: boolean;
  /** Recognise special-token text such as `<|eot_id|>` (default false: it is plain text). */
  parseSpecial?: boolean;
}

/** Options of {@linkcode Tokenizer.decode}. */
export interface DecodeOptions {
  /** Leave out control tokens (BOS, `<|eot_id|>`, ...); default false (rendered as their text). */
  skipSpecial?: boolean;
}

const CACHE_LIMIT = 65536;
const CACHE_MAX_PIECE = 128;
const utf8 = new TextEncoder();

/**
 * A byte-level BPE tokenizer.
 *
 * @example
 * ```ts
 * import { Tokenizer } from "./tokenizer.ts";
 * declare const meta: ReadonlyMap<string, unknown>; // GGUF metadata
 * const tok = Tokenizer.fromGgufMetadata(meta);
 * const ids = tok.encode("Hello world"); // [128000, 9906, 1917]
 * tok.decode(ids, { skipSpecial: true }); // "Hello world"
 * ```
 */
export class Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** End-of-turn token id, or -1 when the vocabulary has none. */
  readonly eotId: number;
  /** Padding token id, or -1. */
  readonly padId: number;
  readonly addBos: boolean;
  readonly pre: PreTokenizer;
  readonly ignoreMerges: boolean;

  readonly #tokens: readonly string[];
  readonly #types: Uint8Array;
  readonly #vocab: VocabIndex;
  readonly #byteToId = new Int32Array(256).fill(-1);
  readonly #merges: MergeTable;
  readonly #pattern: RegExp;
  readonly #specialRe: RegExp | null;
  readonly #bytes: (Uint8Array | undefined)[];
  readonly #cache = new Map<string, number | number[]>();
  readonly #scratch = new BpeScratch();
  #utf8 = new Uint8Array(1024);

  constructor(data: TokenizerData) {
    const { tokens } = data;
    const n = tokens.length;
    if (n === 0) throw new RangeError("Cannot build tokenizer: the vocabulary is empty");
    this.vocabSize = n;
    this.#tokens = tokens;
    this.#bytes = new Array(n);
    this.bosId = checkId(data.bosId, n, "bosId");
    this.eosId = checkId(data.eosId, n, "eosId");
    this.padId = data.padId === undefined || data.padId < 0 ? -1 : checkId(data.padId, n, "padId");
    this.addBos = data.addBos;
    this.pre = data.pre ?? "llama3";
    this.ignoreMerges = data.ignoreMerges ?? this.pre === "llama3";
    this.#pattern = this.pre === "llama3" ? LLAMA3_PATTERN : GPT2_PATTERN;

    this.#vocab = new VocabIndex(tokens); // later duplicates win, as in llama.cpp
    this.eotId = data.eotId !== undefined && data.eotId >= 0
      ? checkId(data.eotId, n, "eotId")
      : this.#vocab.find("<|eot_id|>");

    this.#types = new Uint8Array(n).fill(TokenType.NORMAL);
    if (data.tokenTypes) {
      if (data.tokenTypes.length !== n) {
        throw new RangeError(`Cannot build tokenizer: ${data.tokenTypes.length} token types for ${n} tokens`);
      }
      this.#types.set(data.tokenTypes);
    } else {
      for (const id of [this.bosId, this.eosId, this.eotId]) if (id >= 0) this.#types[id] = TokenType.CONTROL;
    }
    for (let b = 0; b < 256; b++) {
      const id = this.#vocab.find(BYTE_TO_CHAR[b]);
      if (id >= 0 && this.#isText(id)) this.#byteToId[b] = id;
    }
    this.#merges = this.#buildMerges(data.merges);
    this.#specialRe = this.#buildSpecialPattern();
  }

  /**
   * Builds a tokenizer from GGUF metadata (`tokenizer.ggml.*` keys).
   *
   * `tokenizer.ggml.pre`: absent, `"llama3"`, `"llama-v3"` or `"llama-bpe"` select LLaMA-3 (absent
   * as in ik_llama.cpp; bitnet.cpp would fall back to llama.cpp's degraded "default" regexes, which
   * we do not implement, so `"default"` is refused); `"gpt-2"` selects the GPT-2 regex.
   *
   * @example
   * ```ts
   * import { Tokenizer } from "./tokenizer.ts";
   * declare const meta: ReadonlyMap<string, unknown>;
   * Tokenizer.fromGgufMetadata(meta).eotId; // 128009 for BitNet b1.58 2B4T
   * ```
   */
  static fromGgufMetadata(meta: ReadonlyMap<string, unknown>): Tokenizer {
    const model = meta.get("tokenizer.ggml.model");
    if (model !== "gpt2") {
      throw new TypeError(
        `Cannot build tokenizer: "tokenizer.ggml.model" is ${
          quote(String(model))
        }, expected "gpt2" (byte-level BPE)`,
      );
    }
    const preValue = meta.get("tokenizer.ggml.pre");
    let pre: PreTokenizer;
    if (preValue === undefined || ["llama3", "llama-v3", "llama-bpe"].includes(preValue as string)) {
      pre = "llama3";
    } else if (preValue === "gpt-2") pre = "gpt2";
    else {
      throw new TypeError(
        `Cannot build tokenizer: "tokenizer.ggml.pre" is ${
          quote(String(preValue))
        }, supported: "llama3", "llama-v3", "llama-bpe", "gpt-2" or absent`,
      );
    }
    const types = meta.get("tokenizer.ggml.token_type");
    const addBos = meta.get("tokenizer.ggml.add_bos_token");
    return new Tokenizer({
      tokens: stringArray(meta, "tokenizer.ggml.tokens"),
      merges: stringArray(meta, "tokenizer.ggml.merges"),
      tokenTypes: types === undefined ? undefined : numberArray(types, "tokenizer.ggml.token_type"),
      bosId: idValue(meta, "tokenizer.ggml.bos_token_id", true),
      eosId: idValue(meta, "tokenizer.ggml.eos_token_id", true),
      eotId: idValue(meta, "tokenizer.ggml.eot_token_id", false),
      padId: idValue(meta, "tokenizer.ggml.padding_token_id", false),
      addBos: typeof addBos === "boolean" ? addBos : pre === "llama3",
      pre,
    });
  }

  /**
   * Encodes text to token ids.
   *
   * @example
   * ```ts
   * import { Tokenizer } from "./tokenizer.ts";
   * declare const tok: Tokenizer;
   * tok.encode("Hi<|eot_id|>", { addBos: false }); // "<|eot_id|>" as text: [13347, 27, 91, 68, 354, 851, 91, 29]
   * tok.encode("Hi<|eot_id|>", { addBos: false, parseSpecial: true }); // [13347, 128009]
   * ```
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const addBos = (options.addBos ?? this.addBos) && this.bosId >= 0;
    const out: number[] = addBos ? [this.bosId] : [];
    const re = options.parseSpecial ? this.#specialRe : null;
    if (re === null) {
      this.#encodeText(text, out);
      return out;
    }
    let last = 0;
    for (const m of text.matchAll(re)) {
      if (m.index > last) this.#encodeText(text.slice(last, m.index), out);
      const id = this.#vocab.find(m[0]);
      if (!(addBos && m.index === 0 && id === this.bosId)) out.push(id); // exactly one BOS
      last = m.index + m[0].length;
    }
    if (last < text.length) this.#encodeText(text.slice(last), out);
    return out;
  }

  /**
   * Decodes token ids to text. Control tokens render as their text unless `skipSpecial`; a partial
   * UTF-8 sequence before a rendered special token or at the end becomes U+FFFD.
   *
   * @example
   * ```ts
   * import { Tokenizer } from "./tokenizer.ts";
   * declare const tok: Tokenizer;
   * tok.decode([128000, 9906, 1917]); // "<|begin_of_text|>Hello world"
   * ```
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecial ?? false;
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    let text = "";
    let buf = new Uint8Array(ids.length * 4 + 16);
    let len = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      this.#check(id);
      const type = this.#types[id];
      if ((type === TokenType.CONTROL && skip) || type === TokenType.UNUSED) continue;
      if (!this.#isText(id)) {
        if (len > 0) text += decoder.decode(buf.subarray(0, len));
        len = 0;
        text += this.#tokens[id];
        continue;
      }
      const b = this.tokenBytes(id);
      if (len + b.length > buf.length) {
        const grown = new Uint8Array((len + b.length) * 2);
        grown.set(buf.subarray(0, len));
        buf = grown;
      }
      buf.set(b, len);
      len += b.length;
    }
    if (len > 0) text += decoder.decode(buf.subarray(0, len));
    return text;
  }

  /**
   * The raw bytes of one token: UTF-8 of the text a normal token stands for (possibly a partial
   * character), the UTF-8 of the literal text for special tokens, nothing for unused ones.
   * The returned array is shared: do not modify it.
   *
   * @example
   * ```ts
   * import { Tokenizer } from "./tokenizer.ts";
   * declare const tok: Tokenizer;
   * tok.tokenBytes(1917); // Uint8Array [32, 119, 111, 114, 108, 100] (" world")
   * ```
   */
  tokenBytes(id: number): Uint8Array {
    this.#check(id);
    const cached = this.#bytes[id];
    if (cached) return cached;
    let bytes: Uint8Array;
    if (this.#types[id] === TokenType.UNUSED) bytes = new Uint8Array(0);
    else if (!this.#isText(id)) bytes = utf8.encode(this.#tokens[id]);
    else bytes = symbolsToBytes(this.#tokens[id]);
    this.#bytes[id] = bytes;
    return bytes;
  }

  /**
   * The piece of one token as llama-server's `/tokenize` with `with_pieces` reports it: a string
   * when the token's bytes are valid UTF-8, else the bytes as an array of numbers.
   *
   * @example
   * ```ts
   * import { Tokenizer } from "./tokenizer.ts";
   * declare const tok: Tokenizer;
   * tok.piece(1917); // " world"
   * tok.piece(9468); // [240, 159] (the first two bytes of many emoji)
   * ```
   */
  piece(id: number): string | number[] {
    const bytes = this.tokenBytes(id);
    try {
      return strictUtf8.decode(bytes);
    } catch {
      return Array.from(bytes);
    }
  }

  /** {@linkcode Tokenizer.piece} for each id. */
  pieces(ids: ArrayLike<number>): (string | number[])[] {
    return Array.from(ids, (id) => this.piece(id));
  }

  /** Whether `id` is a special token (control or user-defined): its text is literal, not bytes. */
  isSpecial(id: number): boolean {
    this.#check(id);
    return !this.#isText(id) && this.#types[id] !== TokenType.UNUSED;
  }

  /** The GGUF token type of `id` (see {@linkcode TokenType}). */
  tokenType(id: number): number {
    this.#check(id);
    return this.#types[id];
  }

  /** The id of the token whose vocabulary string is exactly `text`, or undefined. */
  tokenToId(text: string): number | undefined {
    const id = this.#vocab.find(text);
    return id < 0 ? undefined : id;
  }

  /** The vocabulary string of `id` (byte-level form for normal tokens). */
  tokenString(id: number): string {
    this.#check(id);
    return this.#tokens[id];
  }

  #isText(id: number): boolean {
    const t = this.#types[id];
    return t !== TokenType.CONTROL && t !== TokenType.USER_DEFINED && t !== TokenType.UNUSED;
  }

  #check(id: number): void {
    if (!(id >= 0 && id < this.vocabSize && Number.isInteger(id))) {
      throw new RangeError(`Token id ${id} is out of range [0, ${this.vocabSize})`);
    }
  }

  #buildMerges(merges: readonly string[]): MergeTable {
    const m = merges.length;
    const left = new Int32Array(m);
    const right = new Int32Array(m);
    const result = new Int32Array(m);
    const vocab = this.#vocab;
    for (let r = 0; r < m; r++) {
      const s = merges[r];
      const sp = s.indexOf(" ", 1);
      let a = -1, b = -1, c = -1;
      if (sp > 0) {
        const ha = hashRange(s, 0, sp), hb = hashRange(s, sp + 1, s.length);
        a = vocab.find(s, 0, sp, ha);
        b = vocab.find(s, sp + 1, s.length, hb);
        c = vocab.findConcat(s, 0, sp, sp + 1, s.length, ha, hb);
      }
      if (a < 0 || b < 0 || c < 0) {
        throw new SyntaxError(
          `Cannot build tokenizer: merge ${r} ${quote(s)} is not "A B" with A, B and AB in the vocabulary`,
        );
      }
      left[r] = a;
      right[r] = b;
      result[r] = c;
    }
    return new MergeTable(left, right, result);
  }

  #buildSpecialPattern(): RegExp | null {
    const texts: string[] = [];
    for (let id = 0; id < this.vocabSize; id++) {
      const t = this.#types[id];
      if ((t === TokenType.CONTROL || t === TokenType.USER_DEFINED) && this.#tokens[id].length > 0) {
        if (this.#vocab.find(this.#tokens[id]) === id) texts.push(this.#tokens[id]);
      }
    }
    if (texts.length === 0) return null;
    texts.sort((a, b) => b.length - a.length);
    return new RegExp(texts.map((t) => t.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|"), "gu");
  }

  #encodeText(text: string, out: number[]): void {
    const pieces = text.match(this.#pattern);
    if (pieces === null) return;
    const cache = this.#cache;
    for (const piece of pieces) {
      const hit = cache.get(piece);
      if (hit !== undefined) {
        if (typeof hit === "number") out.push(hit);
        else for (let i = 0; i < hit.length; i++) out.push(hit[i]);
        continue;
      }
      const start = out.length;
      this.#encodePiece(piece, out);
      if (piece.length <= CACHE_MAX_PIECE) {
        if (cache.size >= CACHE_LIMIT) cache.clear();
        cache.set(piece, out.length - start === 1 ? out[start] : out.slice(start));
      }
    }
  }

  #encodePiece(piece: string, out: number[]): void {
    if (this.#utf8.length < piece.length * 3) this.#utf8 = new Uint8Array(piece.length * 3);
    const bytes = this.#utf8;
    const n = encodeUtf8(piece, bytes);
    if (this.ignoreMerges && n > 1) {
      const id = this.#vocab.findBytes(bytes, n);
      if (id >= 0 && this.#types[id] === TokenType.NORMAL) {
        out.push(id);
        return;
      }
    }
    const scratch = this.#scratch;
    scratch.ensure(n);
    const ids = scratch.ids;
    for (let i = 0; i < n; i++) {
      const id = this.#byteToId[bytes[i]];
      if (id < 0) {
        throw new RangeError(
          `Cannot encode byte 0x${
            bytes[i].toString(16).padStart(2, "0")
          }: the vocabulary has no token for it`,
        );
      }
      ids[i] = id;
    }
    bpeMerge(this.#merges, scratch, n, out);
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** UTF-8 of `s` into `out` (room for 3 bytes per UTF-16 unit); lone surrogates become U+FFFD. */
function encodeUtf8(s: string, out: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
    } else if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6);
      out[n++] = 0x80 | (c & 63);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        out[n++] = 0xf0 | (c >> 18);
        out[n++] = 0x80 | ((c >> 12) & 63);
        out[n++] = 0x80 | ((c >> 6) & 63);
        out[n++] = 0x80 | (c & 63);
      } else {
        out[n++] = 0xef; // U+FFFD
        out[n++] = 0xbf;
        out[n++] = 0xbd;
      }
    } else {
      out[n++] = 0xe0 | (c >> 12);
      out[n++] = 0x80 | ((c >> 6) & 63);
      out[n++] = 0x80 | (c & 63);
    }
  }
  return n;
}

/** Bytes of a byte-level token string; a character outside the byte table stands for its own UTF-8. */
function symbolsToBytes(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b !== undefined) out.push(b);
    else out.push(...utf8.encode(ch));
  }
  return Uint8Array.from(out);
}

function checkId(id: number, n: number, name: string): number {
  if (!Number.isInteger(id) || id < 0 || id >= n) {
    throw new RangeError(`Cannot build tokenizer: ${name} ${id} is out of range [0, ${n})`);
  }
  return id;
}

function stringArray(meta: ReadonlyMap<string, unknown>, key: string): string[] {
  const v = meta.get(key);
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
    throw new TypeError(`Cannot build tokenizer: "${key}" is ${describe(v)}, expected an array of strings`);
  }
  return v;
}

function numberArray(v: unknown, key: string): Int32Array {
  if (v instanceof Int32Array) return v;
  if (ArrayBuffer.isView(v) || Array.isArray(v)) {
    return Int32Array.from(v as ArrayLike<number | bigint>, (x) => Number(x));
  }
  throw new TypeError(`Cannot build tokenizer: "${key}" is ${describe(v)}, expected an array of integers`);
}

function idValue(meta: ReadonlyMap<string, unknown>, key: string, required: true): number;
function idValue(meta: ReadonlyMap<string, unknown>, key: string, required: false): number | undefined;
function idValue(meta: ReadonlyMap<string, unknown>, key: string, required: boolean): number | undefined {
  const v = meta.get(key);
  if (v === undefined && !required) return undefined;
  if ((typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint") return Number(v);
  throw new TypeError(`Cannot build tokenizer: "${key}" is ${describe(v)}, expected an integer token id`);
}

function describe(v: unknown): string {
  if (v === undefined) return "missing";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return typeof v === "string" ? quote(v) : typeof v;
}
