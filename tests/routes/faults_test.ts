/**
 * Requests that once wedged the server for good (every token banned; a repetition penalty that
 * pushes logits to infinity), sent to a real server process: each is answered (400, or an in-band
 * error event on a stream that already started), `/health` answers within 1 s right after, and a
 * stream running alongside finishes normally.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { tinyModel } from "../_models.ts";
import { running } from "../_serve.ts";
import { type Json, parseSse } from "./_harness.ts";

const VOCAB = 512; // the tiny synthetic model's
const ALL_BANNED = Object.fromEntries(Array.from({ length: VOCAB }, (_, i) => [String(i), -100]));
const PENALTY = {
  prompt: "the the the the",
  repetition_penalty: 1e-300,
  temperature: 1,
  top_p: 0.9,
  max_tokens: 5,
  seed: 1,
};

Deno.test("requests that make sampling impossible are answered and leave /health responsive", async (t) => {
  const server = await running([
    "--model",
    await tinyModel(),
    "--port",
    "0",
    "--threads",
    "2",
    "--slots",
    "2",
  ]);
  const post = (path: string, body: unknown) =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" },
      signal: AbortSignal.timeout(10_000),
    });
  const healthy = async () => {
    const t0 = performance.now();
    const res = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(1000) });
    assertEquals([res.status, (await res.json()).status], [200, "ok"]);
    assert(performance.now() - t0 < 1000);
  };
  try {
    // a long stream runs through every case below and must end normally (bytes only: no stop token)
    const alongside = post("/v1/completions", {
      prompt: "a",
      max_tokens: 200,
      stream: true,
      logit_bias: Object.fromEntries(Array.from({ length: VOCAB - 256 }, (_, i) => [String(256 + i), -100])),
    });

    await t.step("every token banned on /v1/completions: 400 naming logit_bias", async () => {
      const res = await post("/v1/completions", {
        prompt: "hi",
        max_tokens: 1,
        temperature: 0,
        logit_bias: ALL_BANNED,
      });
      const body = await res.json();
      assertEquals([res.status, body.error.param, body.error.code], [
        400,
        "logit_bias",
        "sampling_impossible",
      ]);
      assert(/bans every token/.test(body.error.message), body.error.message);
      await healthy();
    });

    await t.step("every token banned on a streamed chat: 400 before the stream starts", async () => {
      const res = await post("/v1/chat/completions", {
        messages: [{ role: "user", content: "hi" }],
        stream: true,
        logit_bias: ALL_BANNED,
      });
      assertEquals([res.status, (await res.json()).error.code], [400, "sampling_impossible"]);
      await healthy();
    });

    await t.step("repetition_penalty 1e-300: 400 naming repetition_penalty", async () => {
      const res = await post("/v1/completions", PENALTY);
      const body = await res.json();
      assertEquals([res.status, body.error.param, body.error.code], [
        400,
        "repetition_penalty",
        "sampling_impossible",
      ]);
      assert(/repetitionPenalty 1e-300 pushes the logit of token \d+/.test(body.error.message));
      await healthy();
    });

    await t.step("repetition_penalty 1e-300 streamed: an in-band error event, then [DONE]", async () => {
      const res = await post("/v1/completions", { ...PENALTY, stream: true });
      assertEquals(res.status, 200);
      const frames = parseSse(await res.text()) as Json[];
      assertEquals(frames.at(-1), "[DONE]");
      assertEquals([frames.at(-2).error.code, frames.at(-2).error.param], [
        "sampling_impossible",
        "repetition_penalty",
      ]);
      await healthy();
    });

    await t.step("the stream running alongside ends normally, and new requests are served", async () => {
      const frames = parseSse(await (await alongside).text()) as Json[];
      assertEquals(frames.at(-1), "[DONE]");
      assertEquals(frames.at(-2).choices[0].finish_reason, "length");
      const res = await post("/v1/completions", { prompt: "hi", max_tokens: 3, temperature: 0 });
      assertEquals([res.status, (await res.json()).usage.completion_tokens], [200, 3]);
    });
  } finally {
    await server.stop();
  }
});
