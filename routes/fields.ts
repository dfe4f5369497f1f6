/**
 * No silent ignores: every request field of OpenAI's chat and completions APIs and of
 * llama-server's sampling API that this server knows is either implemented (the zod schemas) or
 * refused here with a 400 `unsupported_parameter` naming it. A field is refused only when its value
 * asks for something this server does not do: the value that means "off" (`mirostat: 0`,
 * `store: false`, `modalities: ["text"]`, `null`) is accepted, so clients that send every field
 * with its default keep working. Fields nobody documents stay ignored (clients add vendor fields),
 * with a debug log line naming them.
 *
 * @module
 */
import type { Context } from "hono";
import type { AppEnv, Deps } from "./context.ts";
import { ApiError } from "./errors.ts";

/** A known field and when its value is acceptable without being implemented. */
interface Refusal {
  /** True when the value asks for nothing this server lacks. */
  readonly off: (value: unknown) => boolean;
  /** Why it is refused (the end of the error message). */
  readonly why: string;
}

const isNull = (v: unknown) => v === null;
const falsy = (v: unknown) => v === null || v === false;
const zero = (v: unknown) => v === null || v === 0;
const empty = (v: unknown) =>
  v === null || (Array.isArray(v) && v.length === 0) ||
  (typeof v === "object" && !Array.isArray(v) && Object.keys(v as object).length === 0);
const oneOf = (...ok: unknown[]) => (v: unknown) => v === null || ok.includes(v);
/** Accepted whatever the value: it has no effect unless a refused field turns it on (mirostat_tau). */
const inert = () => true;

const NOT_REASONING = "this model is not a reasoning model";
const SAMPLER = "this sampler is not implemented; use temperature, top_k, top_p, min_p or typical_p";

/** Fields of OpenAI's chat completions API that are not implemented. */
const CHAT: Readonly<Record<string, Refusal>> = {
  audio: { off: isNull, why: "this model generates text only" },
  modalities: {
    off: (v) => v === null || (Array.isArray(v) && v.every((m) => m === "text")),
    why: 'this model generates text only (modalities: ["text"])',
  },
  prediction: { off: isNull, why: "predicted outputs are not implemented" },
  reasoning_effort: { off: isNull, why: NOT_REASONING },
  verbosity: { off: isNull, why: NOT_REASONING },
  web_search_options: { off: isNull, why: "this server has no web search" },
  moderation: { off: isNull, why: "this server does not run moderation" },
  store: { off: falsy, why: "this server does not store completions" },
  metadata: { off: empty, why: "metadata is kept with stored completions, which this server does not keep" },
  service_tier: { off: oneOf("auto", "default"), why: 'this server has one tier ("default")' },
  prompt_cache_retention: {
    off: oneOf("in_memory"),
    why: 'prompts are cached in memory only (prompt_cache_retention: "in_memory")',
  },
  prompt_cache_options: {
    off: (v) =>
      v === null || (typeof v === "object" && !Array.isArray(v) &&
        Object.entries(v as object).every(([k, x]) =>
          (k === "mode" && x === "implicit") || (k === "ttl" && x === "30m")
        )),
    why: "this server caches every prompt prefix implicitly; explicit breakpoints are not implemented",
  },
  functions: { off: empty, why: "legacy function calling is not implemented" },
  function_call: { off: oneOf("none"), why: "legacy function calling is not implemented" },
};

/** Fields of OpenAI's legacy completions API that are not implemented. */
const COMPLETIONS: Readonly<Record<string, Refusal>> = {
  suffix: {
    off: (v) => v === null || v === "",
    why: "this model has no fill-in-the-middle training",
  },
};

/** llama-server sampling and server fields that are not implemented (both routes). */
const LLAMA: Readonly<Record<string, Refusal>> = {
  mirostat: { off: zero, why: "mirostat sampling is not implemented" },
  mirostat_tau: { off: inert, why: "" },
  mirostat_eta: { off: inert, why: "" },
  tfs_z: { off: oneOf(1), why: SAMPLER },
  dynatemp_range: { off: zero, why: SAMPLER },
  dynatemp_exponent: { off: inert, why: "" },
  xtc_probability: { off: zero, why: SAMPLER },
  xtc_threshold: { off: inert, why: "" },
  dry_multiplier: { off: zero, why: SAMPLER },
  dry_base: { off: inert, why: "" },
  dry_allowed_length: { off: inert, why: "" },
  dry_penalty_last_n: { off: inert, why: "" },
  dry_sequence_breakers: { off: inert, why: "" },
  top_n_sigma: { off: (v) => v === null || (typeof v === "number" && v <= 0), why: SAMPLER },
  min_keep: { off: oneOf(0, 1), why: "the samplers always keep at least one token, never more" },
  samplers: { off: isNull, why: "the sampler order is fixed (see the README)" },
  n_probs: { off: zero, why: "use logprobs (and top_logprobs) for token probabilities" },
  post_sampling_probs: { off: falsy, why: "use logprobs (and top_logprobs) for token probabilities" },
  return_tokens: { off: falsy, why: "use logprobs for the generated tokens" },
  timings_per_token: { off: falsy, why: "timings are in the server's request log and /metrics" },
  response_fields: { off: empty, why: "responses have OpenAI's shape" },
  id_slot: { off: oneOf(-1), why: "the server chooses the slot (by the cached prompt prefix)" },
  n_keep: { off: oneOf(0, -1), why: "context shifting is not implemented: prompt + max_tokens must fit" },
  n_indent: { off: zero, why: "n_indent is not implemented" },
  t_max_predict_ms: { off: zero, why: "use the server's --timeout" },
  t_max_prompt_ms: { off: zero, why: "use the server's --timeout" },
  lora: { off: empty, why: "LoRA adapters are not supported" },
};

/** Per message of a chat request. */
const MESSAGE: Readonly<Record<string, Refusal>> = {
  name: {
    off: (v) => v === null || v === "",
    why: "the chat format of this model has no participant names",
  },
  refusal: { off: isNull, why: "send an assistant's refusal as its content" },
  audio: { off: isNull, why: "this model reads text only" },
  function_call: { off: isNull, why: "legacy function calling is not implemented" },
};

/** Which route a body belongs to. */
export type Route = "chat" | "completions";

/**
 * Throws a 400 `unsupported_parameter` for the first known field whose value asks for something
 * not implemented; returns the names of fields that are neither implemented (`implemented`) nor
 * known, for a debug log line.
 *
 * @example
 * ```ts
 * import { checkFields } from "./fields.ts";
 * checkFields({ mirostat: 0, my_vendor_flag: 1 }, "chat", new Set(["messages"])); // ["my_vendor_flag"]
 * // checkFields({ mirostat: 2 }, "chat", new Set()) throws: 'mirostat' is not supported ...
 * ```
 */
export function checkFields(raw: unknown, route: Route, implemented: ReadonlySet<string>): string[] {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return [];
  const body = raw as Record<string, unknown>;
  const table = { ...LLAMA, ...(route === "chat" ? CHAT : COMPLETIONS) };
  const unknown: string[] = [];
  for (const [field, value] of Object.entries(body)) {
    if (implemented.has(field)) continue;
    const rule = Object.hasOwn(table, field) ? table[field] : undefined;
    if (!rule) unknown.push(field);
    else if (value !== undefined && !rule.off(value)) refuse(field, value, rule.why);
  }
  if (route === "chat" && Array.isArray(body.messages)) {
    body.messages.forEach((m, i) => {
      if (typeof m !== "object" || m === null) return;
      for (const [field, rule] of Object.entries(MESSAGE)) {
        const value = (m as Record<string, unknown>)[field];
        if (value !== undefined && !rule.off(value)) refuse(`messages[${i}].${field}`, value, rule.why);
      }
    });
  }
  const options = body.stream_options;
  if (
    typeof options === "object" && options !== null &&
    (options as Record<string, unknown>).include_obfuscation === true
  ) {
    refuse("stream_options.include_obfuscation", true, "stream chunks are not padded");
  }
  return unknown;
}

function refuse(param: string, value: unknown, why: string): never {
  const shown = JSON.stringify(value);
  throw ApiError.badRequest(
    `'${param}' is not supported by this server${
      shown && shown.length <= 40 ? ` (got ${shown})` : ""
    }: ${why}`,
    param,
    "unsupported_parameter",
  );
}

/**
 * `readJson`'s `inspect` for a generation route: refuses unsupported fields, and logs at debug the
 * fields nobody documents.
 */
export function inspectFields(
  c: Context<AppEnv>,
  deps: Deps,
  route: Route,
  implemented: ReadonlySet<string>,
): (raw: unknown) => void {
  return (raw) => {
    const unknown = checkFields(raw, route, implemented);
    if (unknown.length) {
      deps.log("debug", { msg: "unknown request fields ignored", id: c.get("record").id, fields: unknown });
    }
  };
}
