/**
 * Middleware factories: request ids + logs + metrics, the engine gate, API keys, body size.
 * Each returns a named function so stack traces and Hono's route list stay readable.
 *
 * @module
 */
import type { Context, MiddlewareHandler, Next } from "hono";
import { type AppEnv, type Deps, RequestRecord } from "./context.ts";
import { readBody, tooLarge } from "./body.ts";
import { ApiError } from "./errors.ts";

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** The caller's `x-request-id` when it is sane, else a fresh one. */
export function requestId(header: string | undefined): string {
  return header && REQUEST_ID.test(header) ? header : `req_${crypto.randomUUID().replaceAll("-", "")}`;
}

/**
 * Gives every request an id (echoed as `x-request-id`) and a {@linkcode RequestRecord}; when the
 * response (or a stream's last chunk) is done, writes one log line and updates the metrics.
 * `routes` are the known paths; anything else is counted as `other`.
 */
export function observe(deps: Deps, routes: ReadonlySet<string>): MiddlewareHandler<AppEnv> {
  return async function observe(c: Context<AppEnv>, next: Next) {
    const route = routes.has(c.req.path) ? c.req.path : "other";
    const rec = new RequestRecord(requestId(c.req.header("x-request-id")), c.req.method, route);
    c.set("record", rec);
    await next();
    c.res.headers.set("x-request-id", rec.id);
    rec.status = c.res.status;
    rec.error ??= c.get("apiError");
    const internal = c.get("internalError");
    if (internal) deps.log("error", { msg: "internal error", id: rec.id, error: internal.message });
    rec.ended.then(() => finish(deps, rec));
  };
}

function finish({ log, metrics }: Deps, rec: RequestRecord): void {
  const ms = performance.now() - rec.start;
  metrics.requests.inc({ route: rec.route, status: String(rec.status) });
  metrics.duration.observe(ms / 1000);
  if (rec.error) metrics.errors.inc({ type: rec.error.type, code: rec.error.code ?? "" });
  const level = logLevel(rec);
  const generated = rec.finishReasons.length > 0;
  log(level, {
    msg: "request",
    id: rec.id,
    method: rec.method,
    route: rec.route,
    status: rec.status,
    ms: Math.round(ms),
    stream: rec.stream || undefined,
    prompt_tokens: generated ? rec.promptTokens : undefined,
    completion_tokens: generated ? rec.completionTokens : undefined,
    cached_tokens: generated ? rec.cachedTokens : undefined,
    ttft_ms: rec.ttftMs === undefined ? undefined : Math.round(rec.ttftMs),
    tok_s: rec.tokensPerSecond === undefined ? undefined : Math.round(rec.tokensPerSecond * 10) / 10,
    finish_reason: generated ? rec.finishReasons.join(",") : undefined,
    error: rec.error?.code ?? rec.error?.type,
    param: rec.error?.param ?? undefined,
    user: rec.user,
  });
}

/** Statuses that are answers, not failures: probes while loading or draining say 503 by design. */
const PROBES = new Set(["/ready", "/health"]);
const UNAVAILABLE = new Set(["loading", "shutting_down"]);

/**
 * The level of a request's log line: `error` for server faults, `warn` for refused requests (4xx,
 * and 503 while loading or draining, which a load balancer retries elsewhere), `info` otherwise,
 * including `/ready`'s 503 while loading or draining.
 */
export function logLevel(rec: RequestRecord): "info" | "warn" | "error" {
  if (PROBES.has(rec.route) && rec.status === 503) return "info";
  const status = Math.max(rec.status, rec.error?.status ?? 0);
  if (status === 503 && rec.error?.code && UNAVAILABLE.has(rec.error.code)) return "warn";
  return status >= 500 ? "error" : rec.status >= 400 ? "warn" : "info";
}

/** Puts the engine in `c.var.engine`, or answers 503 while loading or draining. */
export function needEngine({ state }: Deps): MiddlewareHandler<AppEnv> {
  return async function needEngine(c: Context<AppEnv>, next: Next) {
    c.set("engine", state.acquire());
    await next();
  };
}

/**
 * 413 for bodies over `maxBytes`: a declared Content-Length is checked at once; a body without one
 * (chunked) is read here, up to the limit, and handed on whole. A body that cannot be read is a
 * 400 (see routes/body.ts).
 */
export function limitBody(maxBytes: number): MiddlewareHandler<AppEnv> {
  return async function limitBody(c: Context<AppEnv>, next: Next) {
    const raw = c.req.raw;
    if (!raw.body) return await next();
    const declared = raw.headers.get("content-length");
    if (declared !== null && !raw.headers.has("transfer-encoding")) {
      if (Number(declared) > maxBytes) throw tooLarge(maxBytes);
      return await next();
    }
    const body = await readBody(raw, maxBytes);
    c.req.raw = new Request(raw, { body });
    await next();
  };
}

const sha256 = async (s: string) =>
  new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));

/**
 * Bearer API keys. The presented key and every configured key are hashed to 32 bytes and all are
 * compared without an early exit, so timing says nothing about which bytes matched or how long a
 * key is. `open` paths (and CORS preflights) pass without a key.
 */
export function apiKeyAuth(keys: readonly string[], open: ReadonlySet<string>): MiddlewareHandler<AppEnv> {
  const digests = Promise.all(keys.map(sha256));
  return async function apiKeyAuth(c: Context<AppEnv>, next: Next) {
    if (open.has(c.req.path) || c.req.method === "OPTIONS") return await next();
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(c.req.header("authorization") ?? "");
    const given = await sha256(match?.[1] ?? "");
    let ok = 0;
    for (const key of await digests) {
      let diff = 0;
      for (let i = 0; i < key.length; i++) diff |= key[i] ^ given[i];
      ok |= diff === 0 ? 1 : 0;
    }
    if (!ok || !match) {
      c.header("WWW-Authenticate", 'Bearer realm="api"');
      throw new ApiError(
        401,
        "invalid_request_error",
        "Missing or invalid API key (send 'Authorization: Bearer KEY')",
        {
          code: "invalid_api_key",
        },
      );
    }
    await next();
  };
}
