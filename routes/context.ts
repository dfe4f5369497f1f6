/**
 * Types shared by the routes: the Hono environment, the per-request record that becomes the log
 * line, and the dependencies route factories receive.
 *
 * @module
 */
import type { Engine } from "../engine/run/engine.ts";
import type { ApiError } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { ServerState } from "./state.ts";

/** What one request did: filled by the routes, logged and counted when its response ends. */
export class RequestRecord {
  readonly start = performance.now();
  status = 0;
  stream = false;
  promptTokens = 0;
  completionTokens = 0;
  cachedTokens = 0;
  ttftMs?: number;
  tokensPerSecond?: number;
  finishReasons: string[] = [];
  user?: string;
  error?: ApiError;
  /** Resolves when a streamed body has ended (the log line waits for it). */
  ended: Promise<void> = Promise.resolve();

  constructor(readonly id: string, readonly method: string, readonly route: string) {}
}

/** Dependencies of the route factories. */
export interface Deps {
  readonly state: ServerState;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Per-request generation limit in seconds; 0: none. */
  readonly timeoutSeconds: number;
  /** Seconds between SSE keep-alive comments while a stream waits; 0: none. */
  readonly keepAliveSeconds: number;
}

/** Hono's environment: the variables middleware set for routes. */
export interface AppEnv {
  Variables: {
    record: RequestRecord;
    engine: Engine;
    apiError: ApiError;
    internalError: Error;
  };
}
