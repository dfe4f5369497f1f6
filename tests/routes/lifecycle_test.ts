/**
 * Graceful shutdown through `ServerState.shutdown()` (what SIGTERM calls): /ready turns 503, new
 * work gets 503, in-flight streams finish within the grace period or end with an in-band error.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { harness, type Json, noStop, parseSse } from "./_harness.ts";

const CHAT = "/v1/chat/completions";
const HI = [{ role: "user", content: "Hi" }];

Deno.test("shutdown turns /ready to 503, refuses new requests and lets in-flight streams finish", async () => {
  const h = await harness();
  try {
    const res = await h.post(CHAT, { messages: HI, max_tokens: 60, stream: true, logit_bias: noStop(h) });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = (await reader.read()).value!;
    const stopped = h.state.shutdown(10_000);
    const ready = await h.app.request("/ready");
    assertEquals([ready.status, (await ready.json()).status], [503, "draining"]);
    const late = await h.json(CHAT, { messages: HI, max_tokens: 1 });
    assertEquals([late.status, late.body.error.code, late.headers.get("retry-after")], [
      503,
      "shutting_down",
      "5",
    ]);
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
    const frames = parseSse(text) as Json[];
    assertEquals(frames.at(-1), "[DONE]");
    assertEquals(frames.at(-2).choices[0].finish_reason, "length");
    assert(frames.every((f) => f === "[DONE]" || !("error" in f)));
    await stopped;
    assertEquals(h.state.phase, "closed");
  } finally {
    await h.close();
  }
});

Deno.test("streams still running when the grace period ends get an in-band error, then [DONE]", async () => {
  const h = await harness();
  try {
    const res = await h.post(CHAT, { messages: HI, max_tokens: 200, stream: true, logit_bias: noStop(h) });
    const stopped = h.state.shutdown(5);
    const frames = parseSse(await res.text()) as Json[];
    await stopped;
    assertEquals(frames.at(-1), "[DONE]");
    const err = frames.at(-2).error;
    assertEquals([err.type, err.code], ["service_unavailable", "shutting_down"]);
    assertEquals(h.state.inflight, 0);
    assert(h.metrics.render(h.state).includes('bn_generations_total{reason="shutdown"} 1'));
  } finally {
    await h.close();
  }
});
