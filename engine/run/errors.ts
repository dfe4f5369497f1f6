/**
 * Typed errors the engine throws at its edge; routes map them to HTTP statuses in one place.
 *
 * @module
 */

/** The queue is full: retry later (HTTP 429 with Retry-After). */
export class QueueFullError extends Error {
  override name = "QueueFullError";
  constructor(readonly queued: number, readonly retryAfterSeconds: number) {
    super(`The server is busy: ${queued} request(s) are already waiting`);
  }
}

/** The engine is draining for shutdown and takes no new work (HTTP 503). */
export class DrainingError extends Error {
  override name = "DrainingError";
  constructor() {
    super("The server is shutting down and accepts no new requests");
  }
}

/** The prompt does not fit the context (HTTP 400 with the token counts). */
export class ContextOverflowError extends RangeError {
  override name = "ContextOverflowError";
  constructor(
    readonly promptTokens: number,
    readonly requestedTokens: number,
    readonly contextTokens: number,
  ) {
    super(
      `This request needs ${
        promptTokens + requestedTokens
      } tokens (${promptTokens} in the prompt + ${requestedTokens} to generate) ` +
        `but the context holds ${contextTokens}: shorten the prompt or lower max_tokens`,
    );
  }
}

/** The engine failed (a worker died) or was closed; nothing more can run. */
export class EngineUnavailableError extends Error {
  override name = "EngineUnavailableError";
}

/**
 * The request makes sampling impossible: every token is banned, or its penalties or biases push a
 * logit to infinity (HTTP 400). `param` names the sampling parameter responsible.
 */
export class SamplingError extends RangeError {
  override name = "SamplingError";
  constructor(message: string, readonly param: string | null = null) {
    super(message);
  }
}

/**
 * The model produced logits that are not finite numbers (NaN or infinite): corrupt weights or a
 * numeric fault in the forward pass, not the request's doing (HTTP 500 naming the cause).
 */
export class ModelOutputError extends Error {
  override name = "ModelOutputError";
}
