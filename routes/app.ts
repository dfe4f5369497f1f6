/**
 * The HTTP application: middleware in order (ids + logs + metrics, CORS, 405, API keys, body
 * limit, engine gate), the routes, the playground page, and one error handler. No sockets here:
 * `main.ts` serves it, tests call `app.request()`.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import { cors } from "hono/cors";
import { methodNotAllowed } from "hono/method-not-allowed";
import { chatRoutes } from "./chat.ts";
import { completionRoutes } from "./completions.ts";
import type { AppEnv, Deps } from "./context.ts";
import { ApiError, errorResponse, onError } from "./errors.ts";
import { healthRoutes } from "./health.ts";
import { type Logger, silentLogger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { apiKeyAuth, limitBody, needEngine, observe } from "./middleware.ts";
import { type Playground, playgroundRoutes } from "./playground.ts";
import type { ServerState } from "./state.ts";
import { tokenizeRoutes } from "./tokenize.ts";

/** Server settings the HTTP layer uses (`main.ts` builds them from flags and environment). */
export interface AppOptions {
  /** Bearer keys; empty: no authentication. */
  readonly apiKeys?: readonly string[];
  /** Require the key on `/ready` too (default: open, for load balancers). */
  readonly authReady?: boolean;
  /** Require the key on `/metrics` too (default: open, for scrapers). */
  readonly authMetrics?: boolean;
  /** Allowed browser origins (`*` for any); empty: CORS off. */
  readonly corsOrigins?: readonly string[];
  /** Largest request body in bytes (default 1 MiB). */
  readonly maxBodyBytes?: number;
  /** Per-request generation limit in seconds (default 600; 0: none). */
  readonly timeoutSeconds?: number;
  /** Seconds between SSE keep-alive comments while a stream waits (default 15; 0: none). */
  readonly keepAliveSeconds?: number;
  /** The chat playground to serve at `/` (from {@linkcode loadPlayground}); absent: no page. */
  readonly playground?: Playground;
  readonly log?: Logger;
  readonly metrics?: Metrics;
}

const GENERATION = ["/v1/chat/completions", "/v1/completions"];
const OPS = ["/health", "/ready", "/metrics"];

/**
 * Builds the app around `state` (which holds the engine once it is loaded).
 *
 * @example
 * ```ts ignore
 * const app = createApp(new ServerState(engine), { apiKeys: ["sk-local"] });
 * const res = await app.request("/v1/models", { headers: { Authorization: "Bearer sk-local" } });
 * ```
 */
export function createApp(state: ServerState, options: AppOptions = {}): Hono<AppEnv> {
  const deps: Deps = {
    state,
    metrics: options.metrics ?? new Metrics(),
    log: options.log ?? silentLogger,
    timeoutSeconds: options.timeoutSeconds ?? 600,
    keepAliveSeconds: options.keepAliveSeconds ?? 15,
  };
  // The page and its files load without a key: the page asks for one when the API wants it.
  const page = [...options.playground?.assets.keys() ?? []];
  const known = new Set([...GENERATION, ...OPS, "/v1/models", "/tokenize", "/detokenize", ...page]);
  const app = new Hono<AppEnv>();
  app.use(observe(deps, known));
  if (options.corsOrigins?.length) {
    const origins = options.corsOrigins;
    app.use(cors({
      origin: origins.includes("*") ? "*" : [...origins],
      allowMethods: ["GET", "HEAD", "POST", "OPTIONS"],
      // No allowHeaders: a preflight gets the headers it asks for (the openai client sends its
      // X-Stainless-* headers; other SDKs their own). Origins are what protect the server.
      exposeHeaders: ["X-Request-Id", "Retry-After"],
      maxAge: 600,
    }));
  }
  app.use(methodNotAllowed({ app, onMethodNotAllowed: notAllowed }));
  if (options.apiKeys?.length) {
    const open = new Set([
      "/health",
      ...page,
      ...(options.authReady ? [] : ["/ready"]),
      ...(options.authMetrics ? [] : ["/metrics"]),
    ]);
    app.use(apiKeyAuth(options.apiKeys, open));
  }
  app.use(limitBody(options.maxBodyBytes ?? 1 << 20));
  for (const path of [...GENERATION, "/v1/models", "/tokenize", "/detokenize"]) {
    app.use(path, needEngine(deps));
  }
  app.route("/", healthRoutes(deps));
  app.route("/", chatRoutes(deps));
  app.route("/", completionRoutes(deps));
  app.route("/", tokenizeRoutes());
  if (options.playground) app.route("/", playgroundRoutes(options.playground));
  app.notFound((c) => {
    const e = new ApiError(
      404,
      "invalid_request_error",
      `Unknown route ${c.req.method} ${c.req.path.slice(0, 200)}`,
      {
        code: "not_found",
      },
    );
    return errorResponse(c, e);
  });
  app.onError(onError);
  return app;
}

function notAllowed(c: Context, methods: string[]): Response {
  const allow = methods.join(", ");
  const e = new ApiError(
    405,
    "invalid_request_error",
    `Method ${c.req.method} is not allowed here (allowed: ${allow})`,
    {
      code: "method_not_allowed",
    },
  );
  return errorResponse(c, e, { Allow: allow });
}
