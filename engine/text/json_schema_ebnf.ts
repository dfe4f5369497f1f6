/**
 * JSON Schema to EBNF: every output the grammar allows is valid against the schema; a keyword
 * whose constraint the grammar cannot guarantee is refused with a {@linkcode GrammarError} naming
 * it, never ignored.
 *
 * The output is compact JSON (no whitespace) in one canonical form: object properties in the
 * schema's order, strings with canonical escapes (`json_chars.ts`), numbers without exponents when
 * bounded (`number_ebnf.ts`), patterns and formats as in `regex_ebnf.ts` / `json_formats.ts`.
 * Within that form the grammar allows exactly the valid documents, except:
 *
 * - an object with `properties` never gets other keys (as OpenAI's strict mode: extra keys are
 *   optional, so leaving them out is valid); `additionalProperties`, `patternProperties` and
 *   `propertyNames` shape objects without `properties` (maps);
 * - `pattern` together with `format`: the pattern is enforced, the format read as an annotation.
 *
 * Supported: `type` (one or a list), `enum`, `const`, `properties`, `required`,
 * `additionalProperties`, `patternProperties` (one pattern), `propertyNames`, `minProperties` /
 * `maxProperties` (where countable), `items`, `prefixItems`, `additionalItems`, `unevaluatedItems`,
 * `minItems`, `maxItems`, `minLength`, `maxLength`, `pattern`, `format` (see `json_formats.ts`),
 * `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (draft 4 booleans too), `anyOf`,
 * `oneOf` (when its branches are provably disjoint), `allOf` (merged), `$ref` to `#` and JSON
 * pointers inside the document (`$defs`, `definitions`, recursion), and annotations (`title`,
 * `description`, `default`, `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`,
 * `writeOnly`, `discriminator`, `x-*`). Refused: `not`, `if`/`then`/`else`, `uniqueItems: true`,
 * `contains`, `multipleOf` (except 1 on integers), `dependentRequired`, `dependentSchemas`,
 * `dependencies`, remote or anchor `$ref`s, and any keyword not listed.
 *
 * @module
 */
import { Ebnf, literal, repeat } from "./ebnf.ts";
import { GrammarError } from "./grammar_error.ts";
import { JSON_ESCAPE, PLAIN_CHAR } from "./json_chars.ts";
import { FORMAT_PATTERNS } from "./json_formats.ts";
import { type Bound, boundedInteger, boundedNumber, INTEGER, NUMBER } from "./number_ebnf.ts";
import { type CharStates, MAX_REPEAT, patternToEbnf } from "./regex_ebnf.ts";

type Schema = boolean | Record<string, unknown>;
type Obj = Record<string, unknown>;

const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$comment",
  "$schema",
  "$id",
  "$anchor",
  "$vocabulary",
  "deprecated",
  "readOnly",
  "writeOnly",
  "contentEncoding",
  "contentMediaType",
  "discriminator",
  "$defs",
  "definitions",
]);
const STRING_KEYS = ["minLength", "maxLength", "pattern", "format"];
const NUMBER_KEYS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
const ARRAY_KEYS = [
  "items",
  "prefixItems",
  "additionalItems",
  "unevaluatedItems",
  "minItems",
  "maxItems",
  "uniqueItems",
];
const OBJECT_KEYS = [
  "properties",
  "required",
  "additionalProperties",
  "patternProperties",
  "propertyNames",
  "minProperties",
  "maxProperties",
  "unevaluatedProperties",
];
const GENERIC_KEYS = ["type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"];
const SUPPORTED = new Set([...STRING_KEYS, ...NUMBER_KEYS, ...ARRAY_KEYS, ...OBJECT_KEYS, ...GENERIC_KEYS]);
const REFUSED: Readonly<Record<string, string>> = {
  not: "negation cannot be enforced token by token",
  if: "conditional schemas cannot be enforced",
  then: "conditional schemas cannot be enforced",
  else: "conditional schemas cannot be enforced",
  contains: "cannot be enforced",
  minContains: "cannot be enforced",
  maxContains: "cannot be enforced",
  dependentRequired: "cannot be enforced",
  dependentSchemas: "cannot be enforced",
  dependencies: "cannot be enforced",
  $dynamicRef: "is not supported",
  $recursiveRef: "is not supported",
  nullable: 'is not JSON Schema (OpenAPI); use "type": [..., "null"]',
};
const TYPES = ["null", "boolean", "object", "array", "number", "integer", "string"] as const;
type TypeName = (typeof TYPES)[number];
const MAX_INLINE_DEPTH = 32;
/** Counts above this (maxLength, maxItems, maxProperties) are treated as unbounded: no output reaches them. */
const MAX_COUNT = 2 ** 30;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const ptr = (path: string, ...keys: (string | number)[]) =>
  path + keys.map((k) => "/" + String(k).replaceAll("~", "~0").replaceAll("/", "~1")).join("");
const canon = (v: unknown): string => JSON.stringify(sortKeys(v));

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (!isObj(v)) return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
}

function jsonType(v: unknown): TypeName {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v as TypeName;
}

/** The validation keywords of `s` (not annotations, not `x-` extensions). */
function validationKeys(s: Obj): string[] {
  return Object.keys(s).filter((k) => !ANNOTATIONS.has(k) && !k.startsWith("x-"));
}

/** Options of {@linkcode JsonSchemaConverter}. */
export interface ConverterOptions {
  /** JSON pointer prefix reported in errors (e.g. a tool's path). */
  readonly base?: string;
  /** The document is the whole output (strings at its top end the text: no lookahead after them). */
  readonly top?: boolean;
  /**
   * Budget of free-text character states (bounded string lengths, bounded repeats of broad classes
   * in patterns), shared by the converters of one grammar; default: none.
   */
  readonly charStates?: CharStates;
}

/** Where a string may end: followed by one of `, } ] :` in JSON. */
const AFTER_STRING = " (= [,}\\]:])";

/**
 * Converts JSON Schemas to EBNF rules in `g` (one converter per document: `$ref`s resolve against
 * the schema given to the constructor).
 *
 * Strings are right-recursive rules ending in a lookahead for what follows a string (as XGrammar's
 * own JSON grammar): XGrammar then decides nearly every token while compiling, and a mask costs
 * tens of microseconds. A bounded length needs one rule per character (`o_k ::= "\"" | c o_(k-1)`),
 * each costing a token-mask computation over the vocabulary at compile time, hence the budget.
 *
 * @example
 * ```ts
 * import { Ebnf } from "./ebnf.ts";
 * import { JsonSchemaConverter } from "./json_schema_ebnf.ts";
 * const g = new Ebnf();
 * const rule = new JsonSchemaConverter(g, { type: "object", properties: { n: { type: "integer" } } }).root();
 * g.define("root", rule);
 * ```
 */
export class JsonSchemaConverter {
  readonly #g: Ebnf;
  readonly #doc: Schema;
  readonly #refs = new Map<string, string>();
  readonly #base: string;
  readonly #top: boolean;
  readonly #states: CharStates;
  #any: string | null = null;

  constructor(g: Ebnf, document: unknown, options: ConverterOptions = {}) {
    this.#g = g;
    this.#base = options.base ?? "";
    if (typeof document !== "boolean" && !isObj(document)) {
      throw new GrammarError("a schema must be an object or a boolean", { path: this.#base });
    }
    this.#doc = document;
    this.#top = options.top ?? false;
    this.#states = options.charStates ?? { used: 0, limit: Infinity };
  }

  /** The EBNF expression for a value of the whole document. */
  root(): string {
    return this.value(this.#doc, "", this.#top);
  }

  #fail(detail: string, keyword: string | undefined, path: string): never {
    throw new GrammarError(detail, { keyword, path: this.#base + path });
  }

  /**
   * The EBNF expression for a value valid against `s` (at JSON pointer `path`); `top`: the value
   * is the whole output.
   */
  value(s: unknown, path: string, top = false): string {
    if (s === true) return this.anyValue(top);
    if (s === false) this.#fail("the schema false allows no value here", undefined, path);
    if (!isObj(s)) this.#fail("a schema must be an object or a boolean", undefined, path);
    for (const k of validationKeys(s)) {
      if (REFUSED[k]) this.#fail(REFUSED[k], k, path);
      if (!SUPPORTED.has(k)) this.#fail("is not a supported JSON Schema keyword", k, path);
    }
    const keys = validationKeys(s);
    if (keys.length === 0) return this.anyValue(top);
    if (typeof s.$ref === "string") {
      if (keys.length === 1) return this.#ref(s.$ref, path, top);
      const { $ref, ...rest } = s;
      return this.value({ allOf: [{ $ref }, rest] }, path, top);
    }
    if (s.$ref !== undefined) this.#fail("must be a string", "$ref", path);
    if (s.allOf !== undefined) return this.value(this.#mergeAll(s, path), path, top);
    if (s.anyOf !== undefined || s.oneOf !== undefined) return this.#union(s, path, top);
    if (s.enum !== undefined || s.const !== undefined) return this.#literals(s, path);
    const types = this.#types(s, path);
    const alts = types.map((t) => this.#typed(s, t, path, top));
    return alts.length === 1 ? alts[0] : `(${alts.join(" | ")})`;
  }

  /** The `type` list, or the types the keywords imply (all when none does). */
  #types(s: Obj, path: string): TypeName[] {
    if (s.type !== undefined) {
      const list = Array.isArray(s.type) ? s.type : [s.type];
      if (list.length === 0) this.#fail("must name at least one type", "type", path);
      for (const t of list) {
        if (!TYPES.includes(t as TypeName)) this.#fail(`unknown type ${JSON.stringify(t)}`, "type", path);
      }
      const set = new Set(list as TypeName[]);
      if (set.has("number")) set.delete("integer");
      return [...set];
    }
    const has = (ks: string[]) => ks.some((k) => k in s);
    const implied: TypeName[] = [];
    if (has(OBJECT_KEYS)) implied.push("object");
    if (has(ARRAY_KEYS)) implied.push("array");
    if (has(STRING_KEYS)) implied.push("string");
    if (has(NUMBER_KEYS)) implied.push("number");
    return implied.length ? implied : ["null", "boolean", "object", "array", "number", "string"];
  }

  #typed(s: Obj, t: TypeName, path: string, top: boolean): string {
    switch (t) {
      case "null":
        return '"null"';
      case "boolean":
        return this.#g.memo("boolean", "boolean", () => '"true" | "false"');
      case "integer":
      case "number":
        return this.#number(s, t, path);
      case "string":
        return this.#stringValue(s, path, top);
      case "array":
        return this.#array(s, path);
      case "object":
        return this.#object(s, path);
    }
  }

  // ---- literals, unions, references ------------------------------------------------------------

  #literals(s: Obj, path: string): string {
    const other = validationKeys(s).filter((k) => k !== "enum" && k !== "const" && k !== "type");
    if (other.length) {
      this.#fail(`cannot be combined with ${"const" in s ? "const" : "enum"}`, other[0], path);
    }
    if (s.enum !== undefined && !Array.isArray(s.enum)) this.#fail("must be an array", "enum", path);
    let values: unknown[] = "const" in s ? [s.const] : s.enum as unknown[];
    if ("const" in s && Array.isArray(s.enum)) {
      values = values.filter((v) => (s.enum as unknown[]).some((e) => canon(e) === canon(v)));
    }
    if (s.type !== undefined) {
      const types = this.#types(s, path);
      values = values.filter((v) => {
        const jt = jsonType(v);
        return types.includes(jt) || (jt === "integer" && types.includes("number"));
      });
    }
    if (values.length === 0) {
      this.#fail("no value satisfies the schema", "enum" in s ? "enum" : "const", path);
    }
    const lits = [...new Set(values.map((v) => literal(JSON.stringify(v))))];
    return lits.length === 1
      ? lits[0]
      : this.#g.memo(`enum:${lits.join("|")}`, "enum", () => lits.join(" | "));
  }

  #union(s: Obj, path: string, top: boolean): string {
    if (s.anyOf !== undefined && s.oneOf !== undefined) {
      this.#fail("cannot be combined with anyOf", "oneOf", path);
    }
    const key = s.anyOf !== undefined ? "anyOf" : "oneOf";
    const list = s[key];
    if (!Array.isArray(list) || list.length === 0) this.#fail("must be a non-empty array", key, path);
    const { anyOf: _a, oneOf: _o, ...rest } = s;
    const shared = validationKeys(rest).length > 0;
    const branches = list.map((b, i) => {
      const bp = ptr(path, key, i);
      return shared ? this.#merge(rest, b, bp, 0) : b;
    });
    if (key === "oneOf") {
      for (let i = 0; i < branches.length; i++) {
        for (let j = i + 1; j < branches.length; j++) {
          if (!this.#disjoint(branches[i], branches[j], 0)) {
            this.#fail(
              `branches ${i} and ${j} may both match (oneOf needs exactly one); use anyOf, or tell them apart with a const property`,
              "oneOf",
              path,
            );
          }
        }
      }
    }
    const alts: string[] = [];
    branches.forEach((b, i) => {
      if (b === false) return;
      alts.push(this.value(b, ptr(path, key, i), top));
    });
    if (alts.length === 0) this.#fail("no branch allows a value", key, path);
    return alts.length === 1 ? alts[0] : `(${alts.join(" | ")})`;
  }

  /** The rule of the subschema `$ref` points to (one rule per target, so recursion works). */
  #ref(ref: string, path: string, top: boolean): string {
    const target = this.#resolve(ref, path);
    const key = `${top}:${ref}`;
    const known = this.#refs.get(key);
    if (known) return known;
    const name = this.#g.name(ref.split("/").pop() ?? "ref");
    this.#refs.set(key, name);
    this.#g.define(name, this.value(target, ref.slice(1), top));
    return name;
  }

  #resolve(ref: string, path: string): Schema {
    if (!ref.startsWith("#")) {
      this.#fail("only references inside the schema (#/...) are supported", "$ref", path);
    }
    if (ref !== "#" && !ref.startsWith("#/")) this.#fail("anchor references are not supported", "$ref", path);
    let node: unknown = this.#doc;
    for (const raw of ref === "#" ? [] : ref.slice(2).split("/")) {
      const key = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
      node = Array.isArray(node) ? node[Number(key)] : isObj(node) ? node[key] : undefined;
      if (node === undefined) {
        this.#fail(`${JSON.stringify(ref)} does not point into the schema`, "$ref", path);
      }
    }
    if (typeof node !== "boolean" && !isObj(node)) {
      this.#fail(`${JSON.stringify(ref)} is not a schema`, "$ref", path);
    }
    return node;
  }

  /** Follows `$ref`s to an inline schema (for merging). */
  #inline(s: unknown, path: string, depth: number): Schema {
    let cur = s as Schema;
    for (let d = depth; isObj(cur) && typeof cur.$ref === "string"; d++) {
      if (d > MAX_INLINE_DEPTH) this.#fail("references nest too deep to combine", "$ref", path);
      const { $ref, ...rest } = cur;
      const target = this.#resolve($ref, path);
      cur = validationKeys(rest).length ? this.#merge(target, rest, path, d + 1) : target;
    }
    return cur;
  }

  // ---- allOf -----------------------------------------------------------------------------------

  #mergeAll(s: Obj, path: string): Schema {
    if (!Array.isArray(s.allOf) || s.allOf.length === 0) {
      this.#fail("must be a non-empty array", "allOf", path);
    }
    const { allOf, ...rest } = s;
    let out: Schema = rest;
    (allOf as unknown[]).forEach((b, i) => out = this.#merge(out, b, ptr(path, "allOf", i), 0));
    return out;
  }

  /** A schema allowing exactly what both allow, for the keywords that combine simply. */
  #merge(a0: unknown, b0: unknown, path: string, depth: number): Schema {
    const a = this.#inline(a0, path, depth), b = this.#inline(b0, path, depth);
    if (a === false || b === false) return false;
    if (a === true) return b;
    if (b === true) return a;
    if (a.allOf !== undefined) return this.#merge(this.#mergeAll(a, path), b, path, depth);
    if (b.allOf !== undefined) return this.#merge(a, this.#mergeAll(b, path), path, depth);
    const out: Obj = { ...a };
    for (const [k, v] of Object.entries(b)) {
      if (ANNOTATIONS.has(k) || k.startsWith("x-")) continue;
      if (!(k in out)) {
        out[k] = v;
        continue;
      }
      const u = out[k];
      if (canon(u) === canon(v)) continue;
      switch (k) {
        case "type": {
          const ta = Array.isArray(u) ? u : [u], tb = Array.isArray(v) ? v : [v];
          const both = ta.filter((t) => tb.includes(t) || (t === "integer" && tb.includes("number")));
          for (const t of tb) if (t === "integer" && ta.includes("number") && !both.includes(t)) both.push(t);
          if (both.length === 0) this.#fail("the combined schemas allow no common type", "allOf", path);
          out.type = both;
          break;
        }
        case "properties": {
          if (!isObj(u) || !isObj(v)) this.#fail("must be an object", k, path);
          const props: Obj = { ...u };
          for (const [p, ps] of Object.entries(v)) props[p] = p in props ? { allOf: [props[p], ps] } : ps;
          out.properties = props;
          break;
        }
        case "required":
          out.required = [...new Set([...(u as string[]), ...(v as string[])])];
          break;
        case "minimum":
        case "minLength":
        case "minItems":
        case "minProperties":
          out[k] = Math.max(u as number, v as number);
          break;
        case "maximum":
        case "maxLength":
        case "maxItems":
        case "maxProperties":
          out[k] = Math.min(u as number, v as number);
          break;
        case "exclusiveMinimum":
        case "exclusiveMaximum":
          if (typeof u !== "number" || typeof v !== "number") this.#fail("cannot be combined", k, path);
          out[k] = k === "exclusiveMinimum" ? Math.max(u, v) : Math.min(u, v);
          break;
        case "enum": {
          const keep = (v as unknown[]).map(canon);
          out.enum = (u as unknown[]).filter((x) => keep.includes(canon(x)));
          break;
        }
        case "items":
        case "additionalProperties":
        case "propertyNames":
          if (
            k === "additionalProperties" &&
            canon(Object.keys(a.properties ?? {})) !== canon(Object.keys(b.properties ?? {}))
          ) {
            this.#fail("cannot be combined with other schemas that have different properties", k, path);
          }
          out[k] = { allOf: [u, v] };
          break;
        case "$defs":
        case "definitions":
          break;
        default:
          this.#fail(`cannot combine two different values of this keyword`, k, path);
      }
    }
    return out;
  }

  /** Whether no value can match both schemas (a sufficient test). */
  #disjoint(a0: unknown, b0: unknown, depth: number): boolean {
    const a = this.#inline(a0, "", depth), b = this.#inline(b0, "", depth);
    if (a === false || b === false) return true;
    if (a === true || b === true) return false;
    const ta = this.#possibleTypes(a), tb = this.#possibleTypes(b);
    if (ta && tb && !ta.some((t) => tb.includes(t))) return true;
    const va = literalSet(a), vb = literalSet(b);
    if (va && vb && !va.some((x) => vb.includes(x))) return true;
    if (isObj(a.properties) && isObj(b.properties)) {
      const ra = Array.isArray(a.required) ? a.required : [],
        rb = Array.isArray(b.required) ? b.required : [];
      for (const p of Object.keys(a.properties)) {
        if (!(p in b.properties) || !ra.includes(p) || !rb.includes(p)) continue;
        const pa = this.#inline(a.properties[p], "", depth + 1),
          pb = this.#inline(b.properties[p], "", depth + 1);
        const la = isObj(pa) ? literalSet(pa) : null, lb = isObj(pb) ? literalSet(pb) : null;
        if (la && lb && !la.some((x) => lb.includes(x))) return true;
      }
    }
    return false;
  }

  /** Types a schema can produce (integer counted under number), or null when unknown. */
  #possibleTypes(s: Obj): string[] | null {
    const lits = literalSet(s);
    if (lits) return [...new Set(lits.map((l) => jsonType(JSON.parse(l)).replace("integer", "number")))];
    if (s.type === undefined || s.anyOf !== undefined || s.oneOf !== undefined || s.allOf !== undefined) {
      return null;
    }
    const list = (Array.isArray(s.type) ? s.type : [s.type]) as string[];
    return [...new Set(list.map((t) => t === "integer" ? "number" : t))];
  }

  // ---- typed values ----------------------------------------------------------------------------

  #number(s: Obj, t: "integer" | "number", path: string): string {
    const m = s.multipleOf;
    if (m !== undefined && !(t === "integer" && m === 1)) {
      this.#fail("cannot be enforced", "multipleOf", path);
    }
    let lo: Bound | null = null, hi: Bound | null = null;
    const tighten = (b: Bound, side: "lo" | "hi") => {
      const cur = side === "lo" ? lo : hi;
      const better = !cur ||
        (side === "lo"
          ? b.value > cur.value || (b.value === cur.value && b.exclusive)
          : b.value < cur.value || (b.value === cur.value && b.exclusive));
      if (better) side === "lo" ? (lo = b) : (hi = b);
    };
    for (const [k, side] of [["minimum", "lo"], ["maximum", "hi"]] as const) {
      const v = s[k];
      if (v === undefined) continue;
      if (typeof v !== "number" || !Number.isFinite(v)) this.#fail("must be a finite number", k, path);
      const ex = s[k === "minimum" ? "exclusiveMinimum" : "exclusiveMaximum"];
      tighten({ value: v, exclusive: ex === true }, side);
    }
    for (const [k, side] of [["exclusiveMinimum", "lo"], ["exclusiveMaximum", "hi"]] as const) {
      const v = s[k];
      if (v === undefined || typeof v === "boolean") continue;
      if (typeof v !== "number" || !Number.isFinite(v)) this.#fail("must be a finite number", k, path);
      tighten({ value: v, exclusive: true }, side);
    }
    const l = lo as Bound | null, h = hi as Bound | null;
    if (l && h && (l.value > h.value || (l.value === h.value && (l.exclusive || h.exclusive)))) {
      this.#fail("no number lies within the bounds", "minimum", path);
    }
    try {
      if (t === "integer") {
        return l || h
          ? this.#g.rule("int", boundedInteger(this.#g, l, h))
          : this.#g.memo("integer", "integer", () => INTEGER);
      }
      return l || h
        ? this.#g.rule("num", boundedNumber(this.#g, l, h))
        : this.#g.memo("number", "number", () => NUMBER);
    } catch (e) {
      if (e instanceof GrammarError) this.#fail(e.message.replace(/^"[^"]*": /, ""), e.keyword, path);
      throw e;
    }
  }

  #stringValue(s: Obj, path: string, top = false): string {
    const minLength = this.#count(s, "minLength", path), maxLength = this.#count(s, "maxLength", path);
    if (maxLength !== undefined && minLength !== undefined && minLength > maxLength) {
      this.#fail("is above maxLength", "minLength", path);
    }
    let pattern: string | undefined;
    let keyword = "pattern";
    if (s.pattern !== undefined) {
      if (typeof s.pattern !== "string") this.#fail("must be a string", "pattern", path);
      pattern = s.pattern;
    } else if (s.format !== undefined) {
      if (typeof s.format !== "string") this.#fail("must be a string", "format", path);
      pattern = FORMAT_PATTERNS[s.format];
      keyword = "format";
      if (!pattern) {
        this.#fail(
          `${JSON.stringify(s.format)} is not enforced; supported formats: ${
            Object.keys(FORMAT_PATTERNS).join(", ")
          }`,
          "format",
          path,
        );
      }
    }
    const after = top ? "" : AFTER_STRING;
    if (pattern !== undefined) {
      try {
        const body = patternToEbnf(pattern, this.#g, { minLength, maxLength }, this.#states);
        return this.#g.rule("str", `"\\"" ${body} "\\""${after}`);
      } catch (e) {
        if (!(e instanceof GrammarError)) throw e;
        const k = e.keyword === "pattern" ? keyword : e.keyword;
        this.#fail(e.message.replace(/^"[^"]*": /, ""), k, path);
      }
    }
    const lo = minLength ?? 0, hi = maxLength ?? Infinity;
    const states = hi === Infinity ? lo : hi;
    if (states > 0) {
      this.#states.used += states;
      if (this.#states.used > this.#states.limit) {
        this.#fail(
          `bounded strings need ${this.#states.used} character rules in all, above this model's limit of ` +
            `${this.#states.limit} (each costs a token-mask computation over the vocabulary at compile time)`,
          hi === Infinity ? "minLength" : "maxLength",
          path,
        );
      }
    }
    return this.#text(lo, hi, top);
  }

  /** A JSON string of `min`..`max` characters (see the class doc). */
  #text(min: number, max: number, top: boolean): string {
    const g = this.#g, after = top ? "" : AFTER_STRING;
    const char = `(${PLAIN_CHAR} | ${JSON_ESCAPE})`;
    const head = min === 0 ? "" : ` ${repeat(g, char, min, min)}`;
    if (max === Infinity) {
      const loop = g.memo(
        `text-loop:${top}`,
        "chars",
        (me) => `("\\"" | ${PLAIN_CHAR} ${me} | ${JSON_ESCAPE} ${me})${after}`,
      );
      return g.memo(`text:${min}:${top}`, "string", () => `"\\""${head} ${loop}`);
    }
    let rest = '"\\""';
    for (let k = 1; k <= max - min; k++) {
      const prev = rest;
      rest = g.memo(
        `text-upto:${k}:${top}`,
        "chars",
        () => `("\\"" | ${PLAIN_CHAR} ${prev} | ${JSON_ESCAPE} ${prev})${after}`,
      );
    }
    return g.memo(`text:${min}:${max}:${top}`, "string", () => `"\\""${head} ${rest}`);
  }

  #count(s: Obj, key: string, path: string): number | undefined {
    const v = s[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      this.#fail("must be a non-negative integer", key, path);
    }
    return v;
  }

  #array(s: Obj, path: string): string {
    if (s.uniqueItems === true && !(typeof s.maxItems === "number" && s.maxItems <= 1)) {
      this.#fail("cannot be enforced", "uniqueItems", path);
    }
    let prefix: unknown[] = [];
    let rest: unknown = undefined;
    let restKey = "items";
    if (s.prefixItems !== undefined) {
      if (!Array.isArray(s.prefixItems)) this.#fail("must be an array", "prefixItems", path);
      prefix = s.prefixItems;
      rest = s.items;
    } else if (Array.isArray(s.items)) {
      prefix = s.items;
      rest = s.additionalItems;
      restKey = "additionalItems";
    } else rest = s.items;
    if (rest === undefined && s.unevaluatedItems !== undefined) {
      [rest, restKey] = [s.unevaluatedItems, "unevaluatedItems"];
    }
    const min = this.#count(s, "minItems", path) ?? 0;
    let max = this.#count(s, "maxItems", path) ?? Infinity;
    const base = prefix === s.items ? "items" : "prefixItems";
    const elems = prefix.map((p, i) => p === false ? null : this.value(p, ptr(path, base, i)));
    const cut = elems.indexOf(null);
    if (cut >= 0) max = Math.min(max, cut); // a false prefix schema ends the array before it
    if (rest === false) max = Math.min(max, prefix.length);
    if (min > max) this.#fail("no array length satisfies the schema", "minItems", path);
    if (min > MAX_REPEAT) this.#fail(`above ${MAX_REPEAT} is not supported`, "minItems", path);
    if (max > MAX_COUNT) max = Infinity;
    const restExpr = rest === false || max <= prefix.length
      ? null
      : this.value(rest ?? true, ptr(path, restKey));
    // tail(k): the elements from index k on, each after a comma
    const P = Math.min(prefix.length, max);
    const tail = (k: number): string => {
      if (k >= P) {
        if (!restExpr) return '""';
        const lo = Math.max(0, min - k), hi = max === Infinity ? Infinity : max - k;
        return repeat(this.#g, `("," ${restExpr})`, lo, hi);
      }
      const next = tail(k + 1);
      const item = `"," ${elems[k]!}${next === '""' ? "" : " " + next}`;
      return k < min ? item : `(${item})?`;
    };
    let body: string;
    if (P > 0) {
      const next = tail(1);
      body = `${elems[0]!}${next === '""' ? "" : " " + next}`;
      if (min === 0) body = `(${body})?`;
    } else if (restExpr && max > 0) {
      const more = repeat(
        this.#g,
        `("," ${restExpr})`,
        Math.max(0, min - 1),
        max === Infinity ? Infinity : max - 1,
      );
      const seq = more === '""' ? restExpr : `${restExpr} ${more}`;
      body = min === 0 ? `(${seq})?` : seq;
    } else body = '""';
    return this.#g.rule("arr", `"[" ${body} "]"`);
  }

  #object(s: Obj, path: string): string {
    const props = s.properties ?? {};
    if (!isObj(props)) this.#fail("must be an object", "properties", path);
    const required = s.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === "string")) {
      this.#fail("must be an array of strings", "required", path);
    }
    let extra = s.additionalProperties;
    let extraKey = "additionalProperties";
    if (extra === undefined && s.unevaluatedProperties !== undefined) {
      [extra, extraKey] = [s.unevaluatedProperties, "unevaluatedProperties"];
    }
    const minP = this.#count(s, "minProperties", path) ?? 0;
    const maxP = this.#count(s, "maxProperties", path) ?? Infinity;
    const named: { key: string; schema: unknown; required: boolean }[] = Object.entries(props).map((
      [key, schema],
    ) => ({
      key,
      schema,
      required: required.includes(key),
    }));
    for (const r of new Set(required as string[])) {
      if (r in props) continue;
      if (extra === false) this.#fail(`${JSON.stringify(r)} is required but not allowed`, "required", path);
      named.push({ key: r, schema: isObj(extra) || extra === true ? extra : true, required: true });
    }
    if (named.length === 0) return this.#map(s, extra, extraKey, minP, maxP, path);
    if (s.propertyNames !== undefined) {
      this.#fail("is supported only on objects without properties", "propertyNames", path);
    }
    if (isObj(s.patternProperties)) {
      for (const [pat] of Object.entries(s.patternProperties)) {
        let re: RegExp;
        try {
          re = new RegExp(pat, "u");
        } catch {
          this.#fail(`${JSON.stringify(pat)} is not a valid regular expression`, "patternProperties", path);
        }
        const hit = named.find((p) => re.test(p.key));
        if (hit) {
          this.#fail(`applies to property ${JSON.stringify(hit.key)} as well`, "patternProperties", path);
        }
      }
    }
    const kvs: { expr: string; required: boolean }[] = [];
    for (const p of named) {
      const pp = p.key in props ? ptr(path, "properties", p.key) : ptr(path, extraKey);
      if (p.schema === false) {
        if (p.required) {
          this.#fail(`${JSON.stringify(p.key)} is required but its schema is false`, "required", path);
        }
        continue;
      }
      kvs.push({
        expr: `${literal(JSON.stringify(p.key) + ":")} ${this.value(p.schema, pp)}`,
        required: p.required,
      });
    }
    const nReq = kvs.filter((k) => k.required).length;
    if (minP > kvs.length) {
      this.#fail(`asks for more properties than the ${kvs.length} declared`, "minProperties", path);
    }
    if (maxP < nReq) this.#fail(`is below the ${nReq} required properties`, "maxProperties", path);
    if (maxP < kvs.length) {
      this.#fail("cannot be enforced on an object with optional properties", "maxProperties", path);
    }
    if (minP > nReq) {
      this.#fail("cannot be enforced on an object with optional properties", "minProperties", path);
    }
    return this.#g.rule("obj", `"{" ${this.#members(kvs)} "}"`);
  }

  /**
   * Members in order: required ones always, optional ones maybe, commas between. `tail_i`: the
   * members from i on after one was written (`tail_i ::= tail_(i+1) | "," kv_i tail_(i+1)` when
   * optional); the first member written is any optional one before the first required, or that.
   */
  #members(kvs: { expr: string; required: boolean }[]): string {
    if (kvs.every((k) => k.required)) return kvs.map((k) => k.expr).join(' "," ');
    const n = kvs.length;
    const tails: string[] = new Array(n + 1);
    tails[n] = "";
    for (let i = n - 1; i >= 0; i--) {
      const next = tails[i + 1];
      const one = `"," ${kvs[i].expr}${next ? " " + next : ""}`;
      tails[i] = this.#g.rule("tail", kvs[i].required ? one : `${next || '""'} | ${one}`);
    }
    const firsts: string[] = [];
    for (let i = 0; i < n; i++) {
      firsts.push(`${kvs[i].expr}${tails[i + 1] ? " " + tails[i + 1] : ""}`);
      if (kvs[i].required) break;
    }
    if (!kvs.some((k) => k.required)) firsts.push('""');
    return `(${firsts.join(" | ")})`;
  }

  /** An object without named properties: entries from patternProperties or additionalProperties. */
  #map(s: Obj, extra: unknown, extraKey: string, minP: number, maxP: number, path: string): string {
    let key: string, val: string;
    const pats = s.patternProperties;
    if (pats !== undefined) {
      if (!isObj(pats)) this.#fail("must be an object", "patternProperties", path);
      const entries = Object.entries(pats);
      if (entries.length > 1) this.#fail("more than one pattern is not supported", "patternProperties", path);
      if (extra !== undefined && extra !== false) {
        this.#fail("cannot be combined with patternProperties", extraKey, path);
      }
      if (s.propertyNames !== undefined) {
        this.#fail("cannot be combined with patternProperties", "propertyNames", path);
      }
      if (entries.length === 0) return this.#emptyObject(minP, path);
      const [pat, schema] = entries[0];
      key = this.#stringValue({ pattern: pat }, ptr(path, "patternProperties"));
      val = this.value(schema, ptr(path, "patternProperties", pat));
    } else {
      if (extra === false) return this.#emptyObject(minP, path);
      key = s.propertyNames !== undefined
        ? this.#propertyName(s.propertyNames, ptr(path, "propertyNames"))
        : this.anyString();
      val = this.value(extra ?? true, ptr(path, extraKey));
    }
    if (minP > 1) {
      this.#fail(
        "above 1 cannot be enforced without named properties (keys may repeat)",
        "minProperties",
        path,
      );
    }
    if (maxP === 0) return this.#emptyObject(minP, path);
    const entry = this.#g.rule("entry", `${key} ":" ${val}`);
    const more = repeat(this.#g, `("," ${entry})`, 0, maxP > MAX_COUNT ? Infinity : maxP - 1);
    const seq = more === '""' ? entry : `${entry} ${more}`;
    return this.#g.rule("map", `"{" ${minP === 0 ? `(${seq})?` : seq} "}"`);
  }

  #emptyObject(minP: number, path: string): string {
    if (minP > 0) this.#fail("no property is allowed", "minProperties", path);
    return '"{}"';
  }

  #propertyName(schema: unknown, path: string): string {
    const s = this.#inline(schema, path, 0);
    if (s === true) return this.anyString();
    if (s === false) this.#fail("allows no key", "propertyNames", path);
    const types = s.type === undefined ? ["string"] : Array.isArray(s.type) ? s.type : [s.type];
    if (!types.includes("string")) this.#fail("must allow strings", "propertyNames", path);
    return this.value({ ...s, type: "string" }, path);
  }

  // ---- shared rules ----------------------------------------------------------------------------

  /** Any JSON string. */
  anyString(top = false): string {
    return this.#text(0, Infinity, top);
  }

  /** Any JSON value. */
  anyValue(top = false): string {
    const g = this.#g;
    const value = this.#any ??= g.name("value");
    if (!g.has(value)) {
      const str = this.anyString();
      const obj = g.rule("object", `"{" (${str} ":" ${value} ("," ${str} ":" ${value})*)? "}"`);
      const arr = g.rule("array", `"[" (${value} ("," ${value})*)? "]"`);
      const num = g.memo("number", "number", () => NUMBER);
      g.define(value, `${obj} | ${arr} | ${str} | ${num} | "true" | "false" | "null"`);
      g.define(
        `${value}_top`,
        `${obj} | ${arr} | ${this.anyString(true)} | ${num} | "true" | "false" | "null"`,
      );
    }
    return top ? `${value}_top` : value;
  }
}

/** Canonical JSON of the values an enum/const schema allows, or null if it has neither. */
function literalSet(s: Obj): string[] | null {
  if ("const" in s) return [canon(s.const)];
  if (Array.isArray(s.enum)) return s.enum.map(canon);
  return null;
}

/**
 * The EBNF of a whole JSON Schema: `root` matches one compact JSON document valid against it.
 *
 * @example
 * ```ts
 * import { jsonSchemaEbnf } from "./json_schema_ebnf.ts";
 * jsonSchemaEbnf({ type: "array", items: { enum: ["a", "b"] }, maxItems: 2 });
 * ```
 */
export function jsonSchemaEbnf(schema: unknown, options: ConverterOptions = {}): string {
  const g = new Ebnf();
  g.define("root", new JsonSchemaConverter(g, schema, { top: true, ...options }).root());
  return g.toString();
}
