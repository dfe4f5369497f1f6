/**
 * POST /v1/completions through `app.request()`: text and token-id prompts, echo + logprobs (the
 * perplexity path), several prompts, streaming, validation.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type Json, noStop, parseSse, streamedText, suite } from "./_harness.ts";

const COMPLETIONS = "/v1/completions";

suite("completions", {}, [
  ["POST /v1/completions returns a text_completion with usage and finish_reason", async (h) => {
    const { status, body } = await h.json(COMPLETIONS, {
      prompt: "Once upon",
      max_tokens: 5,
      temperature: 0,
    });
    assertEquals(status, 200);
    assert(body.id.startsWith("cmpl-"));
    assertEquals(body.object, "text_completion");
    assertEquals(typeof body.choices[0].text, "string");
    assertEquals(body.choices[0].logprobs, null);
    assert(["stop", "length"].includes(body.choices[0].finish_reason));
    const prompt = h.engine.tokenizer.encode("Once upon", { parseSpecial: true }).length;
    assertEquals(body.usage.prompt_tokens, prompt);
    assertEquals(body.usage.total_tokens, prompt + body.usage.completion_tokens);
  }],

  ["a text prompt gets the model's BOS and special-token parsing", async (h) => {
    const tok = h.engine.tokenizer;
    const text = "a<|eot_id|>b";
    const ids = tok.encode(text, { parseSpecial: true });
    assertEquals(ids[0], tok.bosId);
    const { body } = await h.json(COMPLETIONS, { prompt: text, max_tokens: 1 });
    assertEquals(body.usage.prompt_tokens, ids.length);
    assert(ids.length < tok.encode(text, { parseSpecial: false }).length);
  }],

  ["a token-id prompt is used as given, without a second BOS", async (h) => {
    const bos = h.engine.tokenizer.bosId;
    for (const prompt of [[5, 6, 7], [bos, 5, 6]]) {
      const { body } = await h.json(COMPLETIONS, { prompt, max_tokens: 1 });
      assertEquals(body.usage.prompt_tokens, 3);
    }
  }],

  ["token ids outside the vocabulary or not integers are 400 naming prompt", async (h) => {
    const cases: [unknown, string][] = [
      [[1, 99999], "prompt"],
      [[[1], [2, 99999]], "prompt[1]"],
      [[-1], "prompt"],
      [[1.5], "prompt"],
      [[], "prompt"],
      [5, "prompt"],
      [[["a"]], "prompt"],
    ];
    for (const [prompt, param] of cases) {
      const { status, body } = await h.json(COMPLETIONS, { prompt, max_tokens: 1 });
      assertEquals(status, 400);
      assert(body.error.param.startsWith(param), `${JSON.stringify(prompt)}: ${body.error.param}`);
    }
  }],

  ["POST /v1/completions streams text chunks, a finish chunk, usage and [DONE]", async (h) => {
    const req = { prompt: "Once upon", max_tokens: 12, temperature: 0 };
    const plain = await h.json(COMPLETIONS, req);
    const res = await h.post(COMPLETIONS, { ...req, stream: true, stream_options: { include_usage: true } });
    const frames = parseSse(await res.text()) as Json[];
    assertEquals(frames.at(-1), "[DONE]");
    const usage = frames.at(-2);
    assertEquals(usage.choices, []);
    assertEquals(usage.usage.completion_tokens, plain.body.usage.completion_tokens);
    assertEquals(usage.usage.prompt_tokens, plain.body.usage.prompt_tokens);
    assert(usage.usage.prompt_tokens_details.cached_tokens > 0); // the same prompt again
    assertEquals(usage.timings.cache_n, usage.usage.prompt_tokens_details.cached_tokens);
    assertEquals(usage.timings.predicted_n, plain.body.usage.completion_tokens);
    const finish = frames.at(-3);
    assertEquals([finish.choices[0].text, finish.choices[0].finish_reason], [
      "",
      plain.body.choices[0].finish_reason,
    ]);
    assert(frames.slice(0, -2).every((f) => f.object === "text_completion" && f.usage === null));
    assertEquals(streamedText(frames, "text")[0], plain.body.choices[0].text);
  }],

  ["echo + logprobs with max_tokens 0 returns every prompt token's logprob (perplexity)", async (h) => {
    const prompt = [300, 17, 42, 99, 5, 123, 77];
    const { body } = await h.json(COMPLETIONS, { prompt, max_tokens: 0, echo: true, logprobs: 2 });
    const choice = body.choices[0];
    assertEquals(choice.text, h.engine.tokenizer.decode(prompt));
    assertEquals(choice.finish_reason, "length");
    assertEquals(body.usage.completion_tokens, 0);
    const lp = choice.logprobs;
    assertEquals(lp.tokens.length, prompt.length);
    assertEquals(lp.token_logprobs[0], null);
    assertEquals(lp.top_logprobs[0], null);
    for (let i = 1; i < prompt.length; i++) {
      assert(typeof lp.token_logprobs[i] === "number" && lp.token_logprobs[i] <= 0, `token ${i}`);
      assert(Object.keys(lp.top_logprobs[i]).length >= 1);
    }
    assertEquals(lp.text_offset[0], 0);
    assert(lp.text_offset.every((o: number, i: number) => i === 0 || o >= lp.text_offset[i - 1]));
  }],

  ["echo logprobs are complete even when the prompt's prefix is cached", async (h) => {
    const req = { prompt: "The cat sat", max_tokens: 0, echo: true, logprobs: 0 };
    await h.json(COMPLETIONS, req);
    const { body } = await h.json(COMPLETIONS, req);
    const lp = body.choices[0].logprobs.token_logprobs;
    assertEquals(lp[0], null);
    assert(lp.slice(1).every((x: unknown) => typeof x === "number"), JSON.stringify(lp));
  }],

  ["logprobs N returns the completions shape for generated tokens", async (h) => {
    const { body } = await h.json(COMPLETIONS, {
      prompt: "Hi",
      max_tokens: 6,
      logprobs: 3,
      logit_bias: noStop(h),
    });
    const lp = body.choices[0].logprobs;
    for (const k of ["tokens", "token_logprobs", "top_logprobs", "text_offset"]) {
      assertEquals(lp[k].length, 6, k);
    }
    assert(
      lp.top_logprobs.every((t: Record<string, number>) =>
        Object.keys(t).length >= 1 && Object.keys(t).length <= 3
      ),
    );
    assert(lp.token_logprobs.every((x: number) => x <= 0));
  }],

  ["echo without logprobs prepends the prompt (plain and streamed)", async (h) => {
    const req = { prompt: "Once upon", max_tokens: 4, temperature: 0, echo: true };
    const { body } = await h.json(COMPLETIONS, req);
    assert(body.choices[0].text.startsWith("Once upon"));
    const res = await h.post(COMPLETIONS, { ...req, stream: true });
    const frames = parseSse(await res.text()) as Json[];
    assertEquals(frames[0].choices[0].text, "Once upon");
    assertEquals(streamedText(frames, "text")[0], body.choices[0].text);
  }],

  ["an array of prompts gives n choices per prompt with usage over both", async (h) => {
    const tok = h.engine.tokenizer;
    const { body } = await h.json(COMPLETIONS, {
      prompt: ["one", "two words"],
      n: 2,
      max_tokens: 2,
      seed: 1,
    });
    assertEquals(body.choices.map((c: Json) => c.index), [0, 1, 2, 3]);
    const expected = ["one", "two words"].map((p) => tok.encode(p).length).reduce((a, b) => a + b);
    assertEquals(body.usage.prompt_tokens, expected);
  }],

  ["the same seed gives the same text", async (h) => {
    const req = { prompt: "Once upon", max_tokens: 8, temperature: 1, top_k: 40, top_p: 0.9, seed: 1234 };
    const a = await h.json(COMPLETIONS, req), b = await h.json(COMPLETIONS, req);
    assertEquals(a.body.choices[0].text, b.body.choices[0].text);
  }],

  ["sampling fields pass validation at their bounds", async (h) => {
    const req = {
      prompt: "x",
      max_tokens: 1,
      temperature: 2,
      top_p: 0,
      top_k: -1,
      min_p: 1,
      presence_penalty: -2,
      frequency_penalty: 2,
      repetition_penalty: 10,
      seed: -5,
      stop: [],
      logit_bias: { "0": -100, "5": 100 },
      user: "u",
      model: "anything",
      suffix: null,
      best_of: 1,
    };
    assertEquals((await h.json(COMPLETIONS, req)).status, 200);
    const nulls = {
      prompt: "x",
      max_tokens: null,
      temperature: null,
      stop: null,
      logprobs: null,
      n: null,
      stream: null,
    };
    assertEquals((await h.json(COMPLETIONS, { ...nulls, max_tokens: 1 })).status, 200);
  }],
]);
