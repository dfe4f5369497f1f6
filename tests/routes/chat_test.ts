/**
 * POST /v1/chat/completions through `app.request()`: shapes (plain and streamed), n > 1, stop
 * strings, logprobs, validation, context overflow, the queue's 429, and cancellation.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { createApp } from "../../routes/app.ts";
import { Metrics } from "../../routes/metrics.ts";
import { type Harness, type Json, noStop, parseSse, sleep, streamedText, suite } from "./_harness.ts";

const CHAT = "/v1/chat/completions";
const HI = [{ role: "user", content: "Hello there" }];

/** The greedy reply to HI, and a two-letter stop string that first occurs at `at` (>= 3). */
async function stopCase(h: Harness) {
  const { body } = await h.json(CHAT, { messages: HI, max_tokens: 40, temperature: 0 });
  const text: string = body.choices[0].message.content;
  for (let at = 3; at < text.length - 2; at++) {
    const stop = text.slice(at, at + 2);
    if (/^[A-Za-z]{2}$/.test(stop) && text.indexOf(stop) === at) return { text, stop, at };
  }
  throw new Error(`no usable stop string in ${JSON.stringify(text)}`);
}

/** Starts a long streaming chat and returns its reader once the role chunk arrived. */
async function longStream(h: Harness) {
  const res = await h.post(CHAT, { messages: HI, max_tokens: 200, stream: true, logit_bias: noStop(h) });
  assertEquals(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read();
  return reader;
}

/** The value of one sample line of the exposition text (0 when absent). */
function value(text: string, sample: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}

const metric = (h: Harness, sample: string) => value(h.metrics.render(h.state), sample);

/** Waits until `n` slots are busy (admission happens on the scheduler's next turn). */
async function busy(h: Harness, n: number) {
  while (h.engine.stats().busySlots < n) await sleep(1);
}

suite("chat completions", {}, [
  ["POST /v1/chat/completions returns a chat.completion with usage and finish_reason", async (h) => {
    const res = await h.post(CHAT, { messages: HI, max_tokens: 8, temperature: 0 });
    assertEquals(res.status, 200);
    assert(res.headers.get("x-request-id"));
    const body = await res.json();
    assert(body.id.startsWith("chatcmpl-"));
    assertEquals(body.object, "chat.completion");
    assertEquals(body.model, h.engine.info.id);
    assertEquals(body.choices.length, 1);
    assertEquals(body.choices[0].message.role, "assistant");
    assertEquals(typeof body.choices[0].message.content, "string");
    assertEquals(body.choices[0].finish_reason, "length");
    assertEquals(body.choices[0].logprobs, null);
    const prompt = h.engine.encodeChat([{ role: "user", content: "Hello there" }]).length;
    assertEquals(body.usage.prompt_tokens, prompt);
    assertEquals(body.usage.completion_tokens, 8);
    assertEquals(body.usage.total_tokens, prompt + 8);
  }],

  ["POST /v1/chat/completions streams role, deltas, finish and [DONE]", async (h) => {
    const plain = await h.json(CHAT, { messages: HI, max_tokens: 24, temperature: 0 });
    const res = await h.post(CHAT, { messages: HI, max_tokens: 24, temperature: 0, stream: true });
    assertEquals(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const frames = parseSse(await res.text()) as Json[];
    assertEquals(frames.at(-1), "[DONE]");
    assertEquals(frames[0].object, "chat.completion.chunk");
    assertEquals(frames[0].choices[0].delta, { role: "assistant", content: "" });
    const finish = frames.at(-2);
    assertEquals(finish.choices[0].finish_reason, "length");
    assertEquals(finish.choices[0].delta, {});
    for (const f of frames.slice(1, -2)) {
      assertEquals(f.choices[0].finish_reason, null);
      assert(f.choices[0].delta.content.isWellFormed(), "a delta splits a character");
      assertEquals("usage" in f, false);
    }
    assertEquals(streamedText(frames)[0], plain.body.choices[0].message.content);
  }],

  ["stream_options.include_usage adds a usage chunk with choices: [] before [DONE]", async (h) => {
    const res = await h.post(CHAT, {
      messages: HI,
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
      logit_bias: noStop(h),
    });
    const frames = parseSse(await res.text()) as Json[];
    const usage = frames.at(-2);
    assertEquals(usage.choices, []);
    assertEquals(usage.usage.completion_tokens, 5);
    for (const f of frames.slice(0, -2)) assertEquals(f.usage, null);
    // llama-server's timings ride along, measured by the server.
    const t = usage.timings;
    assertEquals([t.predicted_n, t.prompt_n + t.cache_n], [5, usage.usage.prompt_tokens]);
    assertEquals(t.cache_n, usage.usage.prompt_tokens_details.cached_tokens);
    assert(
      t.ttft_ms > 0 && t.predicted_ms > 0 && t.queue_ms >= 0 && t.ttft_ms >= t.queue_ms,
      JSON.stringify(t),
    );
    assert(
      Math.abs(t.predicted_per_second - 4000 / t.predicted_ms) <= 0.05 * t.predicted_per_second,
      JSON.stringify(t),
    );
    for (const f of frames.slice(0, -2)) assertEquals("timings" in f, false);
  }],

  ["n > 1 returns n choices, seeded seed, seed+1, ...", async (h) => {
    const req = { messages: HI, max_tokens: 10, temperature: 1, seed: 7 };
    const { body } = await h.json(CHAT, { ...req, n: 2 });
    assertEquals(body.choices.map((c: Json) => c.index), [0, 1]);
    assertEquals(body.usage.completion_tokens, 20);
    const one = await h.json(CHAT, req), two = await h.json(CHAT, { ...req, seed: 8 });
    assertEquals(body.choices[0].message.content, one.body.choices[0].message.content);
    assertEquals(body.choices[1].message.content, two.body.choices[0].message.content);
  }],

  ["n > 1 streams a role and a finish chunk for every choice", async (h) => {
    const res = await h.post(CHAT, { messages: HI, max_tokens: 6, n: 2, stream: true, seed: 3 });
    const frames = (parseSse(await res.text()) as Json[]).slice(0, -1);
    for (const index of [0, 1]) {
      const mine = frames.filter((f) => f.choices[0].index === index);
      assertEquals(mine[0].choices[0].delta.role, "assistant");
      assertEquals(mine.filter((f) => f.choices[0].finish_reason).length, 1);
    }
    assert(frames.every((f) => f.choices.length === 1));
  }],

  ["stop strings end the text before the stop and never leak (plain and streamed)", async (h) => {
    const { text, stop, at } = await stopCase(h);
    const { body } = await h.json(CHAT, {
      messages: HI,
      max_tokens: 40,
      temperature: 0,
      stop: [stop, "\u0000never"],
    });
    assertEquals(body.choices[0].message.content, text.slice(0, at));
    assertEquals(body.choices[0].finish_reason, "stop");
    const res = await h.post(CHAT, { messages: HI, max_tokens: 40, temperature: 0, stop, stream: true });
    const frames = parseSse(await res.text()) as Json[];
    assertEquals(streamedText(frames)[0], text.slice(0, at));
    assertEquals(frames.at(-2).choices[0].finish_reason, "stop");
  }],

  ["logprobs with top_logprobs return OpenAI's chat shape", async (h) => {
    const { body } = await h.json(CHAT, {
      messages: HI,
      max_tokens: 6,
      temperature: 0,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = body.choices[0].logprobs.content;
    assertEquals(content.length, body.usage.completion_tokens);
    for (const e of content) {
      assertEquals(typeof e.token, "string");
      assert(e.logprob <= 0);
      assert(Array.isArray(e.bytes) && e.bytes.every((b: number) => b >= 0 && b < 256));
      assertEquals(e.top_logprobs.length, 3);
      assertEquals(e.top_logprobs[0].token, e.token); // greedy picks the most likely
      assert(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob);
    }
    const bytes = Uint8Array.from(content.flatMap((e: Json) => e.bytes));
    assertEquals(new TextDecoder().decode(bytes), body.choices[0].message.content);
  }],

  ["logprobs stream with the deltas", async (h) => {
    const res = await h.post(CHAT, {
      messages: HI,
      max_tokens: 6,
      logprobs: true,
      stream: true,
      logit_bias: noStop(h),
    });
    const frames = (parseSse(await res.text()) as Json[]).slice(1, -1);
    const entries = frames.flatMap((f) => f.choices[0].logprobs?.content ?? []);
    assertEquals(entries.length, 6);
    assert(entries.every((e: Json) => e.top_logprobs.length === 0));
  }],

  ["text content parts, the developer role and unknown fields are accepted", async (h) => {
    const parts = [{ type: "text", text: "Hello" }, { type: "text", text: " there" }];
    const a = await h.json(CHAT, {
      messages: [{ role: "developer", content: "Be brief." }, { role: "user", content: parts }],
      max_tokens: 1,
      tools: null,
      foo: { bar: 1 },
    });
    const b = await h.json(CHAT, {
      messages: [{ role: "system", content: "Be brief." }, ...HI],
      max_tokens: 1,
    });
    assertEquals(a.status, 200);
    assertEquals(a.body.usage.prompt_tokens, b.body.usage.prompt_tokens);
  }],

  ["wrong types and ranges are 400 naming the param", async (h) => {
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: "hi" }, "messages"],
      [{ messages: [] }, "messages"],
      [{ messages: [{ role: "function", content: "x" }] }, "messages[0].role"],
      [{ messages: [{ role: "tool", content: "x" }] }, "messages[0].tool_call_id"],
      [{ messages: [{ role: "user", content: 5 }] }, "messages[0].content"],
      [
        { messages: [{ role: "user", content: [{ type: "image_url", image_url: "x" }] }] },
        "messages[0].content",
      ],
      [{ messages: [{ role: "user" }] }, "messages[0].content"],
      [{ messages: HI, temperature: "hot" }, "temperature"],
      [{ messages: HI, temperature: 3 }, "temperature"],
      [{ messages: HI, top_p: 1.5 }, "top_p"],
      [{ messages: HI, max_tokens: -1 }, "max_tokens"],
      [{ messages: HI, max_tokens: 0 }, "max_tokens"],
      [{ messages: HI, max_tokens: 1e300 }, "max_tokens"],
      [{ messages: HI, n: 0 }, "n"],
      [{ messages: HI, n: 5 }, "n"],
      [{ messages: HI, seed: 1.5 }, "seed"],
      [{ messages: HI, stop: 5 }, "stop"],
      [{ messages: HI, logit_bias: { x: 1 } }, "logit_bias.x"],
      [{ messages: HI, logit_bias: { "99999": 1 } }, "logit_bias"],
      [{ messages: HI, logit_bias: { "5": 101 } }, "logit_bias.5"],
      [{ messages: HI, top_logprobs: 2 }, "top_logprobs"],
      [{ messages: HI, stream: "yes" }, "stream"],
    ];
    for (const [req, param] of cases) {
      const { status, body } = await h.json(CHAT, req);
      assertEquals(
        [status, body.error.param, body.error.type],
        [400, param, "invalid_request_error"],
        JSON.stringify(req),
      );
    }
  }],

  ["prompt + max_tokens over the context is 400 with the token counts", async (h) => {
    const { status, body } = await h.json(CHAT, { messages: HI, max_tokens: 1000 });
    assertEquals(status, 400);
    assertEquals(body.error.code, "context_length_exceeded");
    const prompt = h.engine.encodeChat([{ role: "user", content: "Hello there" }]).length;
    assert(body.error.message.includes(`${prompt} in the prompt + 1000 to generate`), body.error.message);
    assert(body.error.message.includes("256"));
    const long = await h.json(CHAT, { messages: [{ role: "user", content: "word ".repeat(400) }] });
    assertEquals([long.status, long.body.error.code], [400, "context_length_exceeded"]);
  }],

  ["a full queue answers 429 with Retry-After", async (h) => {
    const readers = [await longStream(h), await longStream(h)];
    await busy(h, 2);
    readers.push(await longStream(h), await longStream(h)); // queued
    try {
      assertEquals(h.engine.stats().queued, 2);
      const res = await h.post(CHAT, { messages: HI, max_tokens: 5 });
      assertEquals(res.status, 429);
      assert(Number(res.headers.get("retry-after")) >= 1);
      assertEquals((await res.json()).error.type, "rate_limit_error");
    } finally {
      for (const r of readers) await r.cancel();
    }
  }],

  ["n that does not fit the queue gets 429 and leaves nothing of it running", async (h) => {
    const readers = [await longStream(h), await longStream(h)];
    await busy(h, 2);
    try {
      const res = await h.post(CHAT, { messages: HI, max_tokens: 5, n: 3 });
      assertEquals(res.status, 429);
      await res.body?.cancel();
      // The two queued runs of the rejected request leave at the next step, never taking a slot.
      while (h.engine.stats().queued > 0) await sleep(1);
      const s = h.engine.stats();
      assertEquals([s.busySlots, s.queued], [2, 0]);
    } finally {
      for (const r of readers) await r.cancel();
    }
  }],

  ["cancelling the reader mid-stream frees the slot before the next decode step", async (h) => {
    const tokens0 = metric(h, "bn_generated_tokens_total");
    const cancelled0 = metric(h, 'bn_generations_total{reason="cancelled"}');
    const reader = await longStream(h);
    await reader.read();
    await reader.read();
    assertEquals(h.engine.stats().busySlots, 1);
    const before = h.engine.stats().generatedTokens;
    await reader.cancel();
    await h.idle(500);
    assert(h.engine.stats().generatedTokens - before <= 1, "tokens were generated after the cancel");
    await sleep(0);
    assertEquals(h.logs.at(-1)?.error, "client_closed");
    // The cancelled generation is counted, with the tokens it produced before the cancel.
    assertEquals(metric(h, 'bn_generations_total{reason="cancelled"}') - cancelled0, 1);
    assert(metric(h, "bn_generated_tokens_total") - tokens0 >= 2, "the streamed tokens are counted");
  }],

  ["a non-streaming request whose client goes away frees its slot", async (h) => {
    const ac = new AbortController();
    const body = JSON.stringify({ messages: HI, max_tokens: 200, logit_bias: noStop(h) });
    const pending = h.app.request(CHAT, { method: "POST", body, signal: ac.signal });
    while (h.engine.stats().busySlots === 0) await sleep(1);
    ac.abort();
    const res = await pending;
    assertEquals(res.status, 499);
    await res.body?.cancel();
    await h.idle(500);
  }],

  ["the request timeout ends generation with a clear error (plain and streamed)", async (h) => {
    const metrics = new Metrics();
    const app = createApp(h.state, { timeoutSeconds: 0.005, metrics });
    const body = JSON.stringify({ messages: HI, max_tokens: 200, logit_bias: noStop(h) });
    const res = await app.request(CHAT, { method: "POST", body });
    assertEquals(res.status, 504);
    const err = (await res.json()).error;
    assertEquals(err.code, "request_timeout");
    assert(err.message.includes("0.005 s"));
    await h.idle(500);
    const streamed = await app.request(CHAT, { method: "POST", body: body.replace("{", '{"stream":true,') });
    const frames = parseSse(await streamed.text()) as Json[];
    assertEquals(frames.at(-1), "[DONE]");
    assertEquals(frames.at(-2).error.code, "request_timeout");
    await h.idle(500);
    const text = metrics.render(h.state);
    assert(text.includes('bn_generations_total{reason="timeout"} 2'), text);
    const streamedTokens = frames.filter((f) => f !== "[DONE]" && f.choices?.[0]?.delta?.content).length;
    assert(value(text, "bn_generated_tokens_total") >= streamedTokens, "tokens of timed-out requests count");
  }],

  ["x-request-id from the client is echoed; a hostile one is replaced", async (h) => {
    const ok = await h.post(CHAT, { messages: HI, max_tokens: 1 }, { "x-request-id": "abc-123" });
    assertEquals(ok.headers.get("x-request-id"), "abc-123");
    assertEquals((await ok.json()).id, "chatcmpl-abc-123");
    const bad = await h.post(CHAT, { messages: HI, max_tokens: 1 }, { "x-request-id": "<script>" });
    assert(bad.headers.get("x-request-id")!.startsWith("req_"));
    await bad.body?.cancel();
  }],

  ["request logs carry counts and timings but never the prompt text", async (h) => {
    const { body } = await h.json(CHAT, {
      messages: [{ role: "user", content: "my secret passphrase" }],
      max_tokens: 3,
      logit_bias: noStop(h), // three tokens, so there is a first token to time
      user: "u-42",
    });
    const line = h.logs.at(-1)!;
    const expected = [CHAT, 200, body.usage.completion_tokens, body.choices[0].finish_reason, "u-42"];
    assertEquals([line.route, line.status, line.completion_tokens, line.finish_reason, line.user], expected);
    assertEquals(line.completion_tokens, 3);
    assert(typeof line.ttft_ms === "number" && typeof line.prompt_tokens === "number");
    assert(!JSON.stringify(h.logs).includes("secret"));
  }],
]);
