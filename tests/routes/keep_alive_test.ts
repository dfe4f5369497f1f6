/**
 * SSE keep-alive comments over real sockets: the official openai client reads through them, and
 * nginx with `proxy_read_timeout 5s` keeps a stream whose prefill takes longer than that (and cuts
 * the same stream where its timeout is shorter than the keep-alive interval: the control).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import OpenAI from "openai";
import { Engine } from "../../engine/run/engine.ts";
import { createApp } from "../../routes/app.ts";
import { ServerState } from "../../routes/state.ts";
import { listenLoopback } from "./_harness.ts";
import { findNginx, freePort, Nginx, NGINX_TEMPLATE } from "../../scripts/deploy/cluster.ts";
import { tinyModel } from "../_models.ts";

/** The app on the server's own HTTP/1.1 server; `close()` stops both. */
function listen(engine: Engine, keepAliveSeconds: number) {
  const state = new ServerState(engine);
  const app = createApp(state, { keepAliveSeconds });
  const server = listenLoopback(app.fetch);
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    async close() {
      await state.shutdown(1000);
      await server.shutdown();
    },
  };
}

const noStop = (engine: Engine) => Object.fromEntries(engine.stopTokens.map((id) => [String(id), -100]));

Deno.test("a stream waiting in the queue sends ': keep-alive' comments, and the openai client reads through them", async () => {
  const engine = await Engine.load(await tinyModel(), { threads: 2, nCtx: 256, nSlots: 1 });
  const srv = listen(engine, 0.02);
  try {
    // one slot, busy with a long generation: the next request waits in the queue
    const long = await fetch(`${srv.url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Hello", max_tokens: 200, stream: true, logit_bias: noStop(engine) }),
    });
    const longBody = long.text();
    const raw = await fetch(`${srv.url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Hi", max_tokens: 3, stream: true, logit_bias: noStop(engine) }),
    });
    const text = await raw.text();
    assert(text.includes(": keep-alive\n\n"), "no keep-alive comment while queued");
    assert(text.endsWith("data: [DONE]\n\n"));
    assert((await longBody).endsWith("data: [DONE]\n\n"));

    // the same wait, read by the official client
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const busy = fetch(`${srv.url}/v1/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Hello", max_tokens: 200, stream: true, logit_bias: noStop(engine) }),
    }).then((r) => r.text());
    const stream = await client.chat.completions.create({
      model: "any",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 4,
      stream: true,
      logit_bias: noStop(engine),
    });
    let content = "", finish: string | null = null;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assertEquals(finish, "length");
    assert(content.length > 0);
    await busy;
  } finally {
    await srv.close();
  }
});

Deno.test({
  name: "nginx with proxy_read_timeout 5s keeps a stream whose prefill takes longer, thanks to keep-alives",
  ignore: findNginx() === null,
  async fn() {
    // big enough that a few thousand prompt tokens take seconds on one thread
    const model = await tinyModel({ dim: 1024, heads: 8, kvHeads: 2, ffn: 2816, layers: 12, ctx: 4096 });
    const engine = await Engine.load(model, { threads: 1, nCtx: 4096, nSlots: 1, cacheMemBytes: 0 });
    const srv = listen(engine, 2);
    const dir = await Deno.makeTempDir({ prefix: "bn-keepalive-" });
    const cut = `    location /cut/ {
        proxy_pass http://bitnet_server/;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_read_timeout 1s;
        proxy_next_upstream off;
    }

    location / {`;
    const template = Deno.readTextFileSync(NGINX_TEMPLATE)
      .replace("proxy_read_timeout 3600s;", "proxy_read_timeout 5s;")
      .replace("    location / {", cut);
    assert(template.includes("proxy_read_timeout 5s;") && template.includes("location /cut/"));
    const nginx = new Nginx(dir, freePort(), [srv.port], template);
    try {
      await nginx.start(findNginx()!);
      // calibrate (after a warm-up: the first steps run before the kernels are optimized): a
      // prompt whose prefill takes about 8 s here (asserted to take more than 5.5 s below)
      const prefill = async (n: number, salt: number) => {
        const t0 = performance.now();
        for await (const _ of engine.generate({ prompt: ids(n, salt), maxTokens: 1, sampling: {} })) {
          // drain
        }
        return performance.now() - t0;
      };
      await prefill(128, 10);
      const perToken = (await prefill(384, 11)) / 384;
      const n = Math.min(4000, Math.ceil(8000 / perToken));
      const prompt = ids(n, 1);

      // the control: a 1 s read timeout, shorter than the 2 s keep-alive, cuts the stream
      const cutRes = await fetch(`${nginx.url}/cut/v1/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt, max_tokens: 2, stream: true, cache_prompt: false }),
      });
      const cutText = await cutRes.text().catch((e) => `error: ${e}`);
      assert(!cutText.includes("[DONE]"), `nginx did not cut the stream: ${cutText.slice(-200)}`);
      while (engine.stats().busySlots) await new Promise((r) => setTimeout(r, 20)); // cancelled

      // 5 s: the keep-alives every 2 s carry the stream through the whole prefill
      const client = new OpenAI({
        baseURL: `${nginx.url}/v1`,
        apiKey: "unused",
        maxRetries: 0,
        timeout: 120_000,
      });
      const start = performance.now();
      const stream = await client.completions.create({
        model: "any",
        max_tokens: 2,
        prompt: ids(n, 2), // nothing in common with the cut request's cached prefix
        stream: true,
      });
      let firstAt = 0, finish: string | null = null, chunks = 0;
      for await (const chunk of stream) {
        if (!firstAt && chunk.choices[0]?.text) firstAt = performance.now();
        finish = chunk.choices[0]?.finish_reason ?? finish;
        chunks++;
      }
      const prefillS = ((firstAt || performance.now()) - start) / 1000;
      assert(
        prefillS > 5.5,
        `prefill took ${prefillS.toFixed(1)} s (${n} tokens): too fast to test a 5 s timeout`,
      );
      assert(chunks >= 2 && finish !== null, `stream ended early: ${chunks} chunks, finish ${finish}`);
    } finally {
      await nginx.stop();
      await srv.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** `n` prompt token ids of the synthetic vocabulary, different for each `salt` from the second on. */
function ids(n: number, salt: number): number[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37 + salt * 101) % 500)));
}
