/**
 * The one error type routes throw, and the one handler that turns any error into OpenAI's shape
 * `{"error":{"message","type","param","code"}}`. Engine errors are mapped here and nowhere else;
 * anything unexpected becomes a 500 whose message names no file, stack or internal detail.
 *
 * @module
 */
import type { Context } from "hono";
import {
  ContextOverflowError,
  DrainingError,
  EngineUnavailableError,
  ModelOutputError,
  QueueFullError,
  SamplingError,
} from "../engine/run/errors.ts";
import { BodyError } from "./server/http1.ts";

/** The request field of each engine sampling parameter, for `param` in errors. */
const SAMPLING_FIELDS: Record<string, string> = {
  temperature: "temperature",
  topK: "top_k",
  topP: "top_p",
  minP: "min_p",
  typicalP: "typical_p",
  repetitionPenalty: "repetition_penalty",
  presencePenalty: "presence_penalty",
  frequencyPenalty: "frequency_penalty",
  logitBias: "logit_bias",
  seed: "seed",
};

/** OpenAI's error object. */
export interface ErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: string | null;
    readonly code: string | null;
  };
}

/** Options of {@linkcode ApiError}. */
export interface ApiErrorOptions {
  readonly param?: string | null;
  readonly code?: string | null;
  /** Seconds for a `Retry-After` header (429, 503). */
  readonly retryAfter?: number;
}

/**
 * An HTTP error with an OpenAI error body.
 *
 * @example
 * ```ts
 * import { ApiError } from "./errors.ts";
 * throw new ApiError(400, "invalid_request_error", "'n' must be at most 4", { param: "n" });
 * ```
 */
export class ApiError extends Error {
  override name = "ApiError";
  readonly param: string | null;
  readonly code: string | null;
  readonly retryAfter?: number;

  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    options: ApiErrorOptions = {},
  ) {
    super(message);
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.retryAfter = options.retryAfter;
  }

  get body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** 400 invalid_request_error naming `param`. */
  static badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
    return new ApiError(400, "invalid_request_error", message, { param, code });
  }
}

/** The client went away; nobody reads this, it only labels logs (nginx's 499). */
export const clientClosed = (): ApiError =>
  new ApiError(499, "client_closed_request", "The client closed the connection", { code: "client_closed" });

/** The per-request time limit ran out. */
export const timedOut = (seconds: number): ApiError =>
  new ApiError(504, "timeout_error", `The request did not finish within the server's limit of ${seconds} s`, {
    code: "request_timeout",
  });

/** Shutting down (or still loading): try another replica. */
export const unavailable = (message: string, code: string): ApiError =>
  new ApiError(503, "service_unavailable", message, { code, retryAfter: 5 });

/**
 * The error for a request body that could not be read: the server's {@linkcode BodyError} keeps its
 * status (400, or 408 when it did not arrive in time); any other read failure (a connection reset
 * mid-upload) is a 400. Never a 500: the client, not the server, cut the body.
 */
export function bodyReadError(e: unknown): ApiError {
  if (e instanceof BodyError) {
    return new ApiError(e.status, "invalid_request_error", e.message, {
      code: e.status === 408 ? "request_timeout" : "invalid_body",
    });
  }
  return ApiError.badRequest(
    `The request body could not be read: ${e instanceof Error ? e.message : String(e)}`,
    null,
    "invalid_body",
  );
}

/**
 * Maps anything thrown to an {@linkcode ApiError}; `param` names the request field the prompt came
 * from, for context overflows and bad token ids.
 */
export function toApiError(e: unknown, param: string | null = null): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof BodyError) return bodyReadError(e);
  if (e instanceof QueueFullError) {
    return new ApiError(429, "rate_limit_error", e.message, {
      code: "queue_full",
      retryAfter: e.retryAfterSeconds,
    });
  }
  if (e instanceof DrainingError) return unavailable(e.message, "shutting_down");
  if (e instanceof EngineUnavailableError) {
    return new ApiError(503, "server_error", "The model is unavailable", {
      code: "engine_unavailable",
      retryAfter: 5,
    });
  }
  if (e instanceof SamplingError) {
    return ApiError.badRequest(e.message, SAMPLING_FIELDS[e.param ?? ""] ?? null, "sampling_impossible");
  }
  if (e instanceof ModelOutputError) {
    return new ApiError(500, "server_error", e.message, { code: "model_output_invalid" });
  }
  if (e instanceof ContextOverflowError) {
    return ApiError.badRequest(e.message, param, "context_length_exceeded");
  }
  if (e instanceof RangeError) return ApiError.badRequest(e.message, param);
  return new ApiError(500, "server_error", "Internal server error", { code: "internal_error" });
}

/** Headers an error response carries besides the JSON content type. */
export function errorHeaders(e: ApiError): Record<string, string> {
  return e.retryAfter === undefined ? {} : { "Retry-After": String(Math.max(1, Math.ceil(e.retryAfter))) };
}

/** The JSON response for `e` (and remember it for the request's log line). */
export function errorResponse(c: Context, e: ApiError, headers: Record<string, string> = {}): Response {
  c.set("apiError", e);
  return c.json(e.body, e.status as 400, { ...errorHeaders(e), ...headers });
}

/** Hono `onError`: one JSON error response for everything thrown. */
export function onError(err: Error, c: Context): Response {
  const e = toApiError(err);
  if (e.status >= 500 && !(err instanceof ApiError)) c.set("internalError", err);
  return errorResponse(c, e);
}
