/**
 * What a request constrains its output to, and the EBNF that says it: JSON (any object, or a JSON
 * Schema), a grammar in XGrammar's EBNF (GBNF-compatible), or the tool-call envelope.
 *
 * @module
 */
import { Ebnf } from "./ebnf.ts";
import { GrammarError } from "./grammar_error.ts";
import { JsonSchemaConverter } from "./json_schema_ebnf.ts";
import type { CharStates } from "./regex_ebnf.ts";
import { type ToolChoice, toolEnvelope, type ToolFunction } from "./tool_calls.ts";

/** A JSON-shaped reply: any object (`json_object`) or a JSON Schema. */
export type JsonSpec =
  | { readonly type: "json_object" }
  | { readonly type: "json_schema"; readonly schema: unknown };

/** A constraint on generated text. */
export type GrammarSpec =
  | JsonSpec
  /** XGrammar EBNF with a `root` rule. */
  | { readonly type: "ebnf"; readonly grammar: string }
  /** Either calls of these tools or (with "auto") an answer: text, or JSON when `answer` is set. */
  | {
    readonly type: "tools";
    readonly tools: readonly ToolFunction[];
    readonly choice: ToolChoice;
    readonly parallel: boolean;
    readonly answer?: JsonSpec;
  };

/** Largest grammar text accepted (EBNF written or generated), in characters. */
export const MAX_GRAMMAR_CHARS = 1 << 20;

/**
 * Free-text character rules a grammar may have for a vocabulary of `vocabSize` tokens (bounded
 * string lengths and bounded repeats of broad classes; see `CharStates`): each costs XGrammar one
 * token-mask computation over the vocabulary when compiling, so the product is bounded (65 for a
 * 128,256-token vocabulary, 2048 for 4096 tokens).
 */
export function charStateLimit(vocabSize: number): number {
  return Math.floor(2 ** 23 / Math.max(1, vocabSize));
}

/**
 * The EBNF of a spec and its root rule.
 *
 * @example
 * ```ts
 * import { grammarEbnf } from "./grammar.ts";
 * grammarEbnf({ type: "json_schema", schema: { enum: ["yes", "no"] } });
 * // { ebnf: 'root ::= ("\\"yes\\"" | "\\"no\\"")\n', root: "root" }
 * ```
 */
export function grammarEbnf(spec: GrammarSpec, charLimit = Infinity): { ebnf: string; root: string } {
  if (spec.type === "ebnf") {
    if (spec.grammar.length > MAX_GRAMMAR_CHARS) {
      throw new GrammarError(`longer than ${MAX_GRAMMAR_CHARS} characters`);
    }
    return { ebnf: spec.grammar, root: "root" };
  }
  const g = new Ebnf();
  const states: CharStates = { used: 0, limit: charLimit };
  if (spec.type === "tools") {
    const answer = spec.answer ? jsonValue(g, spec.answer, states) : undefined;
    toolEnvelope(g, spec.tools, spec.choice, spec.parallel, answer, states);
  } else g.define("root", jsonValue(g, spec, states));
  const ebnf = g.toString();
  if (ebnf.length > MAX_GRAMMAR_CHARS) {
    throw new GrammarError(`the schema needs a grammar over ${MAX_GRAMMAR_CHARS} characters`);
  }
  return { ebnf, root: "root" };
}

function jsonValue(g: Ebnf, spec: JsonSpec, charStates: CharStates): string {
  const schema = spec.type === "json_object" ? { type: "object" } : spec.schema;
  return new JsonSchemaConverter(g, schema, { top: true, charStates }).root();
}

/**
 * A cache key: equal for specs that give the same grammar (object keys in any order).
 *
 * @example
 * ```ts
 * import { grammarKey } from "./grammar.ts";
 * grammarKey({ type: "json_schema", schema: { b: 1, a: 2 } }) === grammarKey({ type: "json_schema", schema: { a: 2, b: 1 } }); // false: property order matters
 * ```
 */
export function grammarKey(spec: GrammarSpec): string {
  return JSON.stringify(spec);
}
