/**
 * Strings from a model file, made safe to put in an error message: a corrupt file can hold names
 * of any length with NUL bytes, terminal escape codes or bytes that are not UTF-8.
 *
 * @module
 */

/** Longest part of a file string a message quotes. */
export const QUOTE_MAX = 96;

/**
 * `s` in double quotes with backslash escapes for what a terminal or a log line must not see raw:
 * control characters (`\n`, `\x1b`, ...), U+FFFD (where the file's bytes were not UTF-8),
 * unpaired surrogates, invisible and bidirectional formatting characters, `"` and `\`. A string
 * longer than `max` characters is cut, and its length is said.
 *
 * @example
 * ```ts
 * import { quote } from "./printable.ts";
 * quote("blk.0\u0000\u001b[31m"); // '"blk.0\\x00\\x1b[31m"'
 * quote("x".repeat(1000), 4); // '"xxxx…" (1000 characters)'
 * ```
 */
export function quote(s: string, max = QUOTE_MAX): string {
  let out = "";
  let shown = 0, i = 0;
  for (; i < s.length && shown < max; shown++) {
    const c = s.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length &&
      s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff;
    if (pair) {
      out += s.slice(i, i + 2);
      i += 2;
      continue;
    }
    out += escapeUnit(c);
    i++;
  }
  const cut = i < s.length ? `…" (${s.length} characters)` : `"`;
  return `"${out}${cut}`;
}

const NAMED: Record<number, string> = { 0x22: '\\"', 0x5c: "\\\\", 0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t" };

function escapeUnit(c: number): string {
  if (NAMED[c]) return NAMED[c];
  if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return `\\x${c.toString(16).padStart(2, "0")}`;
  const invisible = (c >= 0x200b && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x206f) || c === 0xfeff || c === 0xfffd || (c >= 0xd800 && c <= 0xdfff);
  return invisible ? `\\u${c.toString(16).padStart(4, "0")}` : String.fromCharCode(c);
}
