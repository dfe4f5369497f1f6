/**
 * JSON Schema `pattern` (an ECMA-262 regular expression, read with the `u` flag as validators
 * such as ajv do) to EBNF for the inside of a JSON string.
 *
 * Each character class becomes the canonical JSON text of its characters (see `json_chars.ts`), so
 * a `[^a]` never lets the model write a raw `"` that would end the string, and the decoded value
 * is what the regex describes. As in JSON Schema the pattern is a search: without a leading `^`
 * (trailing `$`) any text may come before (after) the match.
 *
 * Supported: literals and escapes (`\t \n \r \f \v \0 \xHH \uHHHH \u{H..} \cX`, escaped
 * punctuation), classes with ranges and negation, `. \d \D \w \W \s \S`, groups (capturing,
 * `(?:...)`, named), `|`, the quantifiers `* + ? {n} {n,} {n,m}` (lazy forms read as greedy: the
 * language is the same), `^` at the start and `$` at the end. Refused with a {@linkcode GrammarError}:
 * backreferences, lookaround, word boundaries, Unicode property escapes, anchors elsewhere, and
 * repetition counts above {@linkcode MAX_REPEAT}.
 *
 * @module
 */
import { complementRanges, type Ebnf, literal, MAX_CODE_POINT, normalizeRanges, repeat } from "./ebnf.ts";
import { GrammarError } from "./grammar_error.ts";
import { ALL_CHARS, jsonCharExpr, jsonCharText } from "./json_chars.ts";

/** The largest finite repetition count accepted (`a{0,100000}`). */
export const MAX_REPEAT = 100_000;

/** A parsed regular expression. */
export type RegexNode =
  | { readonly k: "set"; readonly r: readonly (readonly [number, number])[] }
  | { readonly k: "seq"; readonly items: readonly RegexNode[] }
  | { readonly k: "alt"; readonly alts: readonly RegexNode[] }
  | { readonly k: "rep"; readonly node: RegexNode; readonly min: number; readonly max: number }
  | { readonly k: "bol" }
  | { readonly k: "eol" };

const DIGIT: [number, number][] = [[0x30, 0x39]];
const WORD: [number, number][] = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];
const SPACE: [number, number][] = normalizeRanges([
  [9, 13],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
]);
const DOT = complementRanges([[10, 10], [13, 13], [0x2028, 0x2029]]);
const set = (r: readonly (readonly [number, number])[]): RegexNode => ({ k: "set", r });
const one = (c: number): RegexNode => set([[c, c]]);

class Parser {
  #i = 0;
  readonly #cps: number[];

  constructor(readonly source: string) {
    this.#cps = Array.from(source, (ch) => ch.codePointAt(0)!);
  }

  fail(detail: string): never {
    throw new GrammarError(`${detail} (in ${JSON.stringify(this.source)})`, { keyword: "pattern" });
  }

  #peek(ahead = 0): number {
    return this.#cps[this.#i + ahead] ?? -1;
  }

  #ch(c: string): boolean {
    if (this.#peek() !== c.codePointAt(0)) return false;
    this.#i++;
    return true;
  }

  parse(): RegexNode {
    const node = this.#alt();
    if (this.#i < this.#cps.length) this.fail(`unbalanced ")" at ${this.#i}`);
    return node;
  }

  #alt(): RegexNode {
    const alts = [this.#seq()];
    while (this.#ch("|")) alts.push(this.#seq());
    return alts.length === 1 ? alts[0] : { k: "alt", alts };
  }

  #seq(): RegexNode {
    const items: RegexNode[] = [];
    while (this.#i < this.#cps.length && this.#peek() !== 0x7c && this.#peek() !== 0x29) {
      const atom = this.#atom();
      items.push(this.#quantified(atom));
    }
    return items.length === 1 ? items[0] : { k: "seq", items };
  }

  #quantified(atom: RegexNode): RegexNode {
    let min: number, max: number;
    const c = this.#peek();
    if (c === 0x2a) [min, max] = [0, Infinity];
    else if (c === 0x2b) [min, max] = [1, Infinity];
    else if (c === 0x3f) [min, max] = [0, 1];
    else if (c === 0x7b) {
      const m = this.source.slice(this.#offset()).match(/^\{(\d+)(,(\d*))?\}/);
      if (!m) return atom; // a literal "{"
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
      if (max < min) this.fail(`repetition {${min},${max}} has max < min`);
      if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT)) {
        this.fail(`repetition counts above ${MAX_REPEAT} are not supported`);
      }
      this.#i += Array.from(m[0]).length - 1;
    } else return atom;
    this.#i++;
    this.#ch("?"); // lazy: same language
    if (atom.k === "bol" || atom.k === "eol") this.fail("a quantified anchor is not supported");
    if (this.#peek() === 0x2a || this.#peek() === 0x2b || this.#peek() === 0x3f) {
      this.fail("nothing to repeat");
    }
    return { k: "rep", node: atom, min, max };
  }

  /** Offset of the cursor in UTF-16 units (for slicing `source`). */
  #offset(): number {
    let n = 0;
    for (let j = 0; j < this.#i; j++) n += this.#cps[j] > 0xffff ? 2 : 1;
    return n;
  }

  #atom(): RegexNode {
    const c = this.#cps[this.#i++];
    switch (c) {
      case 0x5e: // ^
        return { k: "bol" };
      case 0x24: // $
        return { k: "eol" };
      case 0x2e: // .
        return set(DOT);
      case 0x5b: // [
        return this.#class();
      case 0x5c: // backslash
        return this.#escape(false);
      case 0x28: { // (
        if (this.#ch("?")) {
          if (this.#ch(":")) { /* non-capturing */ }
          else if (this.#peek() === 0x3c && this.#peek(1) !== 0x3d && this.#peek(1) !== 0x21) {
            while (this.#i < this.#cps.length && !this.#ch(">")) this.#i++;
          } else this.fail("lookahead and lookbehind are not supported");
        }
        const inner = this.#alt();
        if (!this.#ch(")")) this.fail('missing ")"');
        return inner;
      }
      case 0x2a:
      case 0x2b:
      case 0x3f:
        return this.fail("nothing to repeat");
      default:
        return one(c);
    }
  }

  #hex(n: number): number {
    const s = String.fromCodePoint(...this.#cps.slice(this.#i, this.#i + n));
    if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(s)) this.fail(`bad escape \\x or \\u`);
    this.#i += n;
    return parseInt(s, 16);
  }

  /** After a backslash: a single code point (returned as a one-element set) or a class escape. */
  #escape(inClass: boolean): RegexNode {
    const c = this.#cps[this.#i++];
    if (c === undefined) this.fail("trailing backslash");
    const ch = String.fromCodePoint(c);
    switch (ch) {
      case "d":
        return set(DIGIT);
      case "D":
        return set(complementRanges(DIGIT));
      case "w":
        return set(WORD);
      case "W":
        return set(complementRanges(WORD));
      case "s":
        return set(SPACE);
      case "S":
        return set(complementRanges(SPACE));
      case "t":
        return one(9);
      case "n":
        return one(10);
      case "r":
        return one(13);
      case "f":
        return one(12);
      case "v":
        return one(11);
      case "0":
        if (this.#peek() >= 0x30 && this.#peek() <= 0x39) this.fail("octal escapes are not supported");
        return one(0);
      case "x":
        return one(this.#hex(2));
      case "u": {
        if (this.#ch("{")) {
          let v = 0, n = 0;
          while (this.#i < this.#cps.length && !this.#ch("}")) {
            v = v * 16 + this.#hex(1);
            if (++n > 6 || v > MAX_CODE_POINT) this.fail("bad \\u{...} escape");
          }
          return one(v);
        }
        const hi = this.#hex(4);
        if (hi >= 0xd800 && hi <= 0xdbff && this.#cps[this.#i] === 0x5c && this.#cps[this.#i + 1] === 0x75) {
          const save = this.#i;
          this.#i += 2;
          const lo = this.#hex(4);
          if (lo >= 0xdc00 && lo <= 0xdfff) return one(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00));
          this.#i = save;
        }
        return one(hi);
      }
      case "c": {
        const l = this.#cps[this.#i++] ?? -1;
        if (!((l >= 0x41 && l <= 0x5a) || (l >= 0x61 && l <= 0x7a))) this.fail("bad \\c escape");
        return one(l % 32);
      }
      case "b":
        if (inClass) return one(8);
        return this.fail("word boundaries (\\b) are not supported");
      case "B":
        return this.fail("word boundaries (\\B) are not supported");
      case "p":
      case "P":
        return this.fail("Unicode property escapes (\\p{...}) are not supported");
      case "k":
        return this.fail("backreferences are not supported");
      default:
        if (c >= 0x31 && c <= 0x39) this.fail("backreferences are not supported");
        return one(c);
    }
  }

  #class(): RegexNode {
    const negate = this.#ch("^");
    const ranges: [number, number][] = [];
    let first = true;
    while (true) {
      if (this.#i >= this.#cps.length) this.fail('missing "]"');
      if (this.#peek() === 0x5d && !first) {
        this.#i++;
        break;
      }
      if (this.#peek() === 0x5d && first) { // "[]" matches nothing, "[^]" everything
        this.#i++;
        return set(negate ? ALL_CHARS : []);
      }
      first = false;
      const lo = this.#classAtom();
      if (
        this.#peek() === 0x2d && this.#peek(1) !== 0x5d && this.#peek(1) !== -1 && lo.length === 1 &&
        lo[0][0] === lo[0][1]
      ) {
        this.#i++;
        const hi = this.#classAtom();
        if (hi.length !== 1 || hi[0][0] !== hi[0][1]) this.fail("a class escape cannot end a range");
        if (hi[0][0] < lo[0][0]) this.fail("range out of order in character class");
        ranges.push([lo[0][0], hi[0][0]]);
      } else ranges.push(...lo);
    }
    const r = normalizeRanges(ranges);
    return set(negate ? complementRanges(r) : r);
  }

  #classAtom(): [number, number][] {
    const c = this.#cps[this.#i++];
    if (c !== 0x5c) return [[c, c]];
    const node = this.#escape(true);
    return node.k === "set" ? node.r.map(([a, b]) => [a, b]) : [];
  }
}

/**
 * Parses a JavaScript regular expression (no flags; `u` semantics).
 *
 * @example
 * ```ts
 * import { parseRegex } from "./regex_ebnf.ts";
 * parseRegex("^a+$"); // { k: "seq", items: [{ k: "bol" }, { k: "rep", ... }, { k: "eol" }] }
 * ```
 */
export function parseRegex(source: string): RegexNode {
  return new Parser(source).parse();
}

/** Shortest and longest matches in code points (longest: Infinity when unbounded). */
export function regexLengths(node: RegexNode): [number, number] {
  switch (node.k) {
    case "set":
      return [1, 1];
    case "bol":
    case "eol":
      return [0, 0];
    case "seq":
      return node.items.map(regexLengths).reduce(([a, b], [c, d]) => [a + c, b + d], [0, 0]);
    case "alt": {
      const ls = node.alts.map(regexLengths);
      return [Math.min(...ls.map((l) => l[0])), Math.max(...ls.map((l) => l[1]))];
    }
    case "rep": {
      const [a, b] = regexLengths(node.node);
      return [a * node.min, node.max === 0 || b === 0 ? 0 : b * node.max];
    }
  }
}

/**
 * Splits the top level into branches and removes their anchors: each branch says whether it was
 * anchored at the start and the end. Anchors anywhere else are refused.
 */
function unanchor(
  node: RegexNode,
  fail: (d: string) => never,
): { node: RegexNode; bol: boolean; eol: boolean }[] {
  const branches = node.k === "alt" ? node.alts : [node];
  return branches.map((b) => {
    const items = b.k === "seq" ? [...b.items] : [b];
    const bol = items[0]?.k === "bol", eol = items.at(-1)?.k === "eol" && (items.length > 1 || !bol);
    if (bol) items.shift();
    if (eol) items.pop();
    const check = (n: RegexNode): void => {
      if (n.k === "bol" || n.k === "eol") fail("^ and $ are supported only at the start and the end");
      if (n.k === "seq") n.items.forEach(check);
      if (n.k === "alt") n.alts.forEach(check);
      if (n.k === "rep") check(n.node);
    };
    items.forEach(check);
    return { node: items.length === 1 ? items[0] : { k: "seq", items }, bol, eol };
  });
}

/**
 * A budget of free-text character rules shared by one grammar: a bounded repeat of a broad class
 * (over {@linkcode BROAD_CLASS} code points, such as `.` or `[^,]`) unrolls into one rule per count,
 * each a token-mask computation over the vocabulary when XGrammar compiles it.
 */
export interface CharStates {
  used: number;
  readonly limit: number;
}

/** Classes with more code points than this count against {@linkcode CharStates}. */
export const BROAD_CLASS = 1024;

/** Length limits (code points) the decoded string must also meet. */
export interface LengthLimits {
  readonly minLength?: number;
  readonly maxLength?: number;
}

/**
 * The EBNF expression for the inside of a JSON string whose decoded value matches `pattern` as a
 * JSON Schema pattern (a search) and, if given, the length limits. Lengths combine with a pattern
 * only when every match already meets them, or when the pattern is one repeated class (`^[a-z]+$`).
 *
 * @example
 * ```ts
 * import { Ebnf } from "./ebnf.ts";
 * import { patternToEbnf } from "./regex_ebnf.ts";
 * patternToEbnf("^[a-z]{2}$", new Ebnf()); // "[a-z]{2}"
 * ```
 */
export function patternToEbnf(
  pattern: string,
  g: Ebnf,
  limits: LengthLimits = {},
  states: CharStates = { used: 0, limit: Infinity },
): string {
  const p = new Parser(pattern);
  const fail = (d: string): never => p.fail(d);
  let node = p.parse();
  const branches = unanchor(node, fail);
  const anyRep: RegexNode = { k: "rep", node: set(ALL_CHARS), min: 0, max: Infinity };
  const parts = branches.map(({ node, bol, eol }) => {
    const items = [...(bol ? [] : [anyRep]), node, ...(eol ? [] : [anyRep])];
    return items.length === 1 ? items[0] : { k: "seq", items } as RegexNode;
  });
  node = parts.length === 1 ? parts[0] : { k: "alt", alts: parts };
  const lo = limits.minLength ?? 0, hi = limits.maxLength ?? Infinity;
  const [min, max] = regexLengths(node);
  if (min < lo || max > hi) {
    const single = node.k === "rep" && node.node.k === "set" ? node : null;
    if (!single) {
      throw new GrammarError(
        `cannot be combined with a pattern that matches ${min}..${max === Infinity ? "any" : max} characters`,
        { keyword: min < lo ? "minLength" : "maxLength" },
      );
    }
    const m = Math.max(single.min, lo), n = Math.min(single.max, hi);
    if (m > n) {
      throw new GrammarError("no string matches both the pattern and the length limits", {
        keyword: "pattern",
      });
    }
    node = { k: "rep", node: single.node, min: m, max: n };
  }
  return emit(node, g, fail, states);
}

/** Whether `expr` is one EBNF term (safe to quantify without parentheses). */
function atomic(expr: string): boolean {
  return /^(\[(?:\\.|[^\]\\])*\]|"(?:\\.|[^"\\])*"|\w+|\((?:[^()"]|"(?:\\.|[^"\\])*")*\))$/.test(expr);
}

function emit(node: RegexNode, g: Ebnf, fail: (d: string) => never, states: CharStates): string {
  switch (node.k) {
    case "set": {
      const e = jsonCharExpr(node.r);
      return e ?? fail("a character class matches nothing");
    }
    case "bol":
    case "eol":
      return '""';
    case "seq": {
      const out: string[] = [];
      let text = "";
      for (const item of node.items) {
        if (item.k === "set" && item.r.length === 1 && item.r[0][0] === item.r[0][1]) {
          text += jsonCharText(item.r[0][0]);
          continue;
        }
        if (text) out.push(literal(text));
        text = "";
        out.push(emit(item, g, fail, states));
      }
      if (text) out.push(literal(text));
      return out.length === 0 ? '""' : out.length === 1 ? out[0] : `(${out.join(" ")})`;
    }
    case "alt":
      return `(${node.alts.map((a) => emit(a, g, fail, states)).join(" | ")})`;
    case "rep": {
      if (node.max === 0) return '""';
      const inner = emit(node.node, g, fail, states);
      const size = node.node.k === "set" ? node.node.r.reduce((n, [a, b]) => n + b - a + 1, 0) : 0;
      const count = node.max === Infinity ? (node.min > 1 ? node.min : 0) : node.max;
      if (size > BROAD_CLASS && count > 1) {
        states.used += count;
        if (states.used > states.limit) {
          fail(
            `bounded repeats of broad classes need ${states.used} character rules in all, above this model's ` +
              `limit of ${states.limit}`,
          );
        }
      }
      return repeat(g, atomic(inner) ? inner : `(${inner})`, node.min, node.max);
    }
  }
}
