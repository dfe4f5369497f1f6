/**
 * Writing XGrammar EBNF: a rule set with unique names, string literals and character classes.
 *
 * XGrammar's EBNF (W3C XML notation, GBNF-compatible): `name ::= body`, `"literal"`, `[a-z]`,
 * `[^...]`, `( )`, `|`, `*`, `+`, `?`, `{m,n}`; escapes `\"`, `\\`, `\xHH`, `\uHHHH`,
 * `\UHHHHHHHH`. Generated names never end in `_<digits>`, the suffix XGrammar gives the rules it
 * derives while normalising, so they cannot collide.
 *
 * @module
 */

/** A set of Unicode code points as sorted, disjoint, non-adjacent inclusive ranges. */
export type CodeRanges = readonly (readonly [number, number])[];

/** The largest code point. */
export const MAX_CODE_POINT = 0x10ffff;

/**
 * A growing set of EBNF rules.
 *
 * @example
 * ```ts
 * import { Ebnf, literal } from "./ebnf.ts";
 * const g = new Ebnf();
 * const digit = g.rule("digit", "[0-9]");
 * g.define("root", `${literal("n=")} ${digit}+`);
 * g.toString(); // 'r0_digit ::= [0-9]\nroot ::= "n=" r0_digit+\n'
 * ```
 */
export class Ebnf {
  readonly #rules = new Map<string, string>();
  readonly #taken = new Set<string>();
  readonly #memo = new Map<string, string>();
  #next = 0;

  /**
   * The rule for `key`, made once with `body(name)` (for helper rules shared by several uses; the
   * body may refer to its own name).
   */
  memo(key: string, hint: string, body: (name: string) => string): string {
    const known = this.#memo.get(key);
    if (known) return known;
    const name = this.name(hint);
    this.#memo.set(key, name);
    this.define(name, body(name));
    return name;
  }

  /** A fresh rule name built from `hint` (letters and underscores kept). */
  name(hint: string): string {
    const clean = hint.replace(/[^A-Za-z_]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 24);
    const name = `r${this.#next++}${clean ? "_" + clean : ""}`;
    this.#taken.add(name);
    return name;
  }

  /** Sets the body of rule `name` (a name from {@linkcode Ebnf.name} or a fixed one such as `root`). */
  define(name: string, body: string): string {
    this.#taken.add(name);
    this.#rules.set(name, body);
    return name;
  }

  /** A new rule with `body`; returns its name. */
  rule(hint: string, body: string): string {
    return this.define(this.name(hint), body);
  }

  /** Whether a rule has a body. */
  has(name: string): boolean {
    return this.#rules.has(name);
  }

  /** Number of rules. */
  get size(): number {
    return this.#rules.size;
  }

  /** The grammar text, one rule per line, in definition order. */
  toString(): string {
    let out = "";
    for (const [name, body] of this.#rules) out += `${name} ::= ${body}\n`;
    return out;
  }
}

/** Largest count written as XGrammar's own `{m,n}` (it unrolls it into one rule per count). */
export const NATIVE_REPEAT = 256;

/**
 * An EBNF expression for `min` to `max` (Infinity: unbounded) repetitions of the term `unit`.
 *
 * Up to {@linkcode NATIVE_REPEAT} this is XGrammar's `{m,n}`, which it unrolls into one rule per
 * count: compiling costs a token-mask computation per count, matching stays fast. Beyond, counts
 * are built from rules for exactly 2^k copies (`e_k ::= e_(k-1) e_(k-1)`) and "up to n" as the
 * binary choice `e_(b-1)? ... e_0?`: O(log n) rules and one parse per count, but tokens that cross
 * from one copy into the next are checked while matching (slow for a unit that most tokens fit,
 * such as a free-text character; see `json_schema_ebnf.ts` for strings).
 *
 * @example
 * ```ts
 * import { Ebnf, repeat } from "./ebnf.ts";
 * repeat(new Ebnf(), "[a-z]", 2, 5); // "[a-z]{2,5}"
 * ```
 */
export function repeat(g: Ebnf, unit: string, min: number, max: number): string {
  if (!(min >= 0 && max >= min)) throw new RangeError(`Cannot repeat ${min}..${max} times`);
  if (max === 0) return '""';
  if (max === Infinity) {
    if (min <= NATIVE_REPEAT) return min === 0 ? `${unit}*` : min === 1 ? `${unit}+` : `${unit}{${min},}`;
    return `(${exactly(g, unit, min - 1)} ${unit}+)`;
  }
  if (max <= NATIVE_REPEAT) {
    if (min === 0 && max === 1) return `${unit}?`;
    if (min === 1 && max === 1) return unit;
    return min === max ? `${unit}{${min}}` : `${unit}{${min},${max}}`;
  }
  const head = min > 0 ? exactly(g, unit, min) : "";
  const tail = max > min ? upTo(g, unit, max - min) : "";
  return head && tail ? `(${head} ${tail})` : head || tail;
}

/** Rule for exactly 2^k copies of `unit`. */
function power(g: Ebnf, unit: string, k: number): string {
  if (k === 0) return unit;
  const half = power(g, unit, k - 1);
  return g.memo(`pow:${k}:${unit}`, "pow", () => `${half} ${half}`);
}

/** Exactly n copies (n >= 1): the powers of its binary digits. */
function exactly(g: Ebnf, unit: string, n: number): string {
  if (n === 1) return unit;
  const parts: string[] = [];
  for (let k = 31 - Math.clz32(n); k >= 0; k--) if (n & (1 << k)) parts.push(power(g, unit, k));
  return g.memo(`exact:${n}:${unit}`, "exact", () => parts.join(" "));
}

/** 0..n copies (n >= 1), each count with one parse. */
function upTo(g: Ebnf, unit: string, n: number): string {
  return g.memo(`upto:${n}:${unit}`, "upto", () => {
    const b = 31 - Math.clz32(n + 1); // 2^b - 1 <= n
    const low = Array.from({ length: b }, (_, i) => `${power(g, unit, b - 1 - i)}?`).join(" ");
    if (2 ** b - 1 === n) return low;
    const rest = n - 2 ** b;
    return `${low || '""'} | ${power(g, unit, b)}${rest > 0 ? " " + upTo(g, unit, rest) : ""}`;
  });
}

/** One code point as it may appear inside an EBNF string literal or character class. */
function escapeCodePoint(c: number, special: string): string {
  const ch = String.fromCodePoint(c);
  if (special.includes(ch)) return "\\" + ch;
  if (c >= 0x20 && c < 0x7f) return ch;
  if (c <= 0xff) return "\\x" + c.toString(16).padStart(2, "0");
  if (c <= 0xffff) return "\\u" + c.toString(16).padStart(4, "0");
  return "\\U" + c.toString(16).padStart(8, "0");
}

/**
 * An EBNF string literal that matches exactly `text`.
 *
 * @example
 * ```ts
 * import { literal } from "./ebnf.ts";
 * literal('say "hi"\n'); // '"say \\"hi\\"\\x0a"'
 * ```
 */
export function literal(text: string): string {
  let out = '"';
  for (const ch of text) out += escapeCodePoint(ch.codePointAt(0)!, '"\\');
  return out + '"';
}

/**
 * An EBNF character class for a non-empty set of code points (`[a-z]`), or a literal for one.
 *
 * @example
 * ```ts
 * import { charClass } from "./ebnf.ts";
 * charClass([[0x30, 0x39], [0x61, 0x66]]); // "[0-9a-f]"
 * ```
 */
export function charClass(ranges: CodeRanges): string {
  if (ranges.length === 0) throw new RangeError("Cannot write an empty character class");
  if (ranges.length === 1 && ranges[0][0] === ranges[0][1]) {
    return literal(String.fromCodePoint(ranges[0][0]));
  }
  return `[${classBody(ranges)}]`;
}

/** The inside of a character class for `ranges` (`a-z0-9`). */
export function classBody(ranges: CodeRanges): string {
  let out = "";
  for (const [lo, hi] of ranges) {
    out += escapeCodePoint(lo, "]\\^-");
    if (hi > lo) out += (hi > lo + 1 ? "-" : "") + escapeCodePoint(hi, "]\\^-");
  }
  return out;
}

/** Sorted, merged copy of `ranges`. */
export function normalizeRanges(ranges: Iterable<readonly [number, number]>): [number, number][] {
  const sorted = [...ranges].filter(([a, b]) => a <= b).map(([a, b]) => [a, b] as [number, number]);
  sorted.sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [a, b] of sorted) {
    const last = out.at(-1);
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** The code points of [0, MAX_CODE_POINT] not in `ranges`. */
export function complementRanges(ranges: CodeRanges): [number, number][] {
  const out: [number, number][] = [];
  let next = 0;
  for (const [a, b] of normalizeRanges(ranges)) {
    if (a > next) out.push([next, a - 1]);
    next = b + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

/** `a` minus `b`. */
export function subtractRanges(a: CodeRanges, b: CodeRanges): [number, number][] {
  return intersectRanges(a, complementRanges(b));
}

/** `a` and `b`. */
export function intersectRanges(a: CodeRanges, b: CodeRanges): [number, number][] {
  const x = normalizeRanges(a), y = normalizeRanges(b), out: [number, number][] = [];
  let i = 0, j = 0;
  while (i < x.length && j < y.length) {
    const lo = Math.max(x[i][0], y[j][0]), hi = Math.min(x[i][1], y[j][1]);
    if (lo <= hi) out.push([lo, hi]);
    if (x[i][1] < y[j][1]) i++;
    else j++;
  }
  return out;
}

/** Whether `c` is in `ranges`. */
export function inRanges(ranges: CodeRanges, c: number): boolean {
  return ranges.some(([a, b]) => c >= a && c <= b);
}
