/**
 * `POST /v1/chat/completions`: messages -> the model's chat template -> `n` generations ->
 * OpenAI's `chat.completion` object or `chat.completion.chunk` stream.
 *
 * @module
 */
import { Hono } from "hono";
import type { ChatMessage } from "../engine/text/chat_template.ts";
import type { Tokenizer } from "../engine/text/tokenizer.ts";
import { readJson } from "./body.ts";
import type { AppEnv, Deps } from "./context.ts";
import { ApiError } from "./errors.ts";
import { Generation, type Meta, respond, responseMeta, runSpecs } from "./generation.ts";
import { type ChatLogprob, chatLogprob } from "./logprobs.ts";
import { inspectFields } from "./fields.ts";
import { ChatRequest } from "./schemas.ts";

const IMPLEMENTED: ReadonlySet<string> = new Set(Object.keys(ChatRequest.shape));

/** The chat routes. */
export function chatRoutes(deps: Deps): Hono<AppEnv> {
  return new Hono<AppEnv>().post("/v1/chat/completions", async (c) => {
    const body = await readJson(c, ChatRequest, inspectFields(c, deps, "chat", IMPLEMENTED));
    const engine = c.get("engine"), tok = engine.tokenizer;
    const prompt = engine.encodeChat(toMessages(body.messages));
    const logprobs = body.logprobs ? body.top_logprobs ?? 0 : undefined;
    const maxTokens = body.max_completion_tokens ?? body.max_tokens;
    const specs = runSpecs(engine, [prompt], body, { maxTokens, logprobs });
    const gen = new Generation(c, deps, specs, {
      param: "messages",
      user: body.user ?? body.safety_identifier,
    });
    const meta = responseMeta(c, "chatcmpl");
    const usage = !!body.stream_options?.include_usage;
    return respond(c, gen, !!body.stream, {
      chunks: () => chatChunks(gen, meta, tok, usage),
      whole: () => chatCompletion(gen, meta, tok, logprobs !== undefined),
    });
  });
}

/** Request messages to template messages: text parts joined, `developer` read as `system`. */
function toMessages(messages: ChatRequest["messages"]): ChatMessage[] {
  return messages.map((m, i) => {
    if (m.content == null && m.role !== "assistant") {
      throw ApiError.badRequest(`messages[${i}].content is required`, `messages[${i}].content`);
    }
    const content = typeof m.content === "string" ? m.content : (m.content ?? []).map((p) => p.text).join("");
    return { role: m.role === "developer" ? "system" : m.role, content };
  });
}

/** The non-streaming response. */
async function chatCompletion(gen: Generation, meta: Meta, tok: Tokenizer, withLogprobs: boolean) {
  const choices = gen.specs.map((_, index) => ({
    index,
    text: "",
    logprobs: [] as ChatLogprob[],
    finish: "length",
  }));
  for await (const [i, ev] of gen.events()) {
    if (ev.type === "prompt") continue;
    choices[i].text += ev.text;
    if (ev.type === "token" && ev.logprob) choices[i].logprobs.push(chatLogprob(tok, ev.id, ev.logprob));
    if (ev.type === "done") choices[i].finish = ev.finishReason;
  }
  return {
    id: meta.id,
    object: "chat.completion",
    created: meta.created,
    model: meta.model,
    choices: choices.map((ch) => ({
      index: ch.index,
      message: { role: "assistant", content: ch.text, refusal: null },
      logprobs: withLogprobs ? { content: ch.logprobs, refusal: null } : null,
      finish_reason: ch.finish,
    })),
    usage: gen.usage(),
  };
}

/**
 * The stream: a `role` chunk per choice, content deltas (log-probabilities of tokens whose text is
 * held back ride on the next delta), a `finish_reason` chunk per choice, then the usage chunk with
 * `choices: []` and the server's `timings` when asked. Each chunk carries one choice.
 */
async function* chatChunks(gen: Generation, meta: Meta, tok: Tokenizer, includeUsage: boolean) {
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
    yield chunk({ index, delta: { role: "assistant", content: "" } });
  }
  for await (const [index, ev] of gen.events()) {
    if (ev.type === "prompt") continue;
    if (ev.type === "token" && ev.logprob) pending[index].push(chatLogprob(tok, ev.id, ev.logprob));
    if (ev.text) yield chunk({ index, delta: { content: ev.text }, logprobs: logprobs(index) });
    if (ev.type === "done") {
      yield chunk({ index, delta: {}, logprobs: logprobs(index), finish_reason: ev.finishReason });
    }
  }
  if (includeUsage) yield { ...head, choices: [], usage: gen.usage(), timings: gen.timings() };
}
