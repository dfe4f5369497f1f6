/**
 * One engine + app per test file: a tiny synthetic model, the app around it, captured log lines,
 * and small request helpers. Close it at the end of the file's test.
 */
import { Engine, type EngineOptions } from "../../engine/run/engine.ts";
import { type AppOptions, createApp } from "../../routes/app.ts";
import { createLogger } from "../../routes/log.ts";
import { Metrics } from "../../routes/metrics.ts";
import { ServerState } from "../../routes/state.ts";
import { HttpServer, type ServeOptions } from "../../routes/server/server.ts";
import { tinyModel } from "../_models.ts";

/** Parsed JSON of a response (tests index into it freely). */
// deno-lint-ignore no-explicit-any
export type Json = any;

export interface Harness {
  readonly engine: Engine;
  readonly state: ServerState;
  readonly app: ReturnType<typeof createApp>;
  readonly metrics: Metrics;
  /** Parsed JSON log lines. */
  readonly logs: Record<string, unknown>[];
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  json(
    path: string,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: Json; headers: Headers }>;
  /** Resolves once no slot is busy and nothing is queued (fails after `ms`). */
  idle(ms?: number): Promise<void>;
  close(): Promise<void>;
}

export const ENGINE_OPTIONS: EngineOptions = { threads: 2, nCtx: 256, nSlots: 2, maxQueue: 2 };

export async function harness(
  options: {
    engine?: EngineOptions;
    app?: AppOptions;
    model?: Parameters<typeof tinyModel>[0];
    /** A model file instead of a tiny synthetic one. */
    path?: string;
  } = {},
): Promise<Harness> {
  const path = options.path ?? await tinyModel(options.model);
  const engine = await Engine.load(path, { ...ENGINE_OPTIONS, ...options.engine });
  const state = new ServerState(engine);
  const metrics = new Metrics();
  const logs: Record<string, unknown>[] = [];
  const log = createLogger("debug", (line) => logs.push(JSON.parse(line)));
  const app = createApp(state, { log, metrics, ...options.app });
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) =>
    await app.request(path, {
      method: "POST",
      body: typeof body === "string" || body instanceof Uint8Array ? body as BodyInit : JSON.stringify(body),
      headers: { "Content-Type": "application/json", ...headers },
    });
  return {
    engine,
    state,
    app,
    metrics,
    logs,
    post,
    async json(path, body, headers) {
      const res = await post(path, body, headers);
      return { status: res.status, body: await res.json(), headers: res.headers };
    },
    async idle(ms = 2000) {
      const t0 = Date.now();
      for (;;) {
        const s = engine.stats();
        if (s.busySlots === 0 && s.queued === 0) return;
        if (Date.now() - t0 > ms) throw new Error(`engine not idle after ${ms} ms: ${JSON.stringify(s)}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    async close() {
      if (state.phase === "closed") return;
      await state.shutdown(1000);
    },
  };
}

/** The `data:` payloads of an SSE body, parsed (`[DONE]` kept as the string). */
export function parseSse(text: string): unknown[] {
  return text.split("\n\n").filter((f) => f.trim()).map((f) => {
    if (!f.startsWith("data: ")) throw new Error(`not an SSE data frame: ${JSON.stringify(f)}`);
    const data = f.slice(6);
    return data === "[DONE]" ? data : JSON.parse(data);
  });
}

/** A test case of a {@linkcode suite}. */
export type Case = readonly [
  name: string,
  fn: (h: Harness) => Promise<void> | void,
  options?: { ignore?: boolean },
];

/**
 * One `Deno.test` per file: loads the engine once, runs each case as a step, checks after each
 * that no slot is held, and closes everything at the end.
 */
export function suite(name: string, options: Parameters<typeof harness>[0], cases: readonly Case[]): void {
  Deno.test(name, async (t) => {
    const h = await harness(options);
    try {
      for (const [caseName, fn, opts] of cases) {
        await t.step({
          name: caseName,
          ignore: opts?.ignore,
          fn: async () => {
            await fn(h);
            await h.idle();
          },
        });
      }
    } finally {
      await h.close();
    }
  });
}

/** Text of every `choices[0].delta.content` (or `.text`) in parsed SSE frames, by choice index. */
export function streamedText(frames: unknown[], field: "content" | "text" = "content"): string[] {
  const out: string[] = [];
  for (const f of frames) {
    if (f === "[DONE]") continue;
    for (const ch of (f as Json).choices) {
      const piece = field === "content" ? ch.delta?.content : ch.text;
      out[ch.index] = (out[ch.index] ?? "") + (piece ?? "");
    }
  }
  return out;
}

/** A `logit_bias` that bans the end-of-turn and end-of-text tokens, so generation runs to max_tokens. */
export function noStop(h: Harness): Record<string, number> {
  return Object.fromEntries(h.engine.stopTokens.map((id) => [String(id), -100]));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The production HTTP server's settings for tests: a free loopback port, the default timeouts. */
export const LISTEN: ServeOptions = {
  hostname: "127.0.0.1",
  port: 0,
  headerTimeout: 10,
  idleTimeout: 75,
  bodyTimeout: 30,
  maxConnections: 100,
};

/** `fetch` served on a free loopback port by the server main.ts uses (routes/server). */
export const listenLoopback = (fetch: (request: Request) => Response | Promise<Response>): HttpServer =>
  HttpServer.listen(LISTEN, fetch);
