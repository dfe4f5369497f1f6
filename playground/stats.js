// @ts-check
/**
 * What one answer took: time to first token as the page saw it, tokens per second as the server
 * measured them (the `timings` of the usage chunk; counted from the text deltas, and marked `≈`,
 * when there is none, as for a stopped answer), and the prompt and cached tokens of the usage
 * chunk. Times come from the caller (`performance.now()` in the page), so the tests can give their
 * own.
 *
 * @module
 */

/**
 * @typedef {object} Usage
 * @property {number} prompt_tokens
 * @property {number} completion_tokens
 * @property {{ cached_tokens?: number }} [prompt_tokens_details]
 */

/**
 * @typedef {object} ServerTimings the server's `timings` (llama-server's names)
 * @property {number} predicted_per_second
 * @property {number} [ttft_ms]
 * @property {number} [queue_ms]
 */

/**
 * @typedef {object} AnswerStats
 * @property {number | null} ttftMs request sent to first text
 * @property {number} tokens generated tokens (from usage; else the text deltas received)
 * @property {boolean} exact whether `tokens` came from the usage chunk
 * @property {number | null} tokensPerSecond tokens after the first over the time they took
 * @property {boolean} measured whether the server measured `tokensPerSecond` (else the page did)
 * @property {number | null} promptTokens
 * @property {number | null} cachedTokens prompt tokens the server reused from its KV cache
 * @property {string | null} finish the finish_reason, or "stopped" when the user stopped it
 */

/** Clocks one streamed answer. */
export class AnswerTimer {
  /** @param {number} start when the request was sent */
  constructor(start) {
    this.start = start;
    /** @type {number | null} */ this.first = null;
    /** @type {number | null} */ this.last = null;
    /** @type {number | null} */ this.end = null;
    this.deltas = 0;
    /** @type {Usage | null} */ this.usage = null;
    /** @type {ServerTimings | null} */ this.timings = null;
    /** @type {string | null} */ this.finish = null;
  }

  /**
   * A chunk with text arrived.
   * @param {number} now
   */
  delta(now) {
    this.first ??= now;
    this.last = now;
    this.deltas++;
  }

  /**
   * The finish_reason arrived (or the user stopped: "stopped").
   * @param {string} reason
   * @param {number} now
   */
  finished(reason, now) {
    this.finish = reason;
    this.end ??= now;
  }

  /** @returns {AnswerStats} */
  stats() {
    const exact = this.usage !== null;
    const tokens = this.usage?.completion_tokens ?? this.deltas;
    const until = exact ? (this.end ?? this.last) : this.last;
    const span = this.first !== null && until !== null ? until - this.first : 0;
    const measured = this.timings !== null && this.timings.predicted_per_second > 0;
    const seen = tokens >= 2 && span > 0 ? (tokens - 1) / (span / 1000) : null;
    return {
      ttftMs: this.first === null ? null : this.first - this.start,
      tokens,
      exact,
      tokensPerSecond: measured ? this.timings?.predicted_per_second ?? null : seen,
      measured,
      promptTokens: this.usage?.prompt_tokens ?? null,
      cachedTokens: this.usage ? this.usage.prompt_tokens_details?.cached_tokens ?? 0 : null,
      finish: this.finish,
    };
  }
}

/**
 * The stats line of an answer, e.g. `TTFT 85 ms · 41.2 tok/s · 48 tokens · prompt 23, 12 cached ·
 * stop`. Figures the page counted itself (no usage chunk or timings: a stopped answer) are marked
 * `≈`.
 *
 * @param {AnswerStats} s
 * @returns {string}
 */
export function formatStats(s) {
  const parts = [];
  if (s.ttftMs !== null) parts.push(`TTFT ${Math.round(s.ttftMs)} ms`);
  if (s.tokensPerSecond !== null) parts.push(`${s.measured ? "" : "≈"}${s.tokensPerSecond.toFixed(1)} tok/s`);
  parts.push(`${s.exact ? "" : "≈"}${s.tokens} token${s.tokens === 1 ? "" : "s"}`);
  if (s.promptTokens !== null) parts.push(`prompt ${s.promptTokens}, ${s.cachedTokens ?? 0} cached`);
  if (s.finish) parts.push(s.finish === "stopped" ? "stopped by you" : s.finish);
  return parts.join(" · ");
}
