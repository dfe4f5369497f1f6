/**
 * EBNF for JSON numbers within bounds, written digit by digit (no exponent, no `-0`, no leading
 * zeros), for JSON Schema's `minimum`, `maximum`, `exclusiveMinimum` and `exclusiveMaximum` on
 * `integer` and `number`.
 *
 * Bounded numbers have at most {@linkcode MAX_FRACTION_DIGITS} fraction digits: with at most 15
 * significant digits a decimal keeps its order against the bound after conversion to a double, so
 * a validator that parses the output agrees with the grammar at the boundary.
 *
 * @module
 */
import { type Ebnf, repeat } from "./ebnf.ts";
import { GrammarError } from "./grammar_error.ts";

/** Fraction digits a bounded `number` may have. */
export const MAX_FRACTION_DIGITS = 6;

/** An integer JSON number: `0` or an optional minus and no leading zero. */
export const INTEGER = '("0" | "-"? [1-9] [0-9]*)';
/** Any JSON number. */
export const NUMBER = '("-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [+-]? [0-9]+)?)';

/** One bound: a finite number, inclusive or not. */
export interface Bound {
  readonly value: number;
  readonly exclusive: boolean;
}

/** A non-negative decimal as its integer part and its fraction digits (no trailing zeros). */
interface Decimal {
  readonly int: bigint;
  readonly frac: string;
}

function decimal(x: number): Decimal {
  const [int, frac = ""] = toPlain(Math.abs(x)).split(".");
  return { int: BigInt(int), frac: frac.replace(/0+$/, "") };
}

/** Plain decimal text of a finite non-negative double (no exponent). */
function toPlain(x: number): string {
  const s = String(x);
  if (!/e/i.test(s)) return s;
  const [mant, expText] = s.split(/e/i);
  const exp = Number(expText);
  const [i, f = ""] = mant.split(".");
  const digits = i + f;
  const point = i.length + exp;
  if (point <= 0) return "0." + "0".repeat(-point) + digits;
  if (point >= digits.length) return digits + "0".repeat(point - digits.length);
  return digits.slice(0, point) + "." + digits.slice(point);
}

const pow10 = (n: number) => 10n ** BigInt(n);
const digitCount = (n: bigint) => n.toString().length;

/** Digit strings of equal length from `lo` to `hi` (lexicographic = numeric). */
function sameLength(g: Ebnf, lo: string, hi: string): string[] {
  if (lo.length === 0) return ['""'];
  if (lo === hi) return [`"${lo}"`];
  const rest = lo.length - 1;
  const anyRest = rest === 0 ? "" : " " + repeat(g, "[0-9]", rest, rest);
  if (/^0*$/.test(lo.slice(1)) && /^9*$/.test(hi.slice(1))) return [`${digitClass(lo[0], hi[0])}${anyRest}`];
  if (lo[0] === hi[0]) return sameLength(g, lo.slice(1), hi.slice(1)).map((s) => `"${lo[0]}" ${s}`);
  const out = sameLength(g, lo.slice(1), "9".repeat(rest)).map((s) => `"${lo[0]}" ${s}`);
  const a = Number(lo[0]) + 1, b = Number(hi[0]) - 1;
  if (a <= b) out.push(`${digitClass(String(a), String(b))}${anyRest}`);
  out.push(...sameLength(g, "0".repeat(rest), hi.slice(1)).map((s) => `"${hi[0]}" ${s}`));
  return out;
}

function digitClass(a: string, b: string): string {
  return a === b ? `"${a}"` : `[${a}-${b}]`;
}

/** Alternatives for the integers in [lo, hi] (lo >= 0; hi null: no upper bound), no leading zeros. */
function naturals(g: Ebnf, lo: bigint, hi: bigint | null): string[] {
  if (hi !== null && lo > hi) return [];
  const out: string[] = [];
  if (lo === 0n) {
    out.push('"0"');
    lo = 1n;
    if (hi !== null && hi < 1n) return out;
  }
  const top = hi === null ? digitCount(lo) : digitCount(hi);
  for (let d = digitCount(lo); d <= top; d++) {
    const a = lo > pow10(d - 1) ? lo : pow10(d - 1);
    const b = hi !== null && hi < pow10(d) - 1n ? hi : pow10(d) - 1n;
    if (a <= b) out.push(...sameLength(g, a.toString(), b.toString()));
  }
  if (hi === null) out.push(`[1-9] ${repeat(g, "[0-9]", top, Infinity)}`);
  return out;
}

/**
 * The integers in [lo, hi] (each side a bigint or null for no bound) as an EBNF expression.
 *
 * @example
 * ```ts
 * import { Ebnf } from "./ebnf.ts";
 * import { integerRange } from "./number_ebnf.ts";
 * integerRange(new Ebnf(), -5n, 12n); // '("-" [1-5] | "0" | [1-9] | "1" [0-2])'
 * ```
 */
export function integerRange(g: Ebnf, lo: bigint | null, hi: bigint | null): string {
  if (lo !== null && hi !== null && lo > hi) {
    throw new GrammarError("no integer lies within the bounds", { keyword: "minimum" });
  }
  const alts: string[] = [];
  if (lo === null || lo < 0n) {
    const magHi = lo === null ? null : -lo; // |x| <= -lo
    const magLo = hi !== null && hi < 0n ? -hi : 1n;
    for (const a of naturals(g, magLo, magHi)) alts.push(`"-" ${a}`);
  }
  if (hi === null || hi >= 0n) alts.push(...naturals(g, lo !== null && lo > 0n ? lo : 0n, hi));
  return alts.length === 1 ? alts[0] : `(${alts.join(" | ")})`;
}

/** The ceiling/floor of a bound as an integer bound, exclusivity folded in. */
function integerBound(b: Bound | null, side: "lo" | "hi"): bigint | null {
  if (!b) return null;
  const d = side === "lo" ? Math.ceil(b.value) : Math.floor(b.value);
  const i = BigInt(d);
  if (b.exclusive && d === b.value) return side === "lo" ? i + 1n : i - 1n;
  return i;
}

/**
 * EBNF for an `integer` within the bounds.
 *
 * @example
 * ```ts
 * import { Ebnf } from "./ebnf.ts";
 * import { boundedInteger } from "./number_ebnf.ts";
 * boundedInteger(new Ebnf(), { value: 0, exclusive: false }, { value: 9.5, exclusive: false }); // '("0" | [1-9])'
 * ```
 */
export function boundedInteger(g: Ebnf, lo: Bound | null, hi: Bound | null): string {
  if (!lo && !hi) return INTEGER;
  for (const b of [lo, hi]) {
    if (b && Math.abs(b.value) > Number.MAX_SAFE_INTEGER) {
      throw new GrammarError(`integer bounds beyond ±${Number.MAX_SAFE_INTEGER} are not supported`, {
        keyword: b === lo ? "minimum" : "maximum",
      });
    }
  }
  return integerRange(g, integerBound(lo, "lo"), integerBound(hi, "hi"));
}

/** Constraint on the fraction digits f (value 0.f): f >= A (or >) and f <= B (or <); null: none. */
interface FracBounds {
  readonly lo: { readonly digits: string; readonly exclusive: boolean } | null;
  readonly hi: { readonly digits: string; readonly exclusive: boolean } | null;
}

/**
 * A rule for a fraction part (`"." digits`, or nothing) meeting `c`, with at most `n` digits; null
 * when no fraction does.
 */
function fraction(g: Ebnf, c: FracBounds, n: number): string | null {
  const memo = new Map<string, string | null>();
  const emptyOk = (lo: FracBounds["lo"], hi: FracBounds["hi"]) =>
    (!lo || (/^0*$/.test(lo.digits) && !lo.exclusive)) && (!hi || /[1-9]/.test(hi.digits) || !hi.exclusive);
  // digits(lo, hi, k): rule for 1..k digits meeting lo/hi (relative to the digits consumed so far)
  const digits = (lo: FracBounds["lo"], hi: FracBounds["hi"], k: number): string | null => {
    const key = JSON.stringify([lo, hi, k]);
    if (memo.has(key)) return memo.get(key)!;
    memo.set(key, null);
    const groups = new Map<
      string,
      { from: number; to: number; lo: FracBounds["lo"]; hi: FracBounds["hi"] }
    >();
    for (let d = 0; d <= 9; d++) {
      let nlo = lo, nhi = hi;
      if (lo) {
        const a = Number(lo.digits[0] ?? "0");
        if (d < a) continue;
        nlo = d > a ? null : { digits: lo.digits.slice(1), exclusive: lo.exclusive };
      }
      if (hi) {
        const b = Number(hi.digits[0] ?? "0");
        if (d > b) continue;
        nhi = d < b ? null : { digits: hi.digits.slice(1), exclusive: hi.exclusive };
      }
      const gk = JSON.stringify([nlo, nhi]);
      const grp = groups.get(gk);
      if (grp && grp.to === d - 1) grp.to = d;
      else groups.set(grp ? gk + d : gk, { from: d, to: d, lo: nlo, hi: nhi });
    }
    const alts: string[] = [];
    for (const { from, to, lo: nlo, hi: nhi } of groups.values()) {
      const head = digitClass(String(from), String(to));
      const end = emptyOk(nlo, nhi);
      const more = k > 1 ? (!nlo && !nhi ? repeat(g, "[0-9]", 0, k - 1) : digits(nlo, nhi, k - 1)) : null;
      if (!nlo && !nhi && k > 1) alts.push(`${head} ${more}`);
      else if (more && end) alts.push(`${head} ${more}?`);
      else if (more) alts.push(`${head} ${more}`);
      else if (end) alts.push(head);
    }
    const rule = alts.length ? g.rule("frac", alts.join(" | ")) : null;
    memo.set(key, rule);
    return rule;
  };
  const body = digits(c.lo, c.hi, n);
  const empty = emptyOk(c.lo, c.hi);
  if (!body) return empty ? '""' : null;
  return empty ? `("." ${body})?` : `"." ${body}`;
}

/** Non-negative decimals x with lo <= x <= hi (each side optional, inclusive or exclusive). */
function magnitudes(g: Ebnf, lo: Bound | null, hi: Bound | null, n: number): string[] {
  const L = lo ? decimal(lo.value) : { int: 0n, frac: "" };
  const H = hi ? decimal(hi.value) : null;
  const lowFrac = lo ? { digits: L.frac, exclusive: lo.exclusive } : null;
  const highFrac = hi && H ? { digits: H.frac, exclusive: hi.exclusive } : null;
  const alts: string[] = [];
  const push = (ints: string[], frac: string | null) => {
    if (frac === null || ints.length === 0) return;
    const i = ints.length === 1 ? ints[0] : `(${ints.join(" | ")})`;
    alts.push(frac === '""' ? i : `${i} ${frac}`);
  };
  const anyFrac = fraction(g, { lo: null, hi: null }, n);
  if (H && H.int === L.int) {
    push([`"${L.int}"`], fraction(g, { lo: lowFrac, hi: highFrac }, n));
    return alts;
  }
  push([`"${L.int}"`], fraction(g, { lo: lowFrac, hi: null }, n));
  push(naturals(g, L.int + 1n, H ? H.int - 1n : null), anyFrac);
  if (H) push([`"${H.int}"`], fraction(g, { lo: null, hi: highFrac }, n));
  return alts;
}

/**
 * EBNF for a `number` within the bounds (at least one bound given): plain decimals with at most
 * {@linkcode MAX_FRACTION_DIGITS} fraction digits.
 *
 * @example
 * ```ts
 * import { Ebnf } from "./ebnf.ts";
 * import { boundedNumber } from "./number_ebnf.ts";
 * boundedNumber(new Ebnf(), { value: 0, exclusive: false }, { value: 1, exclusive: false });
 * ```
 */
export function boundedNumber(g: Ebnf, lo: Bound | null, hi: Bound | null): string {
  if (!lo && !hi) return NUMBER;
  for (const b of [lo, hi]) {
    if (b && Math.abs(b.value) >= 1e15) {
      throw new GrammarError("number bounds of 1e15 or more are not supported", {
        keyword: b === lo ? "minimum" : "maximum",
      });
    }
  }
  const n = MAX_FRACTION_DIGITS;
  const alts: string[] = [];
  // negative side: x < 0, |x| in (max(0, -hi), -lo]
  if (!lo || lo.value < 0) {
    const magHi = lo ? { value: -lo.value, exclusive: lo.exclusive } : null;
    const magLo = hi && hi.value <= 0 ? { value: -hi.value, exclusive: hi.exclusive || hi.value === 0 } : {
      value: 0,
      exclusive: true,
    };
    for (const a of magnitudes(g, magLo, magHi, n)) alts.push(`"-" ${a}`);
  }
  // non-negative side: x >= 0
  if (!hi || hi.value > 0 || (hi.value === 0 && !hi.exclusive)) {
    const magLo = lo && lo.value >= 0 ? lo : { value: 0, exclusive: false };
    alts.push(...magnitudes(g, magLo, hi, n));
  }
  if (alts.length === 0) throw new GrammarError("no number lies within the bounds", { keyword: "minimum" });
  return alts.length === 1 ? alts[0] : `(${alts.join(" | ")})`;
}
