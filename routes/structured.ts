/**
 * Structured output for both generation routes: OpenAI's `response_format` (`text`,
 * `json_object`, `json_schema`) and llama-server's `json_schema` and `grammar` (XGrammar EBNF,
 * GBNF-compatible) become one {@linkcode GrammarSpec}, compiled before the response starts so a
 * schema that cannot be enforced is a 400 naming the field and keyword.
 *
 * @module
 */
import type { Engine } from "../engine/run/engine.ts";
import type { GrammarSpec, JsonSpec } from "../engine/text/grammar.ts";
import { GrammarError } from "../engine/text/grammar_error.ts";
import type { CompiledGrammar } from "../engine/text/grammar_service.ts";
import { ApiError } from "./errors.ts";
import type { CommonRequest } from "./schemas.ts";

/** The JSON shape a request asks for (null: free text), and the request field it came from. */
export function jsonSpec(body: CommonRequest): { spec: JsonSpec | null; param: string } | null {
  const rf = body.response_format;
  const given = [
    rf && rf.type !== "text" ? "response_format" : null,
    body.json_schema != null ? "json_schema" : null,
  ]
    .concat(body.grammar != null ? ["grammar"] : []).filter((x): x is string => x !== null);
  if (given.length > 1) {
    throw ApiError.badRequest(
      `Give only one of response_format, json_schema and grammar (got ${given.join(", ")})`,
      given[1],
    );
  }
  if (rf?.type === "json_object") return { spec: { type: "json_object" }, param: "response_format" };
  if (rf?.type === "json_schema") {
    return {
      spec: { type: "json_schema", schema: rf.json_schema.schema ?? {} },
      param: "response_format.json_schema.schema",
    };
  }
  if (body.json_schema != null) {
    return { spec: { type: "json_schema", schema: body.json_schema }, param: "json_schema" };
  }
  return null;
}

/** The grammar of a request without tools: JSON, EBNF, or none. */
export function grammarSpec(body: CommonRequest): { spec: GrammarSpec; param: string } | null {
  const json = jsonSpec(body);
  if (json?.spec) return { spec: json.spec, param: json.param };
  if (body.grammar != null) return { spec: { type: "ebnf", grammar: body.grammar }, param: "grammar" };
  return null;
}

/**
 * Compiles `spec` for `engine`; a refused grammar or schema becomes a 400 naming `param` (and the
 * keyword in the message).
 */
export async function compileGrammar(
  engine: Engine,
  spec: GrammarSpec,
  param: string,
): Promise<CompiledGrammar> {
  try {
    return await engine.grammars.compile(spec);
  } catch (e) {
    if (e instanceof GrammarError) {
      const what = spec.type === "ebnf"
        ? "grammar"
        : spec.type === "tools"
        ? "tool definitions"
        : "JSON Schema";
      throw ApiError.badRequest(`The ${what} cannot be enforced: ${e.message}`, param, "unsupported_grammar");
    }
    throw e;
  }
}
