/**
 * zod schemas of the request bodies. Unknown fields are dropped (OpenAI clients send extras; known
 * fields that are not implemented are refused before, in `fields.ts`) and every optional field also
 * accepts `null`, as several clients send explicit nulls. Ranges follow OpenAI where it has one;
 * llama-server's sampling fields (`typical_p`, `repeat_penalty`, `repeat_last_n`, `ignore_eos`,
 * `n_predict`, `cache_prompt`) and vLLM's `min_tokens` are accepted too.
 *
 * @module
 */
import { z } from "zod";

const int = (min: number, max: number) => z.int().min(min).max(max);
const num = (min: number, max: number) => z.number().min(min).max(max);
const tokenId = z.int().min(0, { error: "token ids are non-negative integers" });
const MAX_STOP = 16;
const MAX_PROMPTS = 16;
const MAX_TOOLS = 128;
const jsonSchema = z.union([z.record(z.string(), z.unknown()), z.boolean()], {
  error: "expected a JSON Schema (an object or a boolean)",
});
const functionName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, {
  error: "expected 1 to 64 letters, digits, underscores or dashes",
});

/** OpenAI's `response_format`. */
const responseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: functionName,
      description: z.string().nullish(),
      schema: jsonSchema.nullish(),
      strict: z.boolean().nullish(),
    }),
  }),
], { error: 'expected {"type": "text" | "json_object" | "json_schema"}' });

/** Fields of both chat and completions: sampling, stop, n, streaming. */
const common = {
  model: z.string().max(256).nullish(),
  max_tokens: int(0, 2 ** 31).nullish(),
  temperature: num(0, 2).nullish(),
  top_p: num(0, 1).nullish(),
  top_k: int(-1, 2 ** 31).nullish(),
  min_p: num(0, 1).nullish(),
  presence_penalty: num(-2, 2).nullish(),
  frequency_penalty: num(-2, 2).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  /** llama-server's name of repetition_penalty. */
  repeat_penalty: z.number().gt(0).max(10).nullish(),
  /** llama-server: the penalties' history window (0: off, -1: the whole context; default 64). */
  repeat_last_n: int(-1, 2 ** 31).nullish(),
  typical_p: z.number().gt(0).max(1).nullish(),
  /** The end-of-turn tokens cannot end the reply before this many tokens (vLLM). */
  min_tokens: int(0, 2 ** 31).nullish(),
  /** llama-server: the end-of-turn tokens are never sampled; generation ends on max_tokens. */
  ignore_eos: z.boolean().nullish(),
  /** llama-server's name of max_tokens (-1: as many as fit). */
  n_predict: int(-1, 2 ** 31).nullish(),
  /** llama-server: reuse the KV cache of an earlier prompt (default true). */
  cache_prompt: z.boolean().nullish(),
  /** OpenAI's replacement of `user` for abuse monitoring (logged as the user). */
  safety_identifier: z.string().max(256).nullish(),
  /** OpenAI's prompt-cache routing hint: accepted; every prompt prefix is cached without one. */
  prompt_cache_key: z.string().max(1024).nullish(),
  seed: int(-(2 ** 52), 2 ** 52).nullish(),
  stop: z.union([z.string().max(1000), z.array(z.string().max(1000)).max(MAX_STOP)], {
    error: `expected a string or an array of at most ${MAX_STOP} strings`,
  }).nullish(),
  logit_bias: z.record(z.string().regex(/^\d{1,10}$/, { error: "keys are token ids" }), num(-100, 100))
    .nullish(),
  n: int(1, 128).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  user: z.string().max(256).nullish(),
  response_format: responseFormat.nullish(),
  /** llama-server: a JSON Schema the output must match. */
  json_schema: jsonSchema.nullish(),
  /** llama-server: a grammar (XGrammar EBNF, GBNF-compatible) the output must match. */
  grammar: z.string().max(1 << 20).nullish(),
};

const textPart = z.object({ type: z.literal("text"), text: z.string() });
const content = z.union([z.string(), z.array(textPart)], {
  error: 'expected a string or an array of {type: "text", text} parts',
});

const toolCall = z.object({
  id: z.string().max(256),
  type: z.literal("function"),
  function: z.object({ name: functionName, arguments: z.string() }),
});

/** A function the model may call (`tools[i]`). */
const tool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: functionName,
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
});

/** `POST /v1/chat/completions`. */
export const ChatRequest = z.object({
  ...common,
  max_tokens: int(1, 2 ** 31).nullish(),
  messages: z.array(z.object({
    role: z.enum(["system", "developer", "user", "assistant", "tool"]),
    content: content.nullish(),
    tool_calls: z.array(toolCall).max(MAX_TOOLS).nullish(),
    tool_call_id: z.string().max(256).nullish(),
  })).min(1, { error: "at least one message is required" }).max(4096),
  max_completion_tokens: int(1, 2 ** 31).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: int(0, 20).nullish(),
  tools: z.array(tool).max(MAX_TOOLS).nullish(),
  tool_choice: z.union([
    z.enum(["none", "auto", "required"]),
    z.object({ type: z.literal("function"), function: z.object({ name: functionName }) }),
  ], { error: 'expected "none", "auto", "required" or {"type": "function", "function": {"name"}}' })
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
}).refine((b) => b.top_logprobs == null || b.logprobs, {
  path: ["top_logprobs"],
  error: "top_logprobs requires logprobs: true",
});
export type ChatRequest = z.infer<typeof ChatRequest>;

/** `POST /v1/completions`. */
export const CompletionRequest = z.object({
  ...common,
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1).max(MAX_PROMPTS),
    z.array(tokenId).min(1),
    z.array(z.array(tokenId).min(1)).min(1).max(MAX_PROMPTS),
  ], { error: "expected a string, an array of strings, an array of token ids, or an array of those" }),
  echo: z.boolean().nullish(),
  logprobs: int(0, 20).nullish(),
  /** Generate this many per prompt and return the `n` with the highest log-probability per token. */
  best_of: int(1, 128).nullish(),
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

/** The fields both generation routes share. */
export type CommonRequest = ChatRequest | CompletionRequest;

/** `POST /tokenize` (llama-server's shape). */
export const TokenizeRequest = z.object({
  content: z.string(),
  add_special: z.boolean().nullish(),
  parse_special: z.boolean().nullish(),
  with_pieces: z.boolean().nullish(),
});

/** `POST /detokenize` (llama-server's shape). */
export const DetokenizeRequest = z.object({ tokens: z.array(tokenId) });
