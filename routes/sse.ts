/**
 * Server-sent events the way OpenAI sends them: `data: {json}` frames, `data: [DONE]` at the end,
 * and an error after the headers went out as an in-band `data: {"error":{...}}` then `[DONE]`.
 *
 * The body is a pull-based `ReadableStream`: a chunk is produced only when the connection takes
 * one, and when the client goes away Deno cancels the stream, which cancels the generation so the
 * scheduler frees its slot before the next step. (Hono's `streamSSE` is not used: its `write`
 * swallows errors and its error path is not OpenAI-shaped.)
 *
 * @module
 */
import type { Context } from "hono";
import type { AppEnv } from "./context.ts";
import { clientClosed, toApiError } from "./errors.ts";
import type { Generation } from "./generation.ts";

const encoder = new TextEncoder();
const DONE = encoder.encode("data: [DONE]\n\n");
const frame = (value: unknown) => encoder.encode(`data: ${JSON.stringify(value)}\n\n`);

/** Streams `chunks` of `gen` as SSE; the request's log line waits for the end of the stream. */
export function sseResponse(c: Context<AppEnv>, chunks: AsyncIterable<unknown>, gen: Generation): Response {
  const rec = c.get("record");
  rec.stream = true;
  let ended = () => {};
  rec.ended = new Promise((resolve) => (ended = resolve));
  const it = chunks[Symbol.asyncIterator]();
  let closed = false;
  const finish = () => {
    if (closed) return false;
    closed = true;
    gen.end();
    ended();
    return true;
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const r = await it.next();
        if (closed) return;
        if (!r.done) return controller.enqueue(frame(r.value));
      } catch (e) {
        if (closed) return;
        const err = toApiError(e);
        rec.error = err;
        controller.enqueue(frame(err.body));
      }
      controller.enqueue(DONE);
      finish();
      controller.close();
    },
    cancel() {
      gen.cancel(clientClosed());
      rec.error ??= clientClosed();
      if (finish()) it.return?.(undefined).catch(() => {});
    },
  });
  return c.newResponse(body, 200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
  });
}
