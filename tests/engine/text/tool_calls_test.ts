import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { Ebnf } from "../../../engine/text/ebnf.ts";
import { GrammarError } from "../../../engine/text/grammar_error.ts";
import {
  renderToolCalls,
  type ToolCallEvent,
  ToolCallParser,
  toolEnvelope,
  type ToolFunction,
  toolPrompt,
} from "../../../engine/text/tool_calls.ts";
import { accepts } from "./_xgrammar_walk.ts";

const TOOLS: ToolFunction[] = [
  {
    name: "get_weather",
    description: "The weather",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { enum: ["C", "F"] } },
      required: ["city"],
    },
  },
  { name: "now" },
];
const REPLY =
  '<tool_call>[{"name":"get_weather","arguments":{"city":"Pa\\"ris}","unit":"C"}},{"name":"now","arguments":{}}]';

function feed(text: string, cuts: number[]): { events: ToolCallEvent[]; parser: ToolCallParser } {
  const parser = new ToolCallParser();
  const events: ToolCallEvent[] = [];
  let at = 0;
  for (const c of [...cuts, text.length]) {
    events.push(...parser.push(text.slice(at, c)));
    at = c;
  }
  events.push(...parser.end());
  return { events, parser };
}

Deno.test("ToolCallParser reads calls however the text is cut", () => {
  let seed = 5;
  for (let trial = 0; trial < 50; trial++) {
    const cuts: number[] = [];
    for (let i = 0; i < REPLY.length; i++) if (((seed = (seed * 69069 + 1) >>> 0) >>> 28) < 4) cuts.push(i);
    const { events, parser } = feed(REPLY, cuts);
    assertEquals(parser.mode, "calls");
    assertEquals(parser.calls, [
      { name: "get_weather", arguments: '{"city":"Pa\\"ris}","unit":"C"}' },
      { name: "now", arguments: "{}" },
    ]);
    const heads = events.filter((e) => e.type === "call");
    assertEquals(heads, [{ type: "call", index: 0, name: "get_weather" }, {
      type: "call",
      index: 1,
      name: "now",
    }]);
    // a call's head comes before its argument fragments
    const first = (i: number, type: string) =>
      events.findIndex((e) => e.type === type && "index" in e && e.index === i);
    assert(first(1, "call") > first(0, "arguments"));
    assert(first(1, "arguments") > first(1, "call"));
    assertEquals(events.some((e) => e.type === "content"), false);
  }
});

Deno.test("ToolCallParser passes a text reply through as content", () => {
  const { events, parser } = feed("Hello <b>there</b>", [1, 3]);
  assertEquals(parser.mode, "text");
  assertEquals(events.map((e) => (e as { text: string }).text).join(""), "Hello <b>there</b>");
  const short = feed("<b>", [1]);
  assertEquals([short.parser.mode, short.events], ["text", [{ type: "content", text: "<b>" }]]);
});

Deno.test("renderToolCalls() writes history calls in the generated form", () => {
  assertEquals(
    renderToolCalls([{ name: "f", arguments: '{ "x" : [1, 2] }' }]),
    '<tool_call>[{"name":"f","arguments":{"x":[1,2]}}]',
  );
  throws(() => renderToolCalls([{ name: "f", arguments: "{x" }]), GrammarError);
});

Deno.test("toolPrompt() lists signatures and the calling convention", () => {
  assertEquals(
    toolPrompt(TOOLS, "required"),
    'Functions:\nget_weather(city: string, unit?: "C" | "F") - The weather\nnow()\n' +
      'To call functions, answer <tool_call>[{"name":...,"arguments":{...}}]\nCall at least one function.',
  );
  assert(toolPrompt(TOOLS, { name: "now" }).endsWith("Call the function now."));
  assert(toolPrompt(TOOLS, "auto").endsWith("Otherwise answer in plain text."));
});

Deno.test("toolEnvelope(): auto allows text or calls; required and named force calls", async () => {
  const grammar = (choice: Parameters<typeof toolEnvelope>[2], parallel: boolean) => {
    const g = new Ebnf();
    toolEnvelope(g, TOOLS, choice, parallel);
    return g.toString();
  };
  const one = '<tool_call>[{"name":"now","arguments":{}}]';
  const auto = grammar("auto", true);
  for (
    const [s, ok] of [[REPLY, true], [one, true], ["Sure.", true], ["", true], ["<b>", false], [
      one + "x",
      false,
    ]] as const
  ) {
    assertEquals(await accepts(auto, s), ok, `auto: ${s}`);
  }
  const required = grammar("required", false);
  assertEquals(await accepts(required, one), true);
  assertEquals(await accepts(required, REPLY), false); // parallel_tool_calls: false
  assertEquals(await accepts(required, "Sure."), false);
  const named = grammar({ name: "now" }, true);
  assertEquals(await accepts(named, one), true);
  assertEquals(await accepts(named, '<tool_call>[{"name":"get_weather","arguments":{"city":"x"}}]'), false);
  assertEquals(await accepts(auto, '<tool_call>[{"name":"get_weather","arguments":{"unit":"C"}}]'), false);
  throws(() => grammar({ name: "nope" }, true), GrammarError);
});
