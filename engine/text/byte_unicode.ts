/**
 * GPT-2's reversible byte <-> character mapping used by byte-level BPE vocabularies (LLaMA-3, the
 * GGUF `gpt2` tokenizer model): printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100 and up, so every byte string becomes a string of visible characters.
 *
 * @example
 * ```ts
 * import { BYTE_TO_CHAR } from "./byte_unicode.ts";
 * BYTE_TO_CHAR[0x20]; // "Ġ"
 * ```
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return Object.freeze(out);
})();

/** The inverse of {@linkcode BYTE_TO_CHAR}: code point -> byte. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** Maps UTF-8 bytes to their byte-level BPE characters. */
export function bytesToSymbols(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}
