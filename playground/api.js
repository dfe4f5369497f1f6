// @ts-check
/**
 * The playground's client for the server's public API: `GET /v1/models`, `POST /tokenize` and
 * streamed `POST /v1/chat/completions` (server-sent events). No DOM here, so the tests run it in
 * Deno against a real server. Every error comes out as an {@linkcode ApiError} (the server answered
 * with an error) or a {@linkcode ConnectionError} (no answer, or the stream broke off).
 *
 * @module
 */

/**
 * The server answered with an error: its status (0 for an error sent inside a stream), message and,
 * for 429/503, `Retry-After`.
 */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {{ type?: string | null, code?: string | null, param?: string | null, retryAfter?: number | null }} [info]
   */
  constructor(status, message, info = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = info.type ?? null;
    this.code = info.code ?? null;
    this.param = info.param ?? null;
    /** Seconds to wait before retrying, from `Retry-After`; null when the server gave none. */
    this.retryAfter = info.retryAfter ?? null;
  }
}

/** The server could not be reached, or the connection dropped before the answer ended. */
export class ConnectionError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ConnectionError";
  }
}

/**
 * `Retry-After` as seconds (a number of seconds or an HTTP date); null when absent or unreadable.
 *
 * @param {string | null} value
 * @param {number} [now] milliseconds since the epoch
 * @returns {number | null}
 */
export function retryAfterSeconds(value, now = Date.now()) {
  if (value === null || value.trim() === "") return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

/**
 * The {@linkcode ApiError} for a response that is not ok: the server's `{"error":{...}}` message
 * when it sent one, else the status line.
 *
 * @param {Response} res
 * @returns {Promise<ApiError>}
 */
export async function errorFrom(res) {
  const retryAfter = retryAfterSeconds(res.headers.get("retry-after"));
  let message = `HTTP ${res.status} ${res.statusText}`.trim();
  let type = null, code = null, param = null;
  try {
    const body = await res.json();
    if (typeof body?.error?.message === "string") {
      ({ message, type = null, code = null, param = null } = body.error);
    }
  } catch { /* not JSON: keep the status line */ }
  return new ApiError(res.status, message, { type, code, param, retryAfter });
}

/**
 * `fetch` with the bearer key; an {@linkcode ApiError} for error statuses and a
 * {@linkcode ConnectionError} when nothing answered. A caller's abort passes through unchanged.
 *
 * @param {URL} url
 * @param {RequestInit} init
 * @param {string} [key]
 * @returns {Promise<Response>}
 */
async function request(url, init, key) {
  const headers = new Headers(init.headers);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let res;
  try {
    res = await fetch(url, { ...init, headers });
  } catch (e) {
    if (init.signal?.aborted) throw e;
    throw new ConnectionError(
      `Cannot reach the server at ${url.origin} (${/** @type {Error} */ (e).message})`,
    );
  }
  if (!res.ok) throw await errorFrom(res);
  return res;
}

/**
 * @typedef {object} ModelCard
 * @property {string} id
 * @property {number | null} nCtx context positions per slot
 * @property {string | null} kernel
 * @property {number | null} threads
 * @property {number | null} slots
 * @property {string | null} arch
 */

/**
 * The served model, from `GET /v1/models` (its first entry).
 *
 * @param {URL | string} base the server's base URL (the page's own address in the browser)
 * @param {string} [key]
 * @returns {Promise<ModelCard>}
 */
export async function getModel(base, key) {
  const res = await request(new URL("v1/models", base), { headers: { Accept: "application/json" } }, key);
  const body = await res.json();
  const m = body?.data?.[0];
  if (!m) throw new ApiError(res.status, "The server lists no model");
  const meta = m.meta ?? {};
  const num = (/** @type {unknown} */ v) => (typeof v === "number" ? v : null);
  return {
    id: String(m.id),
    nCtx: num(meta.n_ctx),
    kernel: typeof meta.kernel === "string" ? meta.kernel : null,
    threads: num(meta.threads),
    slots: num(meta.n_slots),
    arch: typeof meta.arch === "string" ? meta.arch : null,
  };
}

/**
 * How many tokens `text` is, from `POST /tokenize`.
 *
 * @param {URL | string} base
 * @param {string} text
 * @param {{ key?: string, signal?: AbortSignal }} [options]
 * @returns {Promise<number>}
 */
export async function countTokens(base, text, options = {}) {
  const res = await request(new URL("tokenize", base), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ content: text }),
    signal: options.signal,
  }, options.key);
  const body = await res.json();
  return Array.isArray(body?.tokens) ? body.tokens.length : 0;
}

/**
 * The `data:` payloads of a server-sent event stream, one string per event (multi-line data joined
 * with `\n`; comments, `event:` and `id:` lines skipped).
 *
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<string>}
 */
export async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      const events = buf.split(/\r\n\r\n|\n\n|\r\r/);
      buf = events.pop() ?? "";
      for (const ev of events) {
        const data = ev.split(/\r\n|\n|\r/).filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5));
        if (data.length) yield data.join("\n");
      }
    }
  } finally {
    // Also when the consumer stops early: closes the response, so the server frees the slot.
    await reader.cancel().catch(() => {});
  }
}

/**
 * Streams a chat completion: yields each `chat.completion.chunk` object (the usage chunk included
 * when `body.stream_options.include_usage` is set). Throws an {@linkcode ApiError} for an error
 * status or an error sent inside the stream, and a {@linkcode ConnectionError} when the stream ends
 * without `[DONE]`. Aborting `signal` ends it with the signal's reason (an `AbortError`).
 *
 * @param {URL | string} base
 * @param {Record<string, unknown>} body the request body; `stream: true` is set here
 * @param {{ key?: string, signal?: AbortSignal }} [options]
 * @returns {AsyncGenerator<any>}
 */
export async function* streamChat(base, body, options = {}) {
  const res = await request(new URL("v1/chat/completions", base), {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ ...body, stream: true }),
    signal: options.signal,
  }, options.key);
  if (!res.body) throw new ConnectionError("The server sent no body");
  try {
    for await (const data of sseData(res.body)) {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk?.error) {
        const e = chunk.error;
        throw new ApiError(0, String(e.message ?? "The server reported an error"), e);
      }
      yield chunk;
    }
  } catch (e) {
    if (options.signal?.aborted || e instanceof ApiError || e instanceof SyntaxError) throw e;
    throw new ConnectionError(`The connection dropped (${/** @type {Error} */ (e).message})`);
  }
  if (options.signal?.aborted) throw options.signal.reason;
  throw new ConnectionError("The connection closed before the answer was complete");
}
