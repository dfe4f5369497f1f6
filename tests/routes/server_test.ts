/**
 * Over a real socket with the official `openai` npm client: chat and completions, streaming and
 * not, n > 1, stop strings, usage, logprobs, errors, and disconnects (the client aborting a stream,
 * a raw socket dropping a non-streaming request) freeing their slots.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import OpenAI from "openai";
import { type Harness, harness, listenLoopback, noStop, sleep } from "./_harness.ts";

const HI = [{ role: "user" as const, content: "Hello there" }];

/** Sends raw bytes as one HTTP/1.1 request and returns the connection (the caller closes it). */
async function rawRequest(port: number, path: string, body: Uint8Array): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head =
    `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  await conn.write(new Uint8Array([...new TextEncoder().encode(head), ...body]));
  return conn;
}

/** Reads a whole response from a raw connection (the server closes it with Connection: close). */
async function readAll(conn: Deno.TcpConn): Promise<string> {
  let out = "";
  const buf = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return out;
    out += new TextDecoder().decode(buf.subarray(0, n));
    if (/\r\n\r\n[\s\S]*\}$/.test(out)) return out;
  }
}

async function busy(h: Harness, n: number) {
  for (let i = 0; h.engine.stats().busySlots < n; i++) {
    if (i > 2000) throw new Error("never admitted");
    await sleep(1);
  }
}

Deno.test("the openai client over a real socket", async (t) => {
  const h = await harness();
  const server = listenLoopback(h.app.fetch);
  const port = server.addr.port;
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });
  const step = (name: string, fn: () => Promise<void>) =>
    t.step(name, async () => {
      await fn();
      await h.idle();
    });
  try {
    await step("chat.completions.create returns content, finish_reason and usage", async () => {
      const r = await client.chat.completions.create({
        model: "any",
        messages: HI,
        max_tokens: 8,
        temperature: 0,
      });
      assertEquals(r.object, "chat.completion");
      assertEquals(r.choices[0].message.role, "assistant");
      assert(["stop", "length"].includes(r.choices[0].finish_reason));
      assertEquals(r.usage!.total_tokens, r.usage!.prompt_tokens + r.usage!.completion_tokens);
    });

    await step("a streamed chat has the role first, deltas, a finish chunk and a usage chunk", async () => {
      const plain = await client.chat.completions.create({
        model: "m",
        messages: HI,
        max_tokens: 16,
        temperature: 0,
      });
      const stream = await client.chat.completions.create({
        model: "m",
        messages: HI,
        max_tokens: 16,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      assertEquals(chunks[0].choices[0].delta.role, "assistant");
      const usage = chunks.at(-1)!;
      assertEquals(usage.choices, []);
      assertEquals(usage.usage!.completion_tokens, plain.usage!.completion_tokens);
      assertEquals(chunks.at(-2)!.choices[0].finish_reason, plain.choices[0].finish_reason);
      const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
      assertEquals(text, plain.choices[0].message.content);
    });

    await step("completions.create, plain and streamed, agree", async () => {
      const req = { model: "m", prompt: "Once upon a time", max_tokens: 12, temperature: 0 };
      const plain = await client.completions.create(req);
      assertEquals(plain.object, "text_completion");
      const stream = await client.completions.create({ ...req, stream: true });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
      assertEquals(text, plain.choices[0].text);
    });

    await step("n > 1 gives n choices, streamed and not", async () => {
      const r = await client.chat.completions.create({
        model: "m",
        messages: HI,
        max_tokens: 4,
        n: 2,
        seed: 5,
      });
      assertEquals(r.choices.map((c) => c.index), [0, 1]);
      const stream = await client.chat.completions.create({
        model: "m",
        messages: HI,
        max_tokens: 4,
        n: 2,
        seed: 5,
        stream: true,
      });
      const texts = ["", ""];
      for await (const c of stream) texts[c.choices[0].index] += c.choices[0].delta.content ?? "";
      assertEquals(texts, r.choices.map((c) => c.message.content));
    });

    await step("stop strings end the text before the stop", async () => {
      const base = { model: "m", messages: HI, max_tokens: 40, temperature: 0, logit_bias: noStop(h) };
      const text = (await client.chat.completions.create(base)).choices[0].message.content!;
      const at = [...text].findIndex((_, i) =>
        i >= 3 && /^[A-Za-z]{2}$/.test(text.slice(i, i + 2)) && text.indexOf(text.slice(i, i + 2)) === i
      );
      assert(at > 0, `no stop string candidate in ${JSON.stringify(text)}`);
      const r = await client.chat.completions.create({ ...base, stop: [text.slice(at, at + 2)] });
      assertEquals([r.choices[0].message.content, r.choices[0].finish_reason], [text.slice(0, at), "stop"]);
    });

    await step("logprobs come back in the shapes the client types", async () => {
      const chat = await client.chat.completions.create({
        model: "m",
        messages: HI,
        max_tokens: 3,
        logprobs: true,
        top_logprobs: 2,
        logit_bias: noStop(h),
      });
      const content = chat.choices[0].logprobs!.content!;
      assertEquals(content.length, 3);
      assertEquals(content[0].top_logprobs.length, 2);
      const done = await client.completions.create({
        model: "m",
        prompt: [9, 10, 11, 12],
        max_tokens: 0,
        echo: true,
        logprobs: 1,
      });
      assertEquals(done.choices[0].logprobs!.token_logprobs!.length, 4);
      assertEquals(done.choices[0].logprobs!.token_logprobs![0], null);
    });

    await step("errors surface as APIError with status, type and param", async () => {
      await rejects(
        client.chat.completions.create({ model: "m", messages: HI, temperature: 9 }),
        (e: unknown) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "temperature",
      );
      await rejects(
        client.chat.completions.create({ model: "m", messages: HI, max_tokens: 5000 }),
        (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === "context_length_exceeded",
      );
    });

    await step("breaking out of a streamed chat aborts it and frees the slot", async () => {
      const stream = await client.chat.completions.create({
        model: "m",
        messages: HI,
        max_tokens: 200,
        stream: true,
        logit_bias: noStop(h),
      });
      let seen = 0;
      for await (const _ of stream) if (++seen === 3) break;
      await h.idle(1000);
      await sleep(5);
      const last = h.logs.findLast((l) => l.route === "/v1/chat/completions")!;
      assertEquals(last.error, "client_closed");
      assert((last.completion_tokens as number ?? 0) < 200);
    });

    await step("a socket dropped during a non-streaming request frees the slot", async () => {
      const body = JSON.stringify({ messages: HI, max_tokens: 200, logit_bias: noStop(h) });
      const conn = await rawRequest(port, "/v1/chat/completions", new TextEncoder().encode(body));
      await busy(h, 1);
      conn.close();
      await h.idle(1000);
      await sleep(5);
      const last = h.logs.findLast((l) => l.route === "/v1/chat/completions")!;
      assertEquals([last.status, last.error], [499, "client_closed"]);
    });

    await step("invalid UTF-8 over the wire is a 400, not a crash", async () => {
      const conn = await rawRequest(
        port,
        "/v1/chat/completions",
        new Uint8Array([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]),
      );
      const res = await readAll(conn);
      conn.close();
      assert(res.startsWith("HTTP/1.1 400"), res.slice(0, 40));
      assert(res.includes('"code":"invalid_body"'));
    });
  } finally {
    await server.shutdown();
    await h.close();
  }
});
