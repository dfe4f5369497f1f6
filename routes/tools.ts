/**
 * OpenAI tools on `/v1/chat/completions`: `tools`, `tool_choice` and `parallel_tool_calls` to a
 * tool-call grammar and the system-turn description (format: `engine/text/tool_calls.ts`), the
 * history's `tool_calls` and `tool` messages to template turns, and replies back to
 * `message.tool_calls` / streamed tool-call deltas.
 *
 * With `tool_choice: "none"` the tools are not described and nothing is constrained: the model
 * answers in text, reading earlier calls and results in the history.
 *
 * @module
 */
import type { ChatMessage } from "../engine/text/chat_template.ts";
import type { GrammarSpec, JsonSpec } from "../engine/text/grammar.ts";
import { GrammarError } from "../engine/text/grammar_error.ts";
import {
  renderToolCalls,
  type ToolCallEvent,
  ToolCallParser,
  type ToolChoice,
  type ToolFunction,
  toolPrompt,
} from "../engine/text/tool_calls.ts";
import { ApiError } from "./errors.ts";
import type { ChatRequest } from "./schemas.ts";

/** The tools of a request. */
export interface ToolSetup {
  readonly tools: readonly ToolFunction[];
  readonly choice: ToolChoice | "none";
  readonly parallel: boolean;
}

/** The request's tools, or null without any; 400 for a `tool_choice` that names no tool. */
export function toolSetup(body: ChatRequest): ToolSetup | null {
  const list = body.tools ?? [];
  if (list.length === 0) {
    if (body.tool_choice != null && body.tool_choice !== "none") {
      throw ApiError.badRequest("tool_choice needs tools", "tool_choice");
    }
    return null;
  }
  const tools = list.map((t): ToolFunction => ({
    name: t.function.name,
    description: t.function.description ?? undefined,
    parameters: t.function.parameters ?? undefined,
  }));
  const seen = new Set<string>();
  tools.forEach((t, i) => {
    if (seen.has(t.name)) {
      throw ApiError.badRequest(`Duplicate tool name ${JSON.stringify(t.name)}`, `tools[${i}].function.name`);
    }
    seen.add(t.name);
  });
  const tc = body.tool_choice ?? "auto";
  const choice = typeof tc === "string" ? tc : { name: tc.function.name };
  if (typeof choice === "object" && !seen.has(choice.name)) {
    throw ApiError.badRequest(
      `tool_choice names ${JSON.stringify(choice.name)}, which is not in tools`,
      "tool_choice",
    );
  }
  return { tools, choice, parallel: body.parallel_tool_calls ?? true };
}

/** The grammar of a request with tools (not "none"); `answer`: a JSON reply format for "auto". */
export function toolSpec(setup: ToolSetup, answer?: JsonSpec): GrammarSpec {
  if (setup.choice === "none") throw new RangeError("tool_choice none has no tool grammar");
  return { type: "tools", tools: setup.tools, choice: setup.choice, parallel: setup.parallel, answer };
}

/**
 * Request messages to template messages: text parts joined, `developer` read as `system`, calls
 * in assistant turns and `tool` results written in the tool-call format, and (unless
 * `tool_choice` is "none") the tools described at the end of the first system turn.
 */
export function chatMessages(
  messages: ChatRequest["messages"],
  setup: ToolSetup | null,
  jsonAnswer = false,
): ChatMessage[] {
  const names = new Map<string, string>(); // tool_call_id -> function name
  const out = messages.map((m, i): ChatMessage => {
    const at = `messages[${i}]`;
    if (m.tool_calls != null && m.role !== "assistant") {
      throw ApiError.badRequest(`${at}.tool_calls is allowed only on assistant messages`, `${at}.tool_calls`);
    }
    if (m.content == null && m.role !== "assistant") {
      throw ApiError.badRequest(`${at}.content is required`, `${at}.content`);
    }
    const text = typeof m.content === "string" ? m.content : (m.content ?? []).map((p) => p.text).join("");
    if (m.role === "tool") {
      if (m.tool_call_id == null) {
        throw ApiError.badRequest(`${at}.tool_call_id is required`, `${at}.tool_call_id`);
      }
      const name = names.get(m.tool_call_id);
      if (name === undefined) {
        throw ApiError.badRequest(
          `${at}.tool_call_id ${JSON.stringify(m.tool_call_id)} answers no earlier assistant tool call`,
          `${at}.tool_call_id`,
        );
      }
      return { role: "tool", content: `${name} returned: ${text}` };
    }
    if (m.role === "assistant" && m.tool_calls?.length) {
      for (const c of m.tool_calls) names.set(c.id, c.function.name);
      let calls: string;
      try {
        calls = renderToolCalls(
          m.tool_calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments })),
        );
      } catch (e) {
        if (e instanceof GrammarError) {
          throw ApiError.badRequest(`${at}.tool_calls: ${e.message}`, `${at}.tool_calls`);
        }
        throw e;
      }
      return { role: "assistant", content: text ? `${text}\n${calls}` : calls };
    }
    return { role: m.role === "developer" ? "system" : m.role, content: text };
  });
  if (!setup || setup.choice === "none") return out;
  const prompt = toolPrompt(setup.tools, setup.choice, jsonAnswer);
  const sys = out.findIndex((m) => m.role === "system");
  if (sys < 0) return [{ role: "system", content: prompt }, ...out];
  out[sys] = { role: "system", content: `${out[sys].content}\n\n${prompt}` };
  return out;
}

/** A new tool call id, as OpenAI writes them (`call_` + 24 characters). */
export function toolCallId(): string {
  return "call_" + crypto.randomUUID().replaceAll("-", "").slice(0, 24);
}

/** OpenAI's `message.tool_calls` entry. */
export interface ToolCallBody {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** One choice's reply read as the tool-call format: its calls (with ids) or its text. */
export class ToolReply {
  readonly parser = new ToolCallParser();
  readonly ids: string[] = [];

  /** Feeds text; returns the events with ids assigned to new calls. */
  push(text: string): ToolCallEvent[] {
    const events = this.parser.push(text);
    for (const ev of events) if (ev.type === "call") this.ids[ev.index] = toolCallId();
    return events;
  }

  end(): ToolCallEvent[] {
    return this.parser.end();
  }

  get isCalls(): boolean {
    return this.parser.mode === "calls";
  }

  /** The calls so far as OpenAI's `tool_calls`. */
  calls(): ToolCallBody[] {
    return this.parser.calls.map((c, i) => ({
      id: this.ids[i],
      type: "function" as const,
      function: { name: c.name, arguments: c.arguments },
    }));
  }

  /** The finish reason OpenAI gives: "tool_calls" when calls ended normally. */
  finishReason(reason: string): string {
    return this.isCalls && reason === "stop" ? "tool_calls" : reason;
  }
}
