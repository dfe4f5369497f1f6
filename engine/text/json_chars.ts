/**
 * Characters of a JSON string as the grammar lets the model write them: every character in its
 * canonical JSON form, so one written character is one character of the decoded string (lengths
 * and patterns hold on the decoded value exactly).
 *
 * Canonical form: `"` and `\` escaped as `\"` and `\\`; U+0008, U+0009, U+000A, U+000C, U+000D as
 * `\b \t \n \f \r`; other controls below U+0020 as `\u00XX` (lowercase hex); everything else
 * raw (UTF-8).
 *
 * @module
 */
import {
  charClass,
  classBody,
  type CodeRanges,
  intersectRanges,
  literal,
  MAX_CODE_POINT,
  normalizeRanges,
  subtractRanges,
} from "./ebnf.ts";

const SHORT: Readonly<Record<number, string>> = { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" };
const ESCAPED: CodeRanges = [[0, 0x1f], [0x22, 0x22], [0x5c, 0x5c]];

const hexDigit = (n: number) => "0123456789abcdef".charCodeAt(n);

/** `[^...]` of ASCII ranges: every code point but those. */
function negatedAscii(excluded: CodeRanges): string {
  return `[^${classBody(excluded)}]`;
}

/** Every code point a JSON string may hold. */
export const ALL_CHARS: CodeRanges = [[0, MAX_CODE_POINT]];

/** The canonical JSON text of one code point inside a string (without quotes). */
export function jsonCharText(c: number): string {
  if (c === 0x22) return '\\"';
  if (c === 0x5c) return "\\\\";
  if (c < 0x20) return SHORT[c] ?? "\\u00" + c.toString(16).padStart(2, "0");
  return String.fromCodePoint(c);
}

/** Non-ASCII code points a class may list one by one (XGrammar matches them only as literals). */
export const MAX_LISTED = 64;

/**
 * An EBNF expression for one character from `set`, written canonically; null for an empty set.
 *
 * XGrammar 0.1.27 mismatches character classes with non-ASCII members (a positive `[é-ü]`
 * matches single UTF-8 bytes, a negated `[^é]` still matches `é`), so non-ASCII characters are
 * written as a negated class of ASCII members only (when the set holds every non-ASCII
 * character), as literals (at most {@linkcode MAX_LISTED} of them), or left out: a class such as
 * `.` or `\S`, which excludes a few non-ASCII characters, matches ASCII only. Left out means a
 * narrower grammar, never an invalid output.
 *
 * @example
 * ```ts
 * import { jsonCharExpr } from "./json_chars.ts";
 * jsonCharExpr([[0x61, 0x7a]]); // "[a-z]"
 * jsonCharExpr([[0x20, 0x10ffff]]); // '([^\\"\\\\\\x00-\\x1f] | "\\\\\\"" | "\\\\\\\\")'
 * ```
 */
export function jsonCharExpr(set: CodeRanges): string | null {
  const alts: string[] = [];
  const plain = subtractRanges(set, ESCAPED);
  const ascii = intersectRanges(plain, [[0, 0x7f]]);
  const wide = intersectRanges(plain, [[0x80, MAX_CODE_POINT]]);
  if (wide.length === 1 && wide[0][0] === 0x80 && wide[0][1] === MAX_CODE_POINT) {
    alts.push(negatedAscii(subtractRanges([[0, 0x7f]], ascii)));
  } else {
    if (ascii.length) alts.push(charClass(ascii));
    if (wide.reduce((n, [a, b]) => n + b - a + 1, 0) <= MAX_LISTED) {
      for (const [a, b] of wide) for (let c = a; c <= b; c++) alts.push(literal(String.fromCodePoint(c)));
    }
  }
  for (const c of [0x22, 0x5c]) {
    if (intersectRanges(set, [[c, c]]).length) alts.push(literal(jsonCharText(c)));
  }
  const nibbles: [number, number][][] = [[], []]; // \u000X and \u001X escapes by their last hex digit
  for (const [a, b] of intersectRanges(set, [[0, 0x1f]])) {
    for (let c = a; c <= b; c++) {
      if (SHORT[c]) alts.push(literal(SHORT[c]));
      else nibbles[c >> 4].push([hexDigit(c & 15), hexDigit(c & 15)]);
    }
  }
  nibbles.forEach((digits, hi) => {
    if (digits.length) alts.push(`(${literal(`\\u00${hi}`)} ${charClass(normalizeRanges(digits))})`);
  });
  if (alts.length === 0) return null;
  return alts.length === 1 ? alts[0] : `(${alts.join(" | ")})`;
}

/** EBNF: one character written as itself (not `"`, `\`, or a control character). */
export const PLAIN_CHAR = '[^"\\\\\\x00-\\x1f]';
/** EBNF: one canonical escape (`\"`, `\\`, `\b \t \n \f \r`, `\u00XX` for other controls). */
export const JSON_ESCAPE = '"\\\\" (["\\\\bfnrt] | "u00" ("0" [0-7bef] | "1" [0-9a-f]))';

/** The EBNF for one character of an unconstrained JSON string. */
export const ANY_JSON_CHAR: string = jsonCharExpr(ALL_CHARS)!;
