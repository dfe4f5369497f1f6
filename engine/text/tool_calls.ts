/**
 * The tool-call format (2B4T was trained on none, so this server defines one): tools are described
 * in the system turn, and a reply is either plain text or the marker `<tool_call>` followed by a
 * compact JSON array of calls, `<tool_call>[{"name":"get_weather","arguments":{"city":"Paris"}}]`.
 * The grammar (see {@linkcode toolEnvelope}) enforces the envelope and each function's parameter
 * schema; with `tool_choice` "required" or a named function only the call form is allowed, with
 * "auto" a text reply may not start with `<`. Earlier calls and tool results in the history are
 * written the same way (`Tool: get_weather returned: ...` turns), so the model reads its own
 * format back.
 *
 * @module
 */
import { type Ebnf, literal } from "./ebnf.ts";
import { GrammarError } from "./grammar_error.ts";
import { JsonSchemaConverter } from "./json_schema_ebnf.ts";
import type { CharStates } from "./regex_ebnf.ts";

/** What marks a reply as calls. */
export const TOOL_CALL_MARKER = "<tool_call>";

/** A function the model may call. */
export interface ToolFunction {
  readonly name: string;
  readonly description?: string;
  /** JSON Schema of the arguments object; absent: no arguments (`{}`). */
  readonly parameters?: unknown;
}

/** `tool_choice`: "auto", "required", or one function by name ("none" means no tools at all). */
export type ToolChoice = "auto" | "required" | { readonly name: string };

/** A parsed call. */
export interface ToolCall {
  readonly name: string;
  /** The arguments as JSON text (compact, as generated). */
  readonly arguments: string;
}

const EMPTY_PARAMS = { type: "object", properties: {}, additionalProperties: false };

/**
 * The instructions appended to the system turn: one line per function as a signature
 * (`get_weather(city: string, unit?: "C" | "F") - The weather in a city`; types in TypeScript
 * notation, compact JSON for what that cannot say) and how to call them.
 *
 * @example
 * ```ts
 * import { toolPrompt } from "./tool_calls.ts";
 * toolPrompt([{ name: "now", description: "The time" }], "auto");
 * // 'Functions:\nnow() - The time\nTo call functions, answer <tool_call>[{"name":...,"arguments":{...}}]\nOtherwise answer in plain text.'
 * ```
 */
export function toolPrompt(tools: readonly ToolFunction[], choice: ToolChoice, jsonAnswer = false): string {
  const lines = ["Functions:"];
  for (const t of tools) {
    lines.push(
      `${t.name}(${paramsText(t.parameters ?? EMPTY_PARAMS)})${t.description ? " - " + t.description : ""}`,
    );
  }
  lines.push(`To call functions, answer ${TOOL_CALL_MARKER}[{"name":...,"arguments":{...}}]`);
  if (choice === "auto") {
    lines.push(jsonAnswer ? "Otherwise answer with JSON." : "Otherwise answer in plain text.");
  } else if (choice === "required") lines.push("Call at least one function.");
  else lines.push(`Call the function ${choice.name}.`);
  return lines.join("\n");
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** `a: string, b?: number` for an object schema with properties; else `args: <type>`. */
function paramsText(schema: unknown): string {
  if (isObj(schema) && isObj(schema.properties) && (schema.type === "object" || schema.type === undefined)) {
    return membersText(schema, 0);
  }
  return `args: ${typeText(schema, 0)}`;
}

function membersText(s: Obj, depth: number): string {
  const req = Array.isArray(s.required) ? s.required : [];
  return Object.entries(s.properties as Obj).map(([k, v]) =>
    `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}${req.includes(k) ? "" : "?"}: ${
      typeText(v, depth + 1)
    }`
  ).join(", ");
}

/** A TypeScript-like type for a schema; compact JSON where that is clearer. */
function typeText(s: unknown, depth: number): string {
  if (s === true || (isObj(s) && Object.keys(s).length === 0)) return "any";
  if (!isObj(s) || depth > 3) return JSON.stringify(s);
  const plain = Object.keys(s).every((k) =>
    [
      "type",
      "properties",
      "required",
      "items",
      "enum",
      "const",
      "anyOf",
      "description",
      "title",
      "additionalProperties",
    ]
      .includes(k)
  );
  if (!plain) return JSON.stringify(s);
  if ("const" in s) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (Array.isArray(s.anyOf)) return s.anyOf.map((b) => typeText(b, depth + 1)).join(" | ");
  const types = Array.isArray(s.type) ? s.type : [s.type];
  return types.map((t) => {
    if (t === "object" || (t === undefined && isObj(s.properties))) {
      return isObj(s.properties) ? `{${membersText(s, depth)}}` : "object";
    }
    if (t === "array") return s.items === undefined ? "any[]" : `${wrap(typeText(s.items, depth + 1))}[]`;
    return typeof t === "string" ? t : "any";
  }).join(" | ");
}

const wrap = (t: string) => /[ |]/.test(t) && !t.startsWith("{") ? `(${t})` : t;

/**
 * The text of calls as the model writes them (for assistant turns in the history).
 *
 * @example
 * ```ts
 * import { renderToolCalls } from "./tool_calls.ts";
 * renderToolCalls([{ name: "f", arguments: '{ "x": 1 }' }]); // '<tool_call>[{"name":"f","arguments":{"x":1}}]'
 * ```
 */
export function renderToolCalls(calls: readonly ToolCall[]): string {
  const items = calls.map((c) => {
    let args: unknown;
    try {
      args = JSON.parse(c.arguments);
    } catch {
      throw new GrammarError(`the arguments of ${JSON.stringify(c.name)} are not valid JSON`);
    }
    return `{"name":${JSON.stringify(c.name)},"arguments":${JSON.stringify(args)}}`;
  });
  return `${TOOL_CALL_MARKER}[${items.join(",")}]`;
}

/**
 * Defines `root` in `g`: the reply envelope for these tools. `answer` is the EBNF expression of a
 * non-call reply in "auto" mode (default: any text not starting with `<`, or nothing).
 */
export function toolEnvelope(
  g: Ebnf,
  tools: readonly ToolFunction[],
  choice: ToolChoice,
  parallel: boolean,
  answer?: string,
  charStates?: CharStates,
): void {
  const allowed = typeof choice === "object" ? tools.filter((t) => t.name === choice.name) : tools;
  if (allowed.length === 0) {
    throw new GrammarError(
      `tool_choice names ${JSON.stringify((choice as { name: string }).name)}, which is not in tools`,
    );
  }
  const calls = allowed.map((t) => {
    const i = tools.indexOf(t);
    const base = `/tools/${i}/function/parameters`;
    const args = new JsonSchemaConverter(g, t.parameters ?? EMPTY_PARAMS, { base, charStates }).root();
    return g.rule("call", `${literal(`{"name":${JSON.stringify(t.name)},"arguments":`)} ${args} "}"`);
  });
  const call = calls.length === 1 ? calls[0] : g.rule("call", calls.join(" | "));
  const many = parallel && typeof choice !== "object";
  const list = g.rule(
    "calls",
    `${literal(TOOL_CALL_MARKER + "[")} ${call}${many ? ` ("," ${call})*` : ""} "]"`,
  );
  if (choice !== "auto") g.define("root", list);
  else if (answer) g.define("root", `${list} | ${answer}`);
  else g.define("root", `${list} | ${g.rule("text", "[^<] [^]*")} | ""`);
}

/** What {@linkcode ToolCallParser.push} reports while a reply streams in. */
export type ToolCallEvent =
  /** Plain text of a non-call reply. */
  | { readonly type: "content"; readonly text: string }
  /** Call `index` begins: its function name is known. */
  | { readonly type: "call"; readonly index: number; readonly name: string }
  /** More argument text of call `index`. */
  | { readonly type: "arguments"; readonly index: number; readonly text: string };

/**
 * Reads a reply in the tool-call format incrementally: decides text or calls from the first
 * character, then follows the JSON of the calls (its shape is guaranteed by the grammar) to report
 * each call's name as soon as it is complete and its arguments as they arrive.
 *
 * @example
 * ```ts
 * import { ToolCallParser } from "./tool_calls.ts";
 * const p = new ToolCallParser();
 * p.push('<tool_call>[{"name":"f","argu');
 * p.push('ments":{"x":1}}]');
 * p.calls; // [{ name: "f", arguments: '{"x":1}' }]
 * ```
 */
export class ToolCallParser {
  /** null until the first character: then whether the reply is calls. */
  mode: "text" | "calls" | null = null;
  /** Calls so far (the last one possibly incomplete). */
  readonly calls: { name: string; arguments: string }[] = [];
  /** The reply text as written. */
  text = "";
  #held = ""; // marker prefix not yet decided
  #depth = 0; // JSON nesting below the array (1 = inside a call object)
  #inString = false;
  #escape = false;
  #head = ""; // text of the current call before its arguments
  #inArgs = false;

  /** Feeds released text; returns what it completes. */
  push(text: string): ToolCallEvent[] {
    this.text += text;
    const out: ToolCallEvent[] = [];
    if (this.mode === null) {
      this.#held += text;
      if (this.#held.length === 0) return out;
      if (this.#held[0] !== "<") this.mode = "text";
      else if (this.#held.length < TOOL_CALL_MARKER.length + 1) return out;
      else this.mode = this.#held.startsWith(TOOL_CALL_MARKER + "[") ? "calls" : "text";
      text = this.mode === "text" ? this.#held : this.#held.slice(TOOL_CALL_MARKER.length + 1);
      this.#held = "";
    }
    if (this.mode === "text") {
      if (text) out.push({ type: "content", text });
      return out;
    }
    let args = "";
    const flush = () => {
      if (args) out.push({ type: "arguments", index: this.calls.length - 1, text: args });
      args = "";
    };
    for (const ch of text) {
      if (this.#inArgs) {
        if (this.#scan(ch) && this.#depth === 0) { // the call object closed
          this.#inArgs = false;
          flush();
          continue;
        }
        args += ch;
        this.calls[this.calls.length - 1].arguments += ch;
        continue;
      }
      this.#scan(ch);
      if (this.#depth <= 0) continue; // between calls (",") or after them ("]")
      this.#head += ch;
      const m = this.#head.match(/^\{"name":("(?:[^"\\]|\\.)*"),"arguments":$/);
      if (m) {
        const name = JSON.parse(m[1]) as string;
        this.calls.push({ name, arguments: "" });
        out.push({ type: "call", index: this.calls.length - 1, name });
        this.#head = "";
        this.#inArgs = true;
      }
    }
    flush();
    return out;
  }

  /** The end of the reply: any undecided text is content. */
  end(): ToolCallEvent[] {
    if (this.mode !== null || !this.#held) return [];
    this.mode = "text";
    const text = this.#held;
    this.#held = "";
    return [{ type: "content", text }];
  }

  /** Tracks JSON strings and nesting; returns true when `ch` closed an object or array. */
  #scan(ch: string): boolean {
    if (this.#inString) {
      if (this.#escape) this.#escape = false;
      else if (ch === "\\") this.#escape = true;
      else if (ch === '"') this.#inString = false;
      return false;
    }
    if (ch === '"') this.#inString = true;
    else if (ch === "{" || ch === "[") this.#depth++;
    else if (ch === "}" || ch === "]") {
      this.#depth--;
      return true;
    }
    return false;
  }
}
