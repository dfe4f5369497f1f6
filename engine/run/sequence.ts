/**
 * One request's generation state: its prompt, sampler, incremental UTF-8 decoder, stop-string
 * matcher and the event stream its caller reads. The scheduler feeds it logits rows; it decides
 * the next token, what text is safe to release, and when to finish.
 *
 * @module
 */
import { AsyncQueue } from "./_async_queue.ts";
import { ModelOutputError } from "./errors.ts";
import { IncrementalDecoder } from "../text/detokenizer.ts";
import { logprobs as tokenLogprobs, Sampler, type SamplingParams } from "./sampler.ts";
import { StopStringMatcher } from "../text/stop_strings.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import type { CompiledGrammar, GrammarMatcher } from "../text/grammar_service.ts";

/** What to generate. */
export interface GenerateRequest {
  /** Prompt token ids, used as given (BOS included by the caller when wanted). */
  readonly prompt: readonly number[];
  /** Most tokens to generate. */
  readonly maxTokens: number;
  readonly sampling: Partial<SamplingParams>;
  /** Stop strings: generation ends before any of them, which is never emitted. */
  readonly stop?: readonly string[];
  /** Token ids that end generation (not emitted); default: the model's EOS and end-of-turn. */
  readonly stopTokens?: readonly number[];
  /** Log-probabilities of generated tokens with this many alternatives (0: only the chosen). */
  readonly logprobs?: number;
  /** Log-probabilities of the prompt tokens (for `echo` + `logprobs`, perplexity through the API). */
  readonly promptLogprobs?: boolean;
  /** The stop tokens cannot be sampled before this many tokens are generated (default 0). */
  readonly minTokens?: number;
  /** The stop tokens are never sampled (llama.cpp's `ignore_eos`); generation ends on length. */
  readonly ignoreEos?: boolean;
  /** Report `done.meanLogprob` (for `best_of`). */
  readonly score?: boolean;
  /** Reuse cached KV of an earlier prompt (default true; false: compute the whole prompt). */
  readonly cachePrompt?: boolean;
  /**
   * Constrains every token to this grammar; generation ends ("stop") when it is complete. The
   * sequence opens its own matcher at once: the caller may release the grammar afterwards.
   */
  readonly grammar?: CompiledGrammar;
}

/** Log-probability of one token and the most likely alternatives. */
export interface LogprobInfo {
  readonly logprob: number;
  readonly top: readonly { readonly id: number; readonly logprob: number }[];
}

export type FinishReason = "stop" | "length";

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens whose KV cache was reused from the slot's previous sequence. */
  readonly cachedTokens: number;
}

export interface Timings {
  /** Submission to admission into a slot. */
  readonly queueMs: number;
  /** Submission to the first generated token. */
  readonly ttftMs: number;
  /** First to last generated token. */
  readonly decodeMs: number;
  /** Generated tokens per second after the first. */
  readonly decodeTokensPerSecond: number;
  /** Time the grammar added on the critical path: waiting for masks and applying them. */
  readonly grammarMs: number;
}

export type GenerationEvent =
  /** The prompt's log-probabilities (first entry null: nothing predicts the first token). */
  | { readonly type: "prompt"; readonly logprobs: readonly (LogprobInfo | null)[] }
  /** A generated token and the text it releases (possibly "", held back for UTF-8 or stop strings). */
  | { readonly type: "token"; readonly id: number; readonly text: string; readonly logprob?: LogprobInfo }
  /** The end: any last released text, why it stopped, counts and timings. */
  | {
    readonly type: "done";
    readonly text: string;
    readonly finishReason: FinishReason;
    readonly usage: Usage;
    readonly timings: Timings;
    /**
     * Mean log-probability of the sampled tokens, the stop token included (the reply's
     * log-probability per token), when the request asked for `score`; 0 if nothing was sampled.
     */
    readonly meanLogprob?: number;
  };

/** A submitted request inside the scheduler. */
export class Sequence {
  readonly request: GenerateRequest;
  readonly events = new AsyncQueue<GenerationEvent>();
  readonly signal?: AbortSignal;
  readonly submittedAt = performance.now();
  readonly #sampler: Sampler;
  readonly #decoder: IncrementalDecoder;
  readonly #stop: StopStringMatcher;
  readonly #stopTokens: ReadonlySet<number>;
  readonly #stopList: readonly number[];
  readonly #history: number[];
  readonly #promptLogprobs: (LogprobInfo | null)[] = [];
  /** Tokens the tokenizer knows: embedding rows beyond it are never sampled or scored. */
  readonly #vocab: number;
  readonly #matcher: GrammarMatcher | null;
  /** Time spent waiting for grammar masks (the sampler counts the time applying them). */
  grammarMs = 0;

  /** KV slot, once admitted. */
  slot = -1;
  admittedAt = 0;
  firstTokenAt = 0;
  /** Prompt tokens already in the KV cache (reused or computed). */
  fed = 0;
  cachedTokens = 0;
  generated = 0;
  /** The sampled token not yet fed back (decode phase). */
  pending = -1;
  finished = false;
  /** Called once when the sequence ends normally, with its generated ids and the text released. */
  onFinish?: (ids: readonly number[], text: string) => void;
  #text = "";
  #logprobSum = 0;
  #scored = 0;

  constructor(
    request: GenerateRequest,
    tokenizer: Tokenizer,
    defaultStops: readonly number[],
    signal?: AbortSignal,
  ) {
    this.request = request;
    this.signal = signal;
    this.#sampler = new Sampler(request.sampling, tokenizer.vocabSize);
    this.#decoder = new IncrementalDecoder(tokenizer, { skipSpecial: true });
    this.#stop = new StopStringMatcher(request.stop ?? []);
    this.#stopTokens = new Set(request.stopTokens ?? defaultStops);
    this.#stopList = [...this.#stopTokens];
    this.#history = [...request.prompt];
    this.#vocab = tokenizer.vocabSize;
    if (request.promptLogprobs) this.#promptLogprobs.push(null);
    this.#matcher = request.grammar?.matcher() ?? null;
    this.#matcher?.advance(-1);
  }

  /** Resolves when the grammar's mask for the next token is in; undefined without a wait. */
  grammarReady(): Promise<void> | undefined {
    return this.#matcher?.pending ? this.#matcher.ready : undefined;
  }

  get promptLength(): number {
    return this.request.prompt.length;
  }

  /** Position of the pending (sampled, not yet fed) token. */
  get pendingPos(): number {
    return this.promptLength + this.generated - 1;
  }

  get cancelled(): boolean {
    return this.signal?.aborted ?? false;
  }

  /** Records the log-probability of prompt token `index` from the logits of the position before it. */
  promptLogprob(index: number, all: Float32Array): void {
    const logits = checkFinite(all.subarray(0, this.#vocab), index - 1);
    const id = this.request.prompt[index];
    const { logprob, top } = tokenLogprobs(logits, id, this.request.logprobs ?? 0);
    this.#promptLogprobs[index] = { logprob, top };
  }

  /** Emits the prompt log-probabilities once the whole prompt has been fed. */
  flushPromptLogprobs(): void {
    if (this.request.promptLogprobs) this.events.push({ type: "prompt", logprobs: this.#promptLogprobs });
  }

  /**
   * Samples the next token from `logits`; returns whether the sequence continues. `nCtx` bounds
   * the positions its slot holds.
   */
  next(all: Float32Array, nCtx: number): boolean {
    const logits = checkFinite(all.subarray(0, this.#vocab), this.promptLength + this.generated - 1);
    const ban = this.request.ignoreEos || this.generated < (this.request.minTokens ?? 0);
    const m = this.#matcher;
    if (m) {
      if (m.error || !m.mask) {
        this.fail(m.error ?? new Error("The grammar mask is missing"));
        return false;
      }
      if (m.end) { // complete: nothing may follow, whatever min_tokens or ignore_eos ask
        if (!this.firstTokenAt) this.firstTokenAt = performance.now();
        return this.#finish("stop");
      }
    }
    const id = this.#sampler.sample(logits, this.#history, ban ? this.#stopList : [], m?.mask ?? undefined);
    const now = performance.now();
    if (!this.firstTokenAt) this.firstTokenAt = now;
    const lp = this.request.logprobs !== undefined
      ? tokenLogprobs(logits, id, this.request.logprobs)
      : undefined;
    if (this.request.score) {
      this.#logprobSum += lp?.logprob ?? tokenLogprobs(logits, id, 0).logprob;
      this.#scored++;
    }
    if (this.#stopTokens.has(id)) return this.#finish("stop");
    this.generated++;
    this.#history.push(id);
    m?.advance(id);
    const { emit, stopped } = this.#stop.push(this.#decoder.push(id));
    this.#text += emit;
    this.events.push({ type: "token", id, text: emit, logprob: lp });
    if (stopped) return this.#finish("stop", true);
    if (this.generated >= this.request.maxTokens) return this.#finish("length");
    if (this.promptLength + this.generated >= nCtx) return this.#finish("length");
    this.pending = id;
    return true;
  }

  /** Ends without sampling (max_tokens 0: the prompt alone was wanted). */
  finishNow(reason: FinishReason): false {
    return this.#finish(reason);
  }

  #finish(reason: FinishReason, stopped = false): false {
    this.finished = true;
    this.pending = -1;
    this.#matcher?.close();
    const tail = stopped ? "" : this.#stop.push(this.#decoder.flush()).emit + this.#stop.flush();
    this.onFinish?.(this.#history.slice(this.promptLength), this.#text + tail);
    const end = this.firstTokenAt ? performance.now() : 0;
    const decodeMs = this.firstTokenAt ? end - this.firstTokenAt : 0;
    this.events.push({
      type: "done",
      text: tail,
      finishReason: reason,
      usage: {
        promptTokens: this.promptLength,
        completionTokens: this.generated,
        cachedTokens: this.cachedTokens,
      },
      timings: {
        queueMs: this.admittedAt ? this.admittedAt - this.submittedAt : 0,
        ttftMs: this.firstTokenAt ? this.firstTokenAt - this.submittedAt : 0,
        decodeMs,
        decodeTokensPerSecond: this.generated > 1 && decodeMs > 0
          ? ((this.generated - 1) * 1000) / decodeMs
          : 0,
        grammarMs: this.grammarMs + this.#sampler.maskMs,
      },
      ...(this.request.score ? { meanLogprob: this.#scored ? this.#logprobSum / this.#scored : 0 } : {}),
    });
    this.events.close();
    return false;
  }

  /** Ends the stream with an error (cancellation reason, engine failure). */
  fail(error: unknown): void {
    this.finished = true;
    this.#matcher?.close();
    this.events.fail(error);
  }
}

/**
 * `logits` when every value is finite; otherwise a {@linkcode ModelOutputError} that says how many
 * are NaN or infinite and where (`position`: the position of the token these logits follow).
 */
function checkFinite(logits: Float32Array, position: number): Float32Array {
  let bad = 0, first = -1;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (x - x !== 0) { // NaN or +-Infinity
      bad++;
      if (first < 0) first = i;
    }
  }
  if (!bad) return logits;
  const nan = logits.reduce((n, x) => n + (x !== x ? 1 : 0), 0);
  throw new ModelOutputError(
    `The model produced non-finite logits at position ${position}: ${nan} NaN and ${bad - nan} infinite of ` +
      `${logits.length} (the first at token ${first}); its weights are corrupt or its arithmetic overflowed`,
  );
}
