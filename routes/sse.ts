/**
 * Server-sent events the way OpenAI sends them: `data: {json}` frames, `data: [DONE]` at the end,
 * and an error after the headers went out as an in-band `data: {"error":{...}}` then `[DONE]`.
 *
 * The body is a pull-based `ReadableStream`: a chunk is produced only when the connection takes
 * one, and when the client goes away Deno cancels the stream, which cancels the generation so the
 * scheduler frees its slot before the next step. (Hono's `streamSSE` is not used: its `write`
 * swallows errors and its error path is not OpenAI-shaped.)
 *
 * While the next chunk is not ready for `keepAliveSeconds` (the request waits in the queue, or a
 * long prompt is being prefilled), a comment line `: keep-alive` goes out, so a proxy with an idle
 * read timeout (nginx's `proxy_read_timeout`, 60 s by default) does not cut the stream. SSE
 * parsers skip comment lines (the WHATWG rule), the OpenAI clients among them.
 *
 * @module
 */
import type { Context } from "hono";
import type { AppEnv } from "./context.ts";
import { clientClosed, toApiError } from "./errors.ts";
import type { Generation } from "./generation.ts";

const encoder = new TextEncoder();
const DONE = encoder.encode("data: [DONE]\n\n");
const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");
const IDLE = Symbol("idle");
const frame = (value: unknown) => encoder.encode(`data: ${JSON.stringify(value)}\n\n`);

/** Resolves with `IDLE` after `ms` unless cancelled first. */
function idle(ms: number): { promise: Promise<typeof IDLE>; cancel: () => void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<typeof IDLE>((resolve) => (timer = setTimeout(() => resolve(IDLE), ms)));
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * Streams `chunks` of `gen` as SSE, with a keep-alive comment after each `keepAliveSeconds` without
 * a chunk (0: none); the request's log line waits for the end of the stream.
 */
export function sseResponse(
  c: Context<AppEnv>,
  chunks: AsyncIterable<unknown>,
  gen: Generation,
  keepAliveSeconds = 0,
): Response {
  const rec = c.get("record");
  rec.stream = true;
  let ended = () => {};
  rec.ended = new Promise((resolve) => (ended = resolve));
  const it = chunks[Symbol.asyncIterator]();
  /** The chunk being waited for, kept across keep-alive pulls. */
  let next: Promise<IteratorResult<unknown>> | null = null;
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
        if (!next) {
          next = it.next();
          next.catch(() => {}); // observed below, or moot once the stream is cancelled
        }
        let r: IteratorResult<unknown> | typeof IDLE;
        if (keepAliveSeconds > 0) {
          const timer = idle(keepAliveSeconds * 1000);
          try {
            r = await Promise.race([next, timer.promise]);
          } finally {
            timer.cancel();
          }
        } else r = await next;
        if (closed) return;
        if (r === IDLE) return controller.enqueue(KEEP_ALIVE);
        next = null;
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
