/**
 * A few thousand malformed or hostile requests (bad JSON, invalid UTF-8, wrong types, huge
 * numbers, empty and over-long prompts, odd paths, streams cancelled at random), then: no 5xx,
 * every error in the OpenAI shape without internals, no slot held, and a normal request works.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { harness, type Json } from "./_harness.ts";

const REQUESTS = 3000;
const CONCURRENCY = 6;

/** mulberry32: a small seeded PRNG so a failure can be replayed. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1,
  2,
  1.5,
  -0.5,
  1e308,
  -1e308,
  2 ** 53,
  2 ** 31,
  NaN,
  "",
  "x",
  "\u0000",
  "😀",
  "\ud800",
  "<|eot_id|>",
  "a".repeat(5000),
  [],
  {},
  [1, 2],
  [[]],
  { a: 1 },
  [{ role: "user" }],
  ["x"],
  { type: "text", text: "t" },
  "stop",
  -100,
  100,
  101,
  20,
  21,
  128,
  129,
];

const FIELDS = [
  "messages",
  "prompt",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "top_k",
  "min_p",
  "presence_penalty",
  "frequency_penalty",
  "repetition_penalty",
  "seed",
  "stop",
  "logit_bias",
  "logprobs",
  "top_logprobs",
  "echo",
  "n",
  "stream",
  "stream_options",
  "user",
  "model",
  "__proto__",
  "constructor",
];

const PATHS = [
  "/v1/chat/completions",
  "/v1/completions",
  "/tokenize",
  "/detokenize",
  "/v1/models",
  "/health",
  "/ready",
  "/metrics",
  "/v1/../etc/passwd",
  "/%00",
  "/v1/chat/completions/",
  "//v1/completions",
  "/v2/x",
];
const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

function makeRequest(rand: () => number): { path: string; init: RequestInit } {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  const chat = rand() < 0.5;
  const path = chat ? "/v1/chat/completions" : "/v1/completions";
  const base: Record<string, unknown> = chat
    ? { messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }
    : { prompt: "Hi", max_tokens: 2 };
  const post = (body: BodyInit) => ({ path, init: { method: "POST", body } });
  const kind = rand();
  if (kind < 0.1) {
    return post(Uint8Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)));
  }
  if (kind < 0.2) {
    const s = JSON.stringify({ ...base, stream: rand() < 0.5 });
    return post(s.slice(0, Math.floor(rand() * s.length)));
  }
  if (kind < 0.5) {
    const body: Record<string, unknown> = { ...base };
    for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) body[pick(FIELDS)] = pick(VALUES);
    return post(JSON.stringify(body));
  }
  if (kind < 0.6) {
    const m = [{ role: pick(["user", "system", "assistant", "tool", "", 5]), content: pick(VALUES) }];
    return post(JSON.stringify({ ...base, messages: rand() < 0.3 ? [] : m }));
  }
  if (kind < 0.7) {
    const n = Math.floor(rand() * 3000);
    const prompt = rand() < 0.5
      ? Array.from({ length: n }, () => Math.floor(rand() * 600))
      : "word ".repeat(n);
    return post(
      JSON.stringify(chat ? { messages: [{ role: "user", content: String(prompt) }] } : { prompt }),
    );
  }
  if (kind < 0.72) return post("[".repeat(30_000) + "]".repeat(30_000));
  if (kind < 0.75) {
    const hostile =
      `{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},"logit_bias":{"__proto__":5}`;
    return post(hostile + JSON.stringify(base).replace("{", ","));
  }
  if (kind < 0.8) return { path: pick(PATHS), init: { method: pick(METHODS) } };
  if (kind < 0.85) {
    return {
      path: pick(["/tokenize", "/detokenize"]),
      init: { method: "POST", body: JSON.stringify({ content: pick(VALUES), tokens: pick(VALUES) }) },
    };
  }
  // A valid request, sometimes streamed (and then read fully or cancelled at a random point).
  return post(
    JSON.stringify({
      ...base,
      stream: rand() < 0.5,
      n: 1 + Math.floor(rand() * 2),
      seed: Math.floor(rand() * 100),
    }),
  );
}

async function check(res: Response, method: string, rand: () => number): Promise<number> {
  assert(res.status < 500, `status ${res.status}`);
  if (res.status >= 400) {
    const text = await res.text();
    if (method !== "HEAD") {
      const body: Json = JSON.parse(text);
      assertEquals(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
      assert(!/\/work\/|\.ts:\d|\n\s+at /.test(text), `leaks internals: ${text.slice(0, 200)}`);
    }
    return res.status;
  }
  if (res.headers.get("content-type")?.startsWith("text/event-stream")) {
    const reader = res.body!.getReader();
    const stopAt = rand() < 0.5 ? Math.floor(rand() * 4) : Infinity;
    let text = "";
    for (let i = 0;; i++) {
      if (i === stopAt) {
        await reader.cancel();
        return res.status;
      }
      const r = await reader.read();
      if (r.done) break;
      text += new TextDecoder().decode(r.value);
    }
    assert(text.endsWith("data: [DONE]\n\n"), text.slice(-200));
  } else await res.body?.cancel();
  return res.status;
}

Deno.test("the server survives thousands of malformed and hostile requests with no slot held", async () => {
  const h = await harness({ app: { maxBodyBytes: 64 * 1024 } });
  try {
    const rand = prng(20261124);
    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        next++;
        const { path, init } = makeRequest(rand);
        const status = await check(await h.app.request(path, init), init.method!, rand);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    assert((statuses.get(400) ?? 0) > REQUESTS / 4, JSON.stringify([...statuses]));
    assert((statuses.get(200) ?? 0) > 30, JSON.stringify([...statuses]));
    await h.idle(2000);
    const s = h.engine.stats();
    assertEquals([s.busySlots, s.queued, h.state.inflight], [0, 0, 0]);
    const ok = await h.json("/v1/chat/completions", {
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 2,
    });
    assertEquals(ok.status, 200);
    const metrics = await (await h.app.request("/metrics")).text();
    assert(!/status="5\d\d"/.test(metrics), "a 5xx was counted");
    assertEquals(({} as Record<string, unknown>).polluted, undefined);
  } finally {
    await h.close();
  }
});
