/**
 * playground/stats.js: the timing of one answer and its stats line, with given clock values.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { AnswerTimer, formatStats } from "../../playground/stats.js";

/** 11 tokens: the first 80 ms after the request, then one every 25 ms; the usage chunk. */
function finishedAnswer(): AnswerTimer {
  const t = new AnswerTimer(1000);
  for (let i = 0; i < 10; i++) t.delta(1080 + i * 25);
  t.usage = { prompt_tokens: 23, completion_tokens: 11, prompt_tokens_details: { cached_tokens: 12 } };
  t.finished("stop", 1080 + 250); // 10 tokens after the first in 250 ms (the last is end-of-turn)
  return t;
}

Deno.test("AnswerTimer: the server's tokens per second, the page's TTFT, the usage figures", () => {
  const t = finishedAnswer();
  t.timings = { predicted_per_second: 51.25, ttft_ms: 60, queue_ms: 0 };
  assertEquals(t.stats(), {
    ttftMs: 80,
    tokens: 11,
    exact: true,
    tokensPerSecond: 51.25,
    measured: true,
    promptTokens: 23,
    cachedTokens: 12,
    finish: "stop",
  });
  assertEquals(formatStats(t.stats()), "TTFT 80 ms · 51.3 tok/s · 11 tokens · prompt 23, 12 cached · stop");
});

Deno.test("AnswerTimer: without the server's timings the rate is the page's, over the tokens after the first", () => {
  const s = finishedAnswer().stats();
  assertEquals([s.tokensPerSecond, s.measured], [40, false]);
  assertEquals(formatStats(s), "TTFT 80 ms · ≈40.0 tok/s · 11 tokens · prompt 23, 12 cached · stop");
});

Deno.test("AnswerTimer: a stopped answer counts its text deltas and marks the figures approximate", () => {
  const t = new AnswerTimer(0);
  for (let i = 0; i < 5; i++) t.delta(100 + i * 50);
  t.finished("stopped", 400);
  const s = t.stats();
  assertEquals([s.tokens, s.exact, s.tokensPerSecond, s.promptTokens, s.cachedTokens], [
    5,
    false,
    20,
    null,
    null,
  ]);
  assertEquals(formatStats(s), "TTFT 100 ms · ≈20.0 tok/s · ≈5 tokens · stopped by you");
});

Deno.test("AnswerTimer: no text at all, or a single token, gives no rate", () => {
  const none = new AnswerTimer(0);
  none.usage = { prompt_tokens: 4, completion_tokens: 1 };
  none.timings = { predicted_per_second: 0 };
  none.finished("stop", 30);
  assertEquals(formatStats(none.stats()), "1 token · prompt 4, 0 cached · stop");
  const one = new AnswerTimer(0);
  one.delta(12);
  one.usage = { prompt_tokens: 4, completion_tokens: 1, prompt_tokens_details: {} };
  one.finished("length", 12);
  assertEquals(formatStats(one.stats()), "TTFT 12 ms · 1 token · prompt 4, 0 cached · length");
});
