/**
 * Pre-tokenizers: split text into the pieces that byte-level BPE merges within.
 *
 * {@linkcode LLAMA3_PATTERN} is LLaMA-3's `tokenizer.json` split regex
 * `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
 * rewritten for JavaScript, with two deliberate details:
 *
 * - `\s` is written as the Unicode `White_Space` property. JavaScript's `\s` also matches U+FEFF and
 *   misses U+0085; Oniguruma (Hugging Face `tokenizers`), Rust `regex` (tiktoken, which LLaMA-3 was
 *   trained with) and llama.cpp's `unicode.cpp` all use `White_Space`.
 * - `(?i:'s)` also matches `'ſ` (U+017F LATIN SMALL LETTER LONG S), because Unicode simple case
 *   folding maps ſ to s and both Oniguruma and Rust `regex` fold that way. llama.cpp spells the group
 *   as `[sS]` and splits `'ſ` differently; we follow the Hugging Face / tiktoken reference.
 *
 * Every code point is a letter, a number, white space or something else, so the alternatives cover
 * all input: concatenating the pieces gives back the text (lone surrogates included; they are turned
 * into U+FFFD only when the piece is converted to UTF-8).
 *
 * @module
 */

const S = "\\p{White_Space}";
const NS = "\\P{White_Space}";

/** LLaMA-3's pre-tokenizer regex (global, Unicode). */
export const LLAMA3_PATTERN: RegExp = new RegExp(
  [
    "'(?:[sSſ]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])",
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+",
    "\\p{N}{1,3}",
    ` ?[^${S}\\p{L}\\p{N}]+[\\r\\n]*`,
    `[${S}]*[\\r\\n]+`,
    `[${S}]+(?!${NS})`,
    `[${S}]+`,
  ].join("|"),
  "gu",
);

/** GPT-2's pre-tokenizer regex (`tokenizer.ggml.pre = "gpt-2"`), with the same `\s` rule. */
export const GPT2_PATTERN: RegExp = new RegExp(
  [
    "'s|'t|'re|'ve|'m|'ll|'d",
    " ?\\p{L}+",
    " ?\\p{N}+",
    ` ?[^${S}\\p{L}\\p{N}]+`,
    `[${S}]+(?!${NS})`,
    `[${S}]+`,
  ].join("|"),
  "gu",
);

/**
 * Splits `text` into LLaMA-3 pre-tokens; concatenating the result gives back `text`.
 *
 * @example
 * ```ts
 * import { pretokenize } from "./pretokenize.ts";
 * pretokenize("Hello world!"); // ["Hello", " world", "!"]
 * pretokenize("I'M 12345"); // ["I", "'M", " ", "123", "45"]
 * ```
 */
export function pretokenize(text: string): string[] {
  return splitWith(LLAMA3_PATTERN, text);
}

/**
 * Splits `text` with a global pre-tokenizer `pattern` such as {@linkcode GPT2_PATTERN}.
 *
 * @example
 * ```ts
 * import { GPT2_PATTERN, splitWith } from "./pretokenize.ts";
 * splitWith(GPT2_PATTERN, "12345 apples"); // ["12345", " apples"]
 * ```
 */
export function splitWith(pattern: RegExp, text: string): string[] {
  return text.match(pattern) ?? [];
}
