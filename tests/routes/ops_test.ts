/**
 * Everything around generation through `app.request()`: health, readiness, metrics, models,
 * tokenize/detokenize, the error shape for 400/401/404/405/413, API keys, CORS, and a loading
 * server.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import OpenAI from "openai";
import { createApp } from "../../routes/app.ts";
import { createLogger } from "../../routes/log.ts";
import { ServerState } from "../../routes/state.ts";
import { type Json, noStop, suite } from "./_harness.ts";

const CHAT = "/v1/chat/completions";
const HI = [{ role: "user", content: "Hi" }];

function assertErrorShape(body: Json, status: number) {
  assertEquals(Object.keys(body), ["error"], `status ${status}`);
  assertEquals(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert(!/\/work\/|\.ts:\d|at \w+ \(/.test(body.error.message), `leaks internals: ${body.error.message}`);
}

suite("operations routes", {}, [
  ["GET /health is 200 and GET /ready reports the slots", async (h) => {
    const health = await h.app.request("/health");
    assertEquals([health.status, await health.json()], [200, { status: "ok" }]);
    const ready = await h.app.request("/ready");
    assertEquals(await ready.json(), { status: "ready", slots: 2, busy_slots: 0, queued: 0 });
    assertEquals((await h.app.request("/health", { method: "HEAD" })).status, 200);
  }],

  ["GET /v1/models lists the loaded model", async (h) => {
    const res = await h.app.request("/v1/models");
    const body = await res.json();
    assertEquals(body.object, "list");
    assertEquals(body.data[0].id, h.engine.info.id);
    assertEquals(body.data[0].object, "model");
    assertEquals(body.data[0].meta.n_ctx, 256);
  }],

  ["GET /metrics exposes request, token, latency, queue and error metrics", async (h) => {
    // end-of-turn banned: a first sampled <|eot_id|> would leave no first token to time
    await h.json(CHAT, { messages: HI, max_tokens: 3, logit_bias: noStop(h) });
    await h.post(CHAT, "{oops");
    const res = await h.app.request("/metrics");
    assert(res.headers.get("content-type")!.startsWith("text/plain; version=0.0.4"));
    const text = await res.text();
    for (
      const line of [
        'bn_http_requests_total{route="/v1/chat/completions",status="200"} ',
        'bn_http_requests_total{route="/v1/chat/completions",status="400"} 1',
        'bn_errors_total{type="invalid_request_error",code="invalid_json"} 1',
        "bn_time_to_first_token_seconds_count 1",
        'bn_time_to_first_token_seconds_bucket{le="+Inf"} 1',
        "bn_time_per_output_token_seconds_count ",
        "bn_queue_depth 0",
        "bn_slots_busy 0",
        "bn_slots 2",
        "bn_ready 1",
        "# TYPE bn_generated_tokens_total counter",
      ]
    ) assert(text.includes(line), `missing ${line}`);
    assert(/bn_prompt_tokens_total [1-9]/.test(text) && /bn_generated_tokens_total [1-9]/.test(text));
  }],

  ["POST /tokenize and /detokenize use llama-server's shapes", async (h) => {
    const tok = h.engine.tokenizer;
    const plain = await h.json("/tokenize", { content: "hi there" });
    assertEquals(plain.body.tokens, tok.encode("hi there", { addBos: false }));
    const bos = await h.json("/tokenize", { content: "hi", add_special: true });
    assertEquals(bos.body.tokens[0], tok.bosId);
    const special = await h.json("/tokenize", { content: "<|eot_id|>" });
    assertEquals(special.body.tokens, [tok.eotId]);
    const literal = await h.json("/tokenize", { content: "<|eot_id|>", parse_special: false });
    assert(literal.body.tokens.length > 1);
    const pieces = await h.json("/tokenize", { content: "hi there", with_pieces: true });
    assertEquals(pieces.body.tokens.map((t: Json) => t.piece).join(""), "hi there");
    assertEquals(pieces.body.tokens.map((t: Json) => t.id), plain.body.tokens);
    const back = await h.json("/detokenize", { tokens: plain.body.tokens });
    assertEquals(back.body, { content: "hi there" });
    assertEquals((await h.json("/detokenize", { tokens: [] })).body, { content: "" });
    const bad = await h.json("/detokenize", { tokens: [1, 100000] });
    assertEquals([bad.status, bad.body.error.param], [400, "tokens"]);
  }],

  ["/tokenize reports a partial UTF-8 piece as its bytes", async (h) => {
    const tok = h.engine.tokenizer;
    const ids = tok.encode("é", { addBos: false }); // synthetic vocab: one byte token each
    const { body } = await h.json("/tokenize", { content: "é", with_pieces: true });
    assertEquals(body.tokens.map((t: Json) => t.id), ids);
    assertEquals(body.tokens.map((t: Json) => t.piece), [[0xc3], [0xa9]]);
  }],

  ["malformed JSON, invalid UTF-8 and non-object bodies are 400 in the OpenAI error shape", async (h) => {
    const bodies: [BodyInit, string][] = [
      ["{bad", "invalid_json"],
      ["", "invalid_json"],
      [new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), "invalid_body"],
    ];
    for (const [body, code] of bodies) {
      const res = await h.app.request(CHAT, { method: "POST", body });
      const json = await res.json();
      assertEquals([res.status, json.error.code], [400, code]);
      assertErrorShape(json, 400);
    }
    for (const body of ["[]", "null", "42", '"x"']) {
      const { status, body: json } = await h.json(CHAT, body);
      assertEquals(status, 400);
      assertErrorShape(json, 400);
    }
  }],

  ["unknown routes are 404 and wrong methods 405 with Allow", async (h) => {
    const nf = await h.app.request("/v1/embeddings", { method: "POST" });
    assertEquals(nf.status, 404);
    assertErrorShape(await nf.json(), 404);
    const na = await h.app.request(CHAT);
    assertEquals([na.status, na.headers.get("allow")], [405, "POST"]);
    assertErrorShape(await na.json(), 405);
    const put = await h.app.request("/metrics", { method: "PUT" });
    assertEquals([put.status, put.headers.get("allow")], [405, "GET, HEAD"]);
    await put.body?.cancel();
  }],

  ["bodies over the limit are 413, declared or streamed", async (h) => {
    const app = createApp(h.state, { maxBodyBytes: 1024 });
    const big = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(2000) }] });
    const declared = await app.request(CHAT, { method: "POST", body: big });
    assertEquals(declared.status, 413);
    assertErrorShape(await declared.json(), 413);
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    const chunked = await app.request(CHAT, { method: "POST", body: stream, duplex: "half" } as RequestInit);
    assertEquals(chunked.status, 413);
    await chunked.body?.cancel();
    const ok = await app.request(CHAT, {
      method: "POST",
      body: JSON.stringify({ messages: HI, max_tokens: 1 }),
    });
    assertEquals(ok.status, 200);
    await ok.body?.cancel();
  }],

  ["API keys: 401 without or with a wrong key; /health open; /ready and /metrics configurable", async (h) => {
    const app = createApp(h.state, { apiKeys: ["sk-one", "sk-two"], authMetrics: true });
    const body = JSON.stringify({ messages: HI, max_tokens: 1 });
    const post = (auth?: string) =>
      app.request(CHAT, { method: "POST", body, headers: auth ? { Authorization: auth } : {} });
    for (const auth of [undefined, "Bearer sk-wrong", "Bearer sk-one2", "Basic sk-one", "Bearer "]) {
      const res = await post(auth);
      assertEquals(res.status, 401, String(auth));
      assertEquals(res.headers.get("www-authenticate"), 'Bearer realm="api"');
      const json = await res.json();
      assertEquals(json.error.code, "invalid_api_key");
      assertErrorShape(json, 401);
    }
    for (const auth of ["Bearer sk-one", "bearer sk-two"]) {
      const res = await post(auth);
      assertEquals(res.status, 200, auth);
      await res.body?.cancel();
    }
    assertEquals((await app.request("/health")).status, 200);
    assertEquals((await app.request("/ready")).status, 200);
    assertEquals((await app.request("/metrics")).status, 401);
    assertEquals((await app.request("/v1/models")).status, 401);
    const strict = createApp(h.state, { apiKeys: ["k"], authReady: true });
    assertEquals((await strict.request("/ready")).status, 401);
    assertEquals((await strict.request("/metrics")).status, 200);
  }],

  ["CORS is off by default and answers only configured origins", async (h) => {
    const origin = { Origin: "https://app.example" };
    const off = await h.app.request("/v1/models", { headers: origin });
    assertEquals(off.headers.get("access-control-allow-origin"), null);
    await off.body?.cancel();
    const app = createApp(h.state, { corsOrigins: ["https://app.example"], apiKeys: ["k"] });
    const preflight = await app.request(CHAT, {
      method: "OPTIONS",
      headers: {
        ...origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
      },
    });
    assertEquals(preflight.status, 204);
    assertEquals(preflight.headers.get("access-control-allow-origin"), "https://app.example");
    const other = await app.request("/health", { headers: { Origin: "https://evil.example" } });
    assertEquals(other.headers.get("access-control-allow-origin"), null);
    await other.body?.cancel();
    const denied = await app.request("/v1/models", { headers: origin });
    assertEquals(denied.status, 401);
    assertEquals(denied.headers.get("access-control-allow-origin"), "https://app.example");
    await denied.body?.cancel();
  }],

  [
    "CORS preflights allow the headers they ask for: the official openai client's work from a browser",
    async (h) => {
      // The headers the openai client really sends, captured from its fetch.
      const sent = new Set<string>();
      const client = new OpenAI({
        baseURL: "https://api.example/v1",
        apiKey: "k",
        maxRetries: 0,
        dangerouslyAllowBrowser: true,
        fetch: (_url: string | URL | Request, init?: RequestInit) => {
          for (const k of new Headers(init?.headers).keys()) sent.add(k);
          return Promise.resolve(Response.json({ object: "list", data: [] }));
        },
      });
      await client.models.list();
      const custom = [...sent].filter((k) => !["accept", "content-type", "user-agent"].includes(k)).sort();
      assert(
        custom.includes("authorization") && custom.some((k) => k.startsWith("x-stainless-")),
        custom.join(),
      );
      const app = createApp(h.state, { corsOrigins: ["https://app.example"] });
      const preflight = await app.request(CHAT, {
        method: "OPTIONS",
        headers: {
          Origin: "https://app.example",
          "Access-Control-Request-Method": "POST",
          "Access-Control-Request-Headers": custom.join(","),
        },
      });
      assertEquals(preflight.status, 204);
      const allowed = preflight.headers.get("access-control-allow-headers")!.split(",").map((k) => k.trim());
      assertEquals(allowed, custom);
      assert(preflight.headers.get("vary")!.includes("Access-Control-Request-Headers"));
    },
  ],

  ["while loading, /ready and model routes are 503 with Retry-After and /health is 200", async () => {
    const logs: { level: string; route: string; status: number }[] = [];
    const app = createApp(new ServerState(), { log: createLogger("info", (l) => logs.push(JSON.parse(l))) });
    assertEquals((await app.request("/health")).status, 200);
    const ready = await app.request("/ready");
    assertEquals([ready.status, ready.headers.get("retry-after")], [503, "5"]);
    assertEquals((await ready.json()).status, "loading");
    const res = await app.request(CHAT, { method: "POST", body: JSON.stringify({ messages: HI }) });
    assertEquals([res.status, res.headers.get("retry-after")], [503, "5"]);
    assertEquals((await res.json()).error.code, "loading");
    assertEquals((await app.request("/metrics")).status, 200);
    await new Promise((r) => setTimeout(r, 0)); // log lines are written when responses end
    // A probe's 503 while loading is the expected answer, not an error; a turned-away request a warning.
    assertEquals(logs.map((l) => [l.route, l.status, l.level]), [
      ["/health", 200, "info"],
      ["/ready", 503, "info"],
      [CHAT, 503, "warn"],
      ["/metrics", 200, "info"],
    ]);
  }],
]);
