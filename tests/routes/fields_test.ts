/**
 * No silent ignores: known fields that are not implemented get a 400 `unsupported_parameter`
 * naming them (their "off" values pass), unknown fields are logged at debug, and the llama-server /
 * vLLM fields that are implemented change the output as documented.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type Harness, type Json, suite } from "./_harness.ts";

const CHAT = "/v1/chat/completions", COMPLETIONS = "/v1/completions";
const HI = [{ role: "user", content: "Hello there" }];

/** Fields (or message fields) with a value asking for something not implemented, by route. */
const REFUSED: [route: string, param: string, body: Record<string, unknown>][] = [
  [CHAT, "audio", { audio: { voice: "alloy", format: "wav" } }],
  [CHAT, "modalities", { modalities: ["text", "audio"] }],
  [CHAT, "prediction", { prediction: { type: "content", content: "Hi" } }],
  [CHAT, "reasoning_effort", { reasoning_effort: "low" }],
  [CHAT, "verbosity", { verbosity: "high" }],
  [CHAT, "web_search_options", { web_search_options: {} }],
  [CHAT, "moderation", { moderation: { model: "omni" } }],
  [CHAT, "store", { store: true }],
  [CHAT, "metadata", { metadata: { team: "a" } }],
  [CHAT, "service_tier", { service_tier: "priority" }],
  [CHAT, "prompt_cache_retention", { prompt_cache_retention: "24h" }],
  [CHAT, "prompt_cache_options", { prompt_cache_options: { mode: "explicit" } }],
  [CHAT, "functions", { functions: [{ name: "f", parameters: {} }] }],
  [CHAT, "function_call", { function_call: "auto" }],
  [CHAT, "stream_options.include_obfuscation", {
    stream: true,
    stream_options: { include_obfuscation: true },
  }],
  [CHAT, "messages[0].name", { messages: [{ role: "user", content: "Hi", name: "bob" }] }],
  [CHAT, "messages[1].refusal", {
    messages: [...HI, { role: "assistant", content: null, refusal: "No." }, { role: "user", content: "Ok" }],
  }],
  [CHAT, "mirostat", { mirostat: 2 }],
  [CHAT, "tfs_z", { tfs_z: 0.9 }],
  [CHAT, "dynatemp_range", { dynatemp_range: 0.5 }],
  [CHAT, "xtc_probability", { xtc_probability: 0.5 }],
  [CHAT, "dry_multiplier", { dry_multiplier: 0.8 }],
  [CHAT, "top_n_sigma", { top_n_sigma: 1 }],
  [CHAT, "min_keep", { min_keep: 5 }],
  [CHAT, "samplers", { samplers: ["top_k", "temperature"] }],
  [CHAT, "n_probs", { n_probs: 3 }],
  [CHAT, "post_sampling_probs", { post_sampling_probs: true }],
  [CHAT, "return_tokens", { return_tokens: true }],
  [CHAT, "timings_per_token", { timings_per_token: true }],
  [CHAT, "response_fields", { response_fields: ["content"] }],
  [CHAT, "id_slot", { id_slot: 0 }],
  [CHAT, "n_keep", { n_keep: 10 }],
  [CHAT, "n_indent", { n_indent: 2 }],
  [CHAT, "t_max_predict_ms", { t_max_predict_ms: 100 }],
  [CHAT, "lora", { lora: [{ id: 0, scale: 1 }] }],
  [COMPLETIONS, "suffix", { suffix: " and so on." }],
  [COMPLETIONS, "mirostat", { mirostat: 1 }],
];

/** Every refused field at its "off" value, as clients that send all defaults do. */
const DEFAULTS = {
  audio: null,
  modalities: ["text"],
  prediction: null,
  reasoning_effort: null,
  store: false,
  metadata: {},
  service_tier: "auto",
  prompt_cache_retention: "in_memory",
  prompt_cache_options: { mode: "implicit", ttl: "30m" },
  prompt_cache_key: "conversation-1",
  safety_identifier: "user-1",
  functions: [],
  function_call: "none",
  stream_options: { include_usage: true, include_obfuscation: false },
  mirostat: 0,
  mirostat_tau: 5,
  mirostat_eta: 0.1,
  tfs_z: 1,
  dynatemp_range: 0,
  dynatemp_exponent: 1,
  xtc_probability: 0,
  xtc_threshold: 0.1,
  dry_multiplier: 0,
  dry_base: 1.75,
  dry_allowed_length: 2,
  dry_penalty_last_n: -1,
  dry_sequence_breakers: ["\n"],
  top_n_sigma: -1,
  min_keep: 0,
  n_probs: 0,
  id_slot: -1,
  n_keep: 0,
  t_max_predict_ms: 0,
  lora: [],
};

const eot = (h: Harness) => String(h.engine.stopTokens[0]);

suite("request fields", {}, [
  [
    "known fields that are not implemented are refused with 400 unsupported_parameter naming them",
    async (h) => {
      for (const [route, param, extra] of REFUSED) {
        const base = route === CHAT ? { messages: HI } : { prompt: "Hello" };
        const { status, body } = await h.json(route, { ...base, max_tokens: 2, ...extra });
        assertEquals(
          [status, body.error?.code, body.error?.param],
          [400, "unsupported_parameter", param],
          param,
        );
        assert(body.error.message.includes(`'${param}' is not supported`), body.error.message);
      }
    },
  ],
  ["their 'off' values are accepted, and an unknown vendor field is logged at debug", async (h) => {
    const { status, body } = await h.json(CHAT, {
      messages: [{ role: "user", content: "Hi", name: "" }],
      max_tokens: 2,
      ...DEFAULTS,
      my_vendor_flag: true,
    });
    assertEquals(status, 200, JSON.stringify(body));
    const line = h.logs.find((l) => l.msg === "unknown request fields ignored");
    assertEquals(line?.fields, ["my_vendor_flag"]);
    const req = h.logs.findLast((l) => l.msg === "request");
    assertEquals(req?.user, "user-1"); // safety_identifier is logged as the user
  }],
  ["ignore_eos runs to max_tokens where the end-of-turn token would have stopped at once", async (h) => {
    const bias = { [eot(h)]: 100 };
    const stops = await h.json(CHAT, { messages: HI, max_tokens: 6, temperature: 0, logit_bias: bias });
    assertEquals([stops.body.usage.completion_tokens, stops.body.choices[0].finish_reason], [0, "stop"]);
    const runs = await h.json(CHAT, {
      messages: HI,
      max_tokens: 6,
      temperature: 0,
      logit_bias: bias,
      ignore_eos: true,
    });
    assertEquals([runs.body.usage.completion_tokens, runs.body.choices[0].finish_reason], [6, "length"]);
  }],
  ["min_tokens holds the end-of-turn token back until that many tokens are generated", async (h) => {
    const bias = { [eot(h)]: 100 };
    const r = await h.json(CHAT, {
      messages: HI,
      max_tokens: 10,
      temperature: 0,
      logit_bias: bias,
      min_tokens: 3,
    });
    assertEquals([r.body.usage.completion_tokens, r.body.choices[0].finish_reason], [3, "stop"]);
    const bad = await h.json(CHAT, { messages: HI, max_tokens: 2, min_tokens: 3 });
    assertEquals([bad.status, bad.body.error.param], [400, "min_tokens"]);
  }],
  ["repeat_penalty is repetition_penalty, repeat_last_n its window, n_predict max_tokens", async (h) => {
    // a bias makes greedy repeat a prompt token, which the penalty then pushes down
    const repeated = h.engine.tokenizer.encode("the the the", { addBos: false }).at(-1)!;
    const ask = async (extra: Record<string, unknown>) =>
      (await h.json(COMPLETIONS, {
        prompt: "the the the",
        temperature: 0,
        max_tokens: 8,
        logit_bias: { [repeated]: 5 },
        ...extra,
      })).body as Json;
    const llama = await ask({ repeat_penalty: 10 });
    const openai = await ask({ repetition_penalty: 10 });
    assertEquals(llama.choices, openai.choices);
    assert(llama.choices[0].text !== (await ask({})).choices[0].text, "the penalty changed nothing");
    assertEquals((await ask({ repeat_penalty: 1.8, repeat_last_n: 0 })).choices, (await ask({})).choices);
    assertEquals((await ask({ repeat_penalty: 1.8, repetition_penalty: 1.1 })).error.param, "repeat_penalty");
    const predict = await h.json(COMPLETIONS, { prompt: "Hi", n_predict: 3, ignore_eos: true });
    assertEquals(predict.body.usage.completion_tokens, 3);
    assertEquals((await ask({ n_predict: 3 })).error.param, "n_predict"); // max_tokens 8 differs
  }],
  ["typical_p is validated and samples (typical_p 1 is off)", async (h) => {
    const ask = (extra: Record<string, unknown>) =>
      h.json(CHAT, { messages: HI, max_tokens: 8, temperature: 1, seed: 3, ...extra });
    assertEquals((await ask({ typical_p: 1 })).body.choices, (await ask({})).body.choices);
    assertEquals((await ask({ typical_p: 0.4 })).status, 200);
    assertEquals((await ask({ typical_p: 1.5 })).body.error.param, "typical_p");
  }],
  ["cache_prompt: false recomputes a prompt the cache holds", async (h) => {
    const body = { prompt: "The quick brown fox jumps over the lazy dog", max_tokens: 1 };
    await h.json(COMPLETIONS, body);
    const again = await h.json(COMPLETIONS, body);
    assert(again.body.usage.prompt_tokens_details.cached_tokens > 0);
    const fresh = await h.json(COMPLETIONS, { ...body, cache_prompt: false });
    assertEquals(fresh.body.usage.prompt_tokens_details.cached_tokens, 0);
  }],
  ["best_of returns the candidate with the highest log-probability per token, and bills all", async (h) => {
    const common = { prompt: "Once", max_tokens: 5, temperature: 1.5, seed: 11, ignore_eos: true };
    const all = (await h.json(COMPLETIONS, { ...common, n: 3, logprobs: 0 })).body;
    const mean = (c: Json) => c.logprobs.token_logprobs.reduce((a: number, b: number) => a + b, 0) / 5;
    const texts = all.choices.map((c: Json) => c.text);
    assert(new Set(texts).size > 1, "the candidates are all the same: the test would prove nothing");
    const best = all.choices.reduce((a: Json, b: Json) => (mean(b) > mean(a) ? b : a));
    const r = (await h.json(COMPLETIONS, { ...common, best_of: 3 })).body;
    assertEquals(r.choices.map((c: Json) => [c.index, c.text]), [[0, best.text]]);
    assertEquals(r.usage.completion_tokens, 15);
    const two = (await h.json(COMPLETIONS, { ...common, best_of: 3, n: 2 })).body;
    assertEquals(two.choices.length, 2);
    assertEquals((await h.json(COMPLETIONS, { ...common, best_of: 1, n: 2 })).body.error.param, "best_of");
    const stream = await h.json(COMPLETIONS, { ...common, best_of: 2, stream: true });
    assertEquals([stream.status, stream.body.error.param], [400, "best_of"]);
  }],
]);
