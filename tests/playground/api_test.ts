/**
 * playground/api.js, the page's API client, run in Deno against the real app served on loopback
 * (a tiny model): the model card, token counts, a streamed chat with its usage chunk, the errors
 * the page shows (400, 401, 429 with Retry-After, an error inside the stream, a dropped or refused
 * connection) and Stop freeing the slot. The SSE reader and `Retry-After` parsing on their own.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import {
  ApiError,
  ConnectionError,
  countTokens,
  getModel,
  retryAfterSeconds,
  sseData,
  streamChat,
} from "../../playground/api.js";
import { freePort } from "../../scripts/deploy/cluster.ts";
import { type Harness, harness, listenLoopback, noStop } from "../routes/_harness.ts";

const HI = [{ role: "user" as const, content: "Tell me about the jury." }];

/** Serves `app` on a loopback port for `fn`. */
async function served(h: Harness, fn: (base: string) => Promise<void>): Promise<void> {
  const server = listenLoopback(h.app.fetch);
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/`);
  } finally {
    await server.shutdown();
  }
}

/** Serves a fixed SSE body (written in pieces) for the client's error paths. */
async function fakeSse(pieces: string[], fn: (base: string) => Promise<void>): Promise<void> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (const p of pieces) {
          controller.enqueue(new TextEncoder().encode(p));
          await new Promise((r) => setTimeout(r, 5));
        }
        controller.close();
      },
    });
    return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/`);
  } finally {
    await server.shutdown();
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const stream = (parts: string[]) =>
  new ReadableStream<Uint8Array>({
    start(c) {
      for (const p of parts) c.enqueue(new TextEncoder().encode(p));
      c.close();
    },
  });

Deno.test("sseData() yields each event's data, across chunk boundaries, CRLF, comments and multi-line data", async () => {
  const parts = [
    ': comment\n\ndata: {"a":',
    "1}\n\nevent: x\ndata: one\ndata: two\n\nda",
    "ta: [DONE]\r\n\r\ndata:tight\n\n",
    "data: é".slice(0, 7),
    "é\n\ndata: unterminated",
  ];
  assertEquals(await collect(sseData(stream(parts))), ['{"a":1}', "one\ntwo", "[DONE]", "tight", "éé"]);
  // A multi-byte character split between chunks.
  const bytes = new TextEncoder().encode("data: ü\n\n");
  const split = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(bytes.subarray(0, 7));
      c.enqueue(bytes.subarray(7));
      c.close();
    },
  });
  assertEquals(await collect(sseData(split)), ["ü"]);
});

Deno.test("retryAfterSeconds() reads seconds and HTTP dates", () => {
  assertEquals(retryAfterSeconds("5"), 5);
  assertEquals(retryAfterSeconds(" 12 "), 12);
  assertEquals(retryAfterSeconds(new Date(1_000_000 + 30_000).toUTCString(), 1_000_000), 30);
  assertEquals(retryAfterSeconds(new Date(0).toUTCString(), 1_000_000), 0);
  assertEquals([retryAfterSeconds(null), retryAfterSeconds(""), retryAfterSeconds("soon")], [
    null,
    null,
    null,
  ]);
});

Deno.test("the page's client against the server", async (t) => {
  const h = await harness({ engine: { nSlots: 1, maxQueue: 0 } });
  try {
    await served(h, async (base) => {
      await t.step("getModel() gives the id, context, kernel and threads of /v1/models", async () => {
        const m = await getModel(base);
        const i = h.engine.info;
        assertEquals(m, { id: i.id, nCtx: 256, kernel: i.kernel, threads: 2, slots: 1, arch: i.arch });
      });

      await t.step("countTokens() is the length of the tokenizer's encoding", async () => {
        const text = "The jury said it did find that many of Georgia's registration laws are outmoded.";
        assertEquals(
          await countTokens(base, text),
          h.engine.tokenizer.encode(text, { addBos: false }).length,
        );
      });

      await t.step(
        "streamChat() yields the chunks, then usage, and its text is the non-streamed answer",
        async () => {
          const body = {
            messages: HI,
            temperature: 0,
            max_tokens: 12,
            stream_options: { include_usage: true },
          };
          const chunks = await collect(streamChat(base, body));
          assertEquals(chunks[0].choices[0].delta.role, "assistant");
          const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
          const last = chunks.at(-1);
          assertEquals(last.choices, []);
          assertEquals(last.usage.prompt_tokens, h.engine.encodeChat(HI).length);
          assert(last.usage.prompt_tokens_details.cached_tokens >= 0);
          assert(last.timings.predicted_per_second > 0, JSON.stringify(last.timings)); // what the page shows
          assert(chunks.some((c) => c.choices[0]?.finish_reason), "a finish_reason chunk");
          const whole = await h.json("/v1/chat/completions", {
            messages: HI,
            temperature: 0,
            max_tokens: 12,
          });
          assertEquals(text, whole.body.choices[0].message.content);
          assertEquals(last.usage.completion_tokens, whole.body.usage.completion_tokens);
        },
      );

      await t.step("a 400 comes out as an ApiError with the server's message", async () => {
        try {
          await collect(streamChat(base, { messages: HI, max_tokens: 100_000 }));
          assert(false, "no error");
        } catch (err) {
          assert(err instanceof ApiError, String(err));
          assertEquals(err.status, 400);
          assert(/context holds 256/.test(err.message), err.message);
        }
      });

      await t.step("a full server is a 429 with Retry-After, and Stop (abort) frees the slot", async () => {
        const ac = new AbortController();
        const running = streamChat(base, { messages: HI, max_tokens: 200, logit_bias: noStop(h) }, {
          signal: ac.signal,
        });
        await running.next(); // the role chunk: the request holds the only slot
        assertEquals(h.engine.stats().busySlots, 1);
        try {
          await collect(streamChat(base, { messages: HI, max_tokens: 4 }));
          assert(false, "no 429");
        } catch (err) {
          assert(err instanceof ApiError, String(err));
          assertEquals(err.status, 429);
          assert(err.retryAfter !== null && err.retryAfter >= 1, String(err.retryAfter));
        }
        ac.abort(new DOMException("Stopped by the user", "AbortError"));
        await rejects(collect(running), (e: Error) => e.name === "AbortError");
        await h.idle();
      });
    });

    await t.step("with API keys: 401 without the key, the model with it", async () => {
      const keyed = await harness({ app: { apiKeys: ["sk-1"] } });
      try {
        await served(keyed, async (base) => {
          await rejects(getModel(base), (e: ApiError) => e.status === 401 && e.code === "invalid_api_key");
          assertEquals((await getModel(base, "sk-1")).nCtx, 256);
          const chunks = await collect(streamChat(base, { messages: HI, max_tokens: 2 }, { key: "sk-1" }));
          assert(chunks.length >= 2);
        });
      } finally {
        await keyed.close();
      }
    });
  } finally {
    await h.close();
  }
});

Deno.test("streamChat(): an error inside the stream is an ApiError with status 0", async () => {
  const error = { message: "The request did not finish within the server's limit of 1 s", code: "timeout" };
  await fakeSse([
    `data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n`,
    `data: ${JSON.stringify({ error })}\n\n`,
  ], async (base) => {
    const seen: unknown[] = [];
    try {
      for await (const c of streamChat(base, {})) seen.push(c);
      assert(false, "no error");
    } catch (e) {
      assert(e instanceof ApiError, String(e));
      assertEquals([e.status, e.message, e.code], [0, error.message, "timeout"]);
    }
    assertEquals(seen.length, 1);
  });
});

Deno.test("streamChat(): a stream that ends without [DONE], or no server at all, is a ConnectionError", async () => {
  await fakeSse([`data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n`], async (base) => {
    await rejects(
      collect(streamChat(base, {})),
      (e: Error) => e instanceof ConnectionError && /closed before the answer was complete/.test(e.message),
    );
  });
  const port = freePort();
  await rejects(
    getModel(`http://127.0.0.1:${port}/`),
    (e: Error) => e instanceof ConnectionError && e.message.includes(`127.0.0.1:${port}`),
  );
});
