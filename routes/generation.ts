/**
 * The part of the generation routes that chat and completions share: request fields to engine
 * requests, and a {@linkcode Generation} that runs `n` of them under one abort signal (client
 * disconnect, timeout, shutdown) and yields their events merged, counting tokens for logs and
 * metrics on the way.
 *
 * @module
 */
import type { Context } from "hono";
import type { Engine } from "../engine/run/engine.ts";
import type { GenerateRequest, GenerationEvent } from "../engine/run/sequence.ts";
import type { CompiledGrammar } from "../engine/text/grammar_service.ts";
import type { AppEnv, Deps, RequestRecord } from "./context.ts";
import { ApiError, clientClosed, timedOut, toApiError } from "./errors.ts";
import type { CommonRequest } from "./schemas.ts";
import { sseResponse } from "./sse.ts";

/** One engine run: which prompt it continues and its choice index (its position in the list). */
export interface RunSpec {
  readonly promptIndex: number;
  readonly request: GenerateRequest;
}

/** Extra per-route settings of {@linkcode runSpecs}. */
export interface SpecOptions {
  readonly maxTokens?: number | null;
  readonly logprobs?: number;
  readonly promptLogprobs?: boolean;
  /** Runs per prompt, instead of the body's `n`. */
  readonly n?: number;
  /** Sum each run's generated-token log-probabilities (`best_of`). */
  readonly score?: boolean;
  /** The grammar every run is constrained to. */
  readonly grammar?: CompiledGrammar;
}

/** `value` unless `alias` names a different one (400 naming the alias). */
function aliased<T>(value: T | null | undefined, alias: T | null | undefined, name: string, of: string) {
  if (value != null && alias != null && value !== alias) {
    throw ApiError.badRequest(`'${name}' is another name of '${of}', and the two differ`, name);
  }
  return value ?? alias ?? undefined;
}

/**
 * `n` runs per prompt (choice index = prompt * n + j), seeds `seed + index` when a seed is given;
 * `o.n` overrides the body's `n` (`best_of`).
 */
export function runSpecs(
  engine: Engine,
  prompts: readonly number[][],
  body: CommonRequest,
  o: SpecOptions,
): RunSpec[] {
  const n = o.n ?? body.n ?? 1, { slots, maxQueue } = engine.stats();
  if (n * prompts.length > slots + maxQueue) {
    const msg = `This server runs at most ${slots + maxQueue} generations per request (slots + queue), got ${
      n * prompts.length
    }`;
    throw ApiError.badRequest(msg, "n");
  }
  const vocab = engine.tokenizer.vocabSize;
  for (const key of Object.keys(body.logit_bias ?? {})) {
    if (Number(key) >= vocab) {
      throw ApiError.badRequest(`logit_bias key ${key} is not a token id (0..${vocab - 1})`, "logit_bias");
    }
  }
  const stop = typeof body.stop === "string" ? [body.stop] : body.stop ?? [];
  const nPredict = body.n_predict != null && body.n_predict >= 0 ? body.n_predict : undefined;
  const maxTokens = aliased(o.maxTokens, nPredict, "n_predict", "max_tokens");
  const repetitionPenalty = aliased(
    body.repetition_penalty,
    body.repeat_penalty,
    "repeat_penalty",
    "repetition_penalty",
  );
  if (body.min_tokens != null && maxTokens !== undefined && body.min_tokens > maxTokens) {
    throw ApiError.badRequest(
      `min_tokens (${body.min_tokens}) is more than max_tokens (${maxTokens})`,
      "min_tokens",
    );
  }
  return prompts.flatMap((prompt, promptIndex) =>
    Array.from({ length: n }, (_, j): RunSpec => ({
      promptIndex,
      request: {
        prompt,
        maxTokens: maxTokens ?? Math.max(1, engine.info.nCtx - prompt.length),
        sampling: {
          temperature: body.temperature ?? undefined,
          topP: body.top_p ?? undefined,
          topK: body.top_k ?? undefined,
          minP: body.min_p ?? undefined,
          typicalP: body.typical_p ?? undefined,
          presencePenalty: body.presence_penalty ?? undefined,
          frequencyPenalty: body.frequency_penalty ?? undefined,
          repetitionPenalty,
          penaltyLastN: body.repeat_last_n ?? undefined,
          logitBias: body.logit_bias ?? undefined,
          seed: body.seed == null ? undefined : body.seed + promptIndex * n + j,
        },
        stop,
        logprobs: o.logprobs,
        promptLogprobs: o.promptLogprobs,
        minTokens: body.min_tokens ?? undefined,
        ignoreEos: body.ignore_eos ?? undefined,
        cachePrompt: body.cache_prompt ?? undefined,
        score: o.score,
        grammar: o.grammar,
      },
    }))
  );
}

/** Checks token-id prompts against the vocabulary (400 naming `param`). */
export function checkIds(engine: Engine, ids: readonly number[], param: string): void {
  const vocab = engine.tokenizer.vocabSize;
  const bad = ids.find((id) => id >= vocab);
  if (bad !== undefined) {
    throw ApiError.badRequest(`Token id ${bad} is outside the vocabulary (0..${vocab - 1})`, param);
  }
}

/** OpenAI's `usage` object. */
export interface UsageBody {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/**
 * Server-side timings of the first choice, in llama-server's names where the meaning matches (the
 * stream's usage chunk carries them as `timings`; OpenAI clients ignore the field). `ttft_ms` and
 * `queue_ms` count from submission to the engine; `predicted_*` cover the tokens after the first.
 */
export interface TimingsBody {
  cache_n: number;
  prompt_n: number;
  predicted_n: number;
  queue_ms: number;
  ttft_ms: number;
  predicted_ms: number;
  predicted_per_second: number;
}

/** Options of a {@linkcode Generation}. */
export interface GenerationOptions {
  /** Request field the prompt came from, named in errors (`messages`, `prompt`). */
  readonly param: string;
  /** The request's `user` (logged, for abuse monitoring). */
  readonly user?: string | null;
}

/**
 * `n` running generations of one request. Start it before sending headers (admission errors such
 * as 429 are thrown by the constructor); call {@linkcode Generation.end} when done with it.
 */
export class Generation {
  readonly specs: readonly RunSpec[];
  /** Seconds between SSE keep-alive comments while a stream waits (0: none). */
  readonly keepAliveSeconds: number;
  readonly #ac = new AbortController();
  readonly #runs: AsyncIterable<GenerationEvent>[] = [];
  readonly #deps: Deps;
  readonly #rec: RequestRecord;
  readonly #clientSignal: AbortSignal;
  readonly #onClientAbort = () => this.cancel(clientClosed());
  readonly #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #usage = { completion: 0, cached: 0 };
  #timings: TimingsBody | null = null;
  /** Per run: tokens seen so far, and whether its `done` event came (then the engine counted it). */
  readonly #tokens: number[];
  readonly #finished: boolean[];
  #started = false;
  #ended = false;

  constructor(c: Context<AppEnv>, deps: Deps, specs: readonly RunSpec[], options: GenerationOptions) {
    const { param } = options;
    this.specs = specs;
    this.keepAliveSeconds = deps.keepAliveSeconds;
    this.#tokens = specs.map(() => 0);
    this.#finished = specs.map(() => false);
    this.#deps = deps;
    this.#rec = c.get("record");
    this.#rec.user = options.user ?? undefined;
    this.#clientSignal = c.req.raw.signal;
    this.#clientSignal.addEventListener("abort", this.#onClientAbort);
    if (this.#clientSignal.aborted) this.cancel(clientClosed()); // gone while the body was read
    const s = deps.timeoutSeconds;
    this.#timer = s > 0 ? setTimeout(() => this.cancel(timedOut(s)), s * 1000) : undefined;
    deps.state.track(this.#ac);
    const engine = c.get("engine");
    try {
      for (const spec of specs) this.#runs.push(engine.generate(spec.request, this.#ac.signal));
      this.#started = true;
    } catch (e) {
      this.cancel(e);
      this.end();
      throw toApiError(e, param);
    }
  }

  /** Stops every run; their streams throw `reason`. */
  cancel(reason: unknown): void {
    if (!this.#ac.signal.aborted) this.#ac.abort(reason);
  }

  /**
   * Releases the timer and listeners, and counts runs that ended without finishing (cancelled by the
   * client, timed out, shut down, failed) into the metrics with their tokens; idempotent.
   */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#clientSignal.removeEventListener("abort", this.#onClientAbort);
    this.#deps.state.release(this.#ac);
    if (!this.#started) return; // refused at admission (429, 503): no generation ran
    const { metrics } = this.#deps;
    for (let i = 0; i < this.specs.length; i++) {
      if (this.#finished[i]) continue;
      metrics.generatedTokens.inc({}, this.#tokens[i]);
      metrics.finished.inc({ reason: this.#unfinishedReason() });
    }
  }

  /** The `bn_generations_total` reason of a run that did not finish. */
  #unfinishedReason(): string {
    const code = this.#ac.signal.aborted ? (this.#ac.signal.reason as ApiError | undefined)?.code : undefined;
    return code === "client_closed"
      ? "cancelled"
      : code === "request_timeout"
      ? "timeout"
      : code === "shutting_down"
      ? "shutdown"
      : "error";
  }

  /** Usage so far: each distinct prompt counted once, completions summed over choices. */
  usage(): UsageBody {
    const prompts = new Map(this.specs.map((s) => [s.promptIndex, s.request.prompt.length]));
    const prompt = [...prompts.values()].reduce((a, b) => a + b, 0);
    const { completion, cached } = this.#usage;
    return {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      prompt_tokens_details: { cached_tokens: Math.min(cached, prompt) },
    };
  }

  /** The first choice's {@linkcode TimingsBody}, once it is done (null before). */
  timings(): TimingsBody | null {
    return this.#timings;
  }

  /**
   * Events of all runs as `[choiceIndex, event]`, in arrival order. If any run fails, the others
   * are cancelled and the error is rethrown as an {@linkcode ApiError}.
   */
  async *events(): AsyncGenerator<[number, GenerationEvent]> {
    const iters = this.#runs.map((r) => r[Symbol.asyncIterator]());
    type Step = { i: number; r?: IteratorResult<GenerationEvent>; e?: unknown };
    const next = (i: number): Promise<Step> => iters[i].next().then((r) => ({ i, r }), (e) => ({ i, e }));
    const pending = new Map(iters.map((_, i) => [i, next(i)]));
    const lastAt = iters.map(() => 0);
    let complete = false;
    try {
      while (pending.size) {
        const { i, r, e } = await Promise.race(pending.values());
        if (e !== undefined || !r) throw e;
        if (r.done) {
          pending.delete(i);
          continue;
        }
        pending.set(i, next(i));
        this.#tap(i, r.value, lastAt);
        yield [i, r.value];
      }
      complete = true;
    } catch (e) {
      const cause = this.#ac.signal.aborted ? this.#ac.signal.reason : e;
      const err = toApiError(cause);
      if (err.status >= 500 && !(cause instanceof ApiError)) {
        this.#deps.log("error", { msg: "generation failed", id: this.#rec.id, error: String(cause) });
      }
      this.cancel(err);
      this.#rec.error = err;
      throw err;
    } finally {
      if (!complete) this.cancel(clientClosed()); // the consumer stopped early
    }
  }

  /** Counts one event into the request record and the metrics. */
  #tap(i: number, ev: GenerationEvent, lastAt: number[]): void {
    const { metrics } = this.#deps, rec = this.#rec;
    if (ev.type === "token") {
      this.#tokens[i]++;
      const now = performance.now();
      if (lastAt[i]) metrics.tokenLatency.observe((now - lastAt[i]) / 1000);
      lastAt[i] = now;
    } else if (ev.type === "done") {
      this.#finished[i] = true;
      const { usage, timings } = ev;
      this.#usage.completion += usage.completionTokens;
      if (i === 0) this.#usage.cached = usage.cachedTokens;
      metrics.promptTokens.inc({}, usage.promptTokens);
      metrics.cachedTokens.inc({}, usage.cachedTokens);
      metrics.generatedTokens.inc({}, usage.completionTokens);
      metrics.finished.inc({ reason: ev.finishReason });
      if (usage.completionTokens > 0) metrics.ttft.observe(timings.ttftMs / 1000);
      const u = this.usage();
      rec.promptTokens = u.prompt_tokens;
      rec.completionTokens = u.completion_tokens;
      rec.cachedTokens = u.prompt_tokens_details.cached_tokens;
      if (i === 0) {
        const round = (x: number) => Math.round(x * 100) / 100;
        this.#timings = {
          cache_n: usage.cachedTokens,
          prompt_n: usage.promptTokens - usage.cachedTokens,
          predicted_n: usage.completionTokens,
          queue_ms: round(timings.queueMs),
          ttft_ms: round(timings.ttftMs),
          predicted_ms: round(timings.decodeMs),
          predicted_per_second: round(timings.decodeTokensPerSecond),
        };
      }
      if (i === 0 && usage.completionTokens > 0) rec.ttftMs = timings.ttftMs;
      if (i === 0 && timings.decodeTokensPerSecond > 0) rec.tokensPerSecond = timings.decodeTokensPerSecond;
      if (!rec.finishReasons.includes(ev.finishReason)) rec.finishReasons.push(ev.finishReason);
    }
  }
}

/** `id`, `created` and `model` of a response. */
export interface Meta {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

/** The response's id (from the request id) and model. */
export function responseMeta(c: Context<AppEnv>, prefix: string): Meta {
  return {
    id: `${prefix}-${c.get("record").id}`,
    created: Math.floor(Date.now() / 1000),
    model: c.get("engine").info.id,
  };
}

/** Streams `chunks()` as SSE, or answers `whole()` as JSON; either way ends `gen`. */
export async function respond(
  c: Context<AppEnv>,
  gen: Generation,
  stream: boolean,
  body: { chunks: () => AsyncIterable<unknown>; whole: () => Promise<unknown> },
): Promise<Response> {
  if (stream) return sseResponse(c, body.chunks(), gen, gen.keepAliveSeconds);
  try {
    return c.json(await body.whole());
  } finally {
    gen.end();
  }
}
