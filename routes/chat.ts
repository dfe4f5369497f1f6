/**
 * `POST /v1/chat/completions`: messages -> the model's chat template -> `n` generations ->
 * OpenAI's `chat.completion` object or `chat.completion.chunk` stream.
 *
 * @module
 */
import { Hono } from "hono";
import type { Tokenizer } from "../engine/text/tokenizer.ts";
import { readJson } from "./body.ts";
import type { AppEnv, Deps } from "./context.ts";
import { ApiError } from "./errors.ts";
import { Generation, type Meta, respond, responseMeta, runSpecs } from "./generation.ts";
import { type ChatLogprob, chatLogprob } from "./logprobs.ts";
import { inspectFields } from "./fields.ts";
import { ChatRequest } from "./schemas.ts";
import { compileGrammar, grammarSpec, jsonSpec } from "./structured.ts";
import { chatMessages, ToolReply, toolSetup, toolSpec } from "./tools.ts";

const IMPLEMENTED: ReadonlySet<string> = new Set(Object.keys(ChatRequest.shape));

/** The chat routes. */
export function chatRoutes(deps: Deps): Hono<AppEnv> {
  return new Hono<AppEnv>().post("/v1/chat/completions", async (c) => {
    const body = await readJson(c, ChatRequest, inspectFields(c, deps, "chat", IMPLEMENTED));
    const engine = c.get("engine"), tok = engine.tokenizer;
    const tools = toolSetup(body);
    const calls = !!tools && tools.choice !== "none";
    const json = jsonSpec(body);
    if (calls && body.grammar != null) {
      throw ApiError.badRequest("grammar cannot be combined with tools", "grammar");
    }
    const prompt = engine.encodeChat(chatMessages(body.messages, tools, !!json));
    const constraint = calls
      ? { spec: toolSpec(tools, json?.spec ?? undefined), param: "tools" }
      : grammarSpec(body);
    const grammar = constraint ? await compileGrammar(engine, constraint.spec, constraint.param) : undefined;
    const logprobs = body.logprobs ? body.top_logprobs ?? 0 : undefined;
    const maxTokens = body.max_completion_tokens ?? body.max_tokens;
    let gen: Generation;
    try {
      const specs = runSpecs(engine, [prompt], body, { maxTokens, logprobs, grammar });
      gen = new Generation(c, deps, specs, {
        param: "messages",
        user: body.user ?? body.safety_identifier,
      });
    } finally {
      grammar?.release(); // each sequence holds its own matcher now
    }
    const meta = responseMeta(c, "chatcmpl");
    const usage = !!body.stream_options?.include_usage;
    return respond(c, gen, !!body.stream, {
      chunks: () => chatChunks(gen, meta, tok, usage, calls),
      whole: () => chatCompletion(gen, meta, tok, logprobs !== undefined, calls),
    });
  });
}

/** The non-streaming response; with tools, a reply in the call form becomes `tool_calls`. */
async function chatCompletion(
  gen: Generation,
  meta: Meta,
  tok: Tokenizer,
  withLogprobs: boolean,
  calls: boolean,
) {
  const choices = gen.specs.map((_, index) => ({
    index,
    text: "",
    logprobs: [] as ChatLogprob[],
    finish: "length",
    reply: calls ? new ToolReply() : null,
  }));
  for await (const [i, ev] of gen.events()) {
    if (ev.type === "prompt") continue;
    const ch = choices[i];
    ch.text += ev.text;
    ch.reply?.push(ev.text);
    if (ev.type === "token" && ev.logprob) ch.logprobs.push(chatLogprob(tok, ev.id, ev.logprob));
    if (ev.type === "done") {
      ch.reply?.end();
      ch.finish = ch.reply ? ch.reply.finishReason(ev.finishReason) : ev.finishReason;
    }
  }
  return {
    id: meta.id,
    object: "chat.completion",
    created: meta.created,
    model: meta.model,
    choices: choices.map((ch) => ({
      index: ch.index,
      message: ch.reply?.isCalls
        ? { role: "assistant", content: null, tool_calls: ch.reply.calls(), refusal: null }
        : { role: "assistant", content: ch.text, refusal: null },
      logprobs: withLogprobs ? { content: ch.logprobs, refusal: null } : null,
      finish_reason: ch.finish,
    })),
    usage: gen.usage(),
  };
}

/**
 * The stream: a `role` chunk per choice, content deltas (log-probabilities of tokens whose text is
 * held back ride on the next delta), a `finish_reason` chunk per choice, then the usage chunk with
 * `choices: []` and the server's `timings` when asked. Each chunk carries one choice. With tools, a
 * call streams as OpenAI's do: one delta with its index, id, type and name (arguments ""), then
 * argument fragments.
 */
async function* chatChunks(
  gen: Generation,
  meta: Meta,
  tok: Tokenizer,
  includeUsage: boolean,
  calls: boolean,
) {
  const head = { id: meta.id, object: "chat.completion.chunk", created: meta.created, model: meta.model };
  const chunk = (
    choice: { index: number; delta: object; logprobs?: object | null; finish_reason?: string },
  ) => ({
    ...head,
    choices: [{
      index: choice.index,
      delta: choice.delta,
      logprobs: choice.logprobs ?? null,
      finish_reason: choice.finish_reason ?? null,
    }],
    ...(includeUsage ? { usage: null } : {}),
  });
  const pending = gen.specs.map(() => [] as ChatLogprob[]);
  const logprobs = (i: number) => pending[i].length ? { content: pending[i].splice(0), refusal: null } : null;
  for (let index = 0; index < gen.specs.length; index++) {
    // with tools the reply may be calls, whose messages have content null
    yield chunk({ index, delta: { role: "assistant", content: calls ? null : "" } });
  }
  const replies = gen.specs.map(() => calls ? new ToolReply() : null);
  for await (const [index, ev] of gen.events()) {
    if (ev.type === "prompt") continue;
    if (ev.type === "token" && ev.logprob) pending[index].push(chatLogprob(tok, ev.id, ev.logprob));
    const reply = replies[index];
    if (!reply) {
      if (ev.text) yield chunk({ index, delta: { content: ev.text }, logprobs: logprobs(index) });
    } else {
      const events = reply.push(ev.text);
      if (ev.type === "done") events.push(...reply.end());
      for (const e of events) {
        const delta = e.type === "content" ? { content: e.text } : {
          tool_calls: [
            e.type === "call"
              ? {
                index: e.index,
                id: reply.ids[e.index],
                type: "function",
                function: { name: e.name, arguments: "" },
              }
              : { index: e.index, function: { arguments: e.text } },
          ],
        };
        yield chunk({ index, delta, logprobs: logprobs(index) });
      }
    }
    if (ev.type === "done") {
      const finish = reply ? reply.finishReason(ev.finishReason) : ev.finishReason;
      yield chunk({ index, delta: {}, logprobs: logprobs(index), finish_reason: finish });
    }
  }
  if (includeUsage) yield { ...head, choices: [], usage: gen.usage(), timings: gen.timings() };
}
