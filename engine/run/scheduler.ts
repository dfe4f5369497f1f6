/**
 * Continuous batching over a fixed set of KV slots: a bounded FIFO queue feeds free slots; every
 * step gathers one decode token of each generating sequence plus prefill chunks of new ones into a
 * single forward call, so one pass over the weights serves every active sequence.
 *
 * - Admission reuses the longest cached prefix of the prompt (multi-turn chats re-send their
 *   history): a free slot is chosen so that no conversation is evicted for nothing
 *   ({@linkcode chooseSlot}), the prefix is copied from whichever slot holds it, and a slot's
 *   cache that is about to be overwritten is saved to the host-memory {@linkcode PromptCache}
 *   (when there is one), from which a later prompt restores it.
 * - While sequences are decoding, a new prompt joins in chunks of at most `prefillChunk` tokens, so
 *   running streams keep flowing.
 * - A cancelled sequence (its signal aborted: client gone, timeout) leaves before the next step;
 *   if every sequence of a running step is cancelled, the step itself is aborted.
 * - Failures stay with the sequences they concern: an exception while sampling or detokenizing one
 *   row ends that sequence only; a failed step (not a dead worker) ends the step's sequences and the
 *   next step runs; a sequence that cannot be stepped is ended, never retried in a loop. Only a
 *   broken worker pool makes the engine unavailable.
 *
 * Per-token results do not depend on what else is in the batch, so output is the same whatever the
 * concurrency.
 *
 * @module
 */
import { DrainingError, EngineUnavailableError, QueueFullError } from "./errors.ts";
import { ForwardAbortedError, type ModelRuntime } from "./runtime.ts";
import type { PromptCache, PromptCacheStats } from "./prompt_cache.ts";
import { PoolBrokenError } from "./thread_pool.ts";
import type { Sequence } from "./sequence.ts";
import { chooseSlot } from "./slot_choice.ts";

export interface SchedulerOptions {
  /** Requests that may wait for a slot; more get QueueFullError. */
  readonly maxQueue: number;
  /** Prompt tokens per step while other sequences are decoding. */
  readonly prefillChunk: number;
  /** Host-memory cache of prompt KV states; none: only the slots' caches are reused. */
  readonly promptCache?: PromptCache;
}

/** Counters and gauges for /metrics and /health. */
export interface SchedulerStats {
  readonly slots: number;
  readonly busySlots: number;
  readonly queued: number;
  readonly maxQueue: number;
  readonly draining: boolean;
  readonly steps: number;
  readonly promptTokens: number;
  readonly cachedPromptTokens: number;
  readonly generatedTokens: number;
  readonly stepSeconds: number;
  /** The host-memory prompt cache, when there is one. */
  readonly promptCache: PromptCacheStats | null;
  /** Seconds the forward step now running has taken so far (0 between steps): the watchdog reads it. */
  readonly stepRunningSeconds: number;
}

interface Slot {
  /** Tokens whose K/V are in this slot's cache, by position. */
  tokens: number[];
  seq: Sequence | null;
  /** Admission / release clock: the least recently used free slot is evicted first. */
  lastUsed: number;
}

interface Row {
  seq: Sequence;
  token: number;
  /** Prompt index for prefill rows, -1 for decode rows. */
  index: number;
  out: boolean;
}

/** Drives a {@linkcode ModelRuntime}; see the module doc. */
export class Scheduler {
  readonly #rt: ModelRuntime;
  readonly #opts: SchedulerOptions;
  readonly #slots: Slot[];
  readonly #queue: Sequence[] = [];
  #loop: Promise<void> | null = null;
  /** performance.now() when the running forward step started; 0 between steps. */
  #stepStart = 0;
  #draining = false;
  #broken: Error | null = null;
  #idle: (() => void)[] = [];
  #clock = 0;
  #stats = { steps: 0, promptTokens: 0, cachedPromptTokens: 0, generatedTokens: 0, stepSeconds: 0 };

  constructor(runtime: ModelRuntime, options: SchedulerOptions) {
    this.#rt = runtime;
    this.#opts = options;
    this.#slots = Array.from(
      { length: runtime.sizes.nSlots },
      () => ({ tokens: [], seq: null, lastUsed: 0 }),
    );
  }

  /** Queues `seq`; throws when the queue is full, the engine drains, or it has failed. */
  submit(seq: Sequence): void {
    if (this.#broken) throw new EngineUnavailableError(`The model is unavailable: ${this.#broken.message}`);
    if (this.#draining) throw new DrainingError();
    // free slots take queued requests at the next step; beyond them, maxQueue may wait
    const free = this.#slots.filter((s) => !s.seq).length;
    if (this.#queue.length >= this.#opts.maxQueue + free) {
      throw new QueueFullError(this.#queue.length, this.#retryAfter());
    }
    this.#queue.push(seq);
    seq.signal?.addEventListener("abort", () => this.#kick(), { once: true });
    this.#kick();
  }

  get stats(): SchedulerStats {
    return {
      slots: this.#slots.length,
      busySlots: this.#slots.filter((s) => s.seq).length,
      queued: this.#queue.length,
      maxQueue: this.#opts.maxQueue,
      draining: this.#draining,
      ...this.#stats,
      promptCache: this.#opts.promptCache?.stats ?? null,
      stepRunningSeconds: this.#stepStart ? (performance.now() - this.#stepStart) / 1000 : 0,
    };
  }

  /** Stops taking work; resolves once every admitted and queued sequence has finished. */
  drain(): Promise<void> {
    this.#draining = true;
    return this.#whenIdle();
  }

  #whenIdle(): Promise<void> {
    if (!this.#loop && !this.#queue.length && !this.#slots.some((s) => s.seq)) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Seconds a client should wait before retrying: a rough time for one sequence to finish. */
  #retryAfter(): number {
    return Math.max(1, Math.min(30, Math.ceil(this.#queue.length / Math.max(1, this.#slots.length))));
  }

  #kick(): void {
    if (this.#loop) return;
    this.#loop = this.#run().catch((e) => this.#failAll(e)).finally(() => {
      this.#loop = null;
      // #run returns only when no sequence can run: anything here arrived since, so this is no loop
      if (this.#queue.length || this.#slots.some((s) => s.seq)) this.#kick();
      else for (const f of this.#idle.splice(0)) f();
    });
  }

  async #run(): Promise<void> {
    for (;;) {
      this.#reap();
      if (this.#broken) return;
      this.#admit();
      const rows = this.#build();
      if (!rows.length) {
        if (this.#failStalled()) continue; // their slots are free now: admit the queue
        return;
      }
      const logits = await this.#forward(rows);
      if (!logits) continue;
      await this.#grammarMasks(rows);
      this.#consume(rows, logits);
    }
  }

  /**
   * Ends the admitted sequences that the last #build gave no row (not finished, not cancelled,
   * nothing pending, prompt all fed): they could never progress. Returns whether there were any.
   */
  #failStalled(): boolean {
    let any = false;
    for (const slot of this.#slots) {
      const seq = slot.seq;
      if (!seq || seq.finished || seq.cancelled) continue;
      seq.fail(new Error(`internal error: the sequence in slot ${seq.slot} has nothing to run`));
      slot.seq = null;
      slot.tokens = [];
      any = true;
    }
    this.#reap();
    return any;
  }

  /** An exception escaped a step: end every sequence (they share the step) and free every slot. */
  #failAll(e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    for (const slot of this.#slots) {
      if (slot.seq && !slot.seq.finished) slot.seq.fail(err);
      slot.seq = null;
      slot.tokens = [];
    }
    for (const seq of this.#queue.splice(0)) seq.fail(err);
  }

  /** Removes cancelled sequences (queued or running) and frees their slots. */
  #reap(): void {
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const seq = this.#queue[i];
      if (seq.cancelled) {
        this.#queue.splice(i, 1);
        seq.fail(seq.signal!.reason);
      }
    }
    for (const slot of this.#slots) {
      const seq = slot.seq;
      if (!seq) continue;
      if (seq.cancelled && !seq.finished) seq.fail(seq.signal!.reason);
      if (seq.finished) {
        slot.seq = null;
        slot.lastUsed = ++this.#clock;
      }
    }
  }

  #admit(): void {
    while (this.#queue.length) {
      const views = this.#slots.map((s) => ({ tokens: s.tokens, busy: !!s.seq, lastUsed: s.lastUsed }));
      const seq = this.#queue[0];
      const prompt = seq.request.prompt;
      // prompt logprobs need the logits of every prompt position: nothing can be reused (nor when
      // the request says not to)
      const reusable = seq.request.promptLogprobs || seq.request.cachePrompt === false
        ? 0
        : prompt.length - 1;
      const choice = chooseSlot(views, prompt, reusable);
      if (!choice) return;
      this.#queue.shift();
      const slot = this.#slots[choice.slot];
      let n: number;
      try {
        n = this.#fill(choice.slot, prompt, reusable, choice);
      } catch (e) {
        seq.fail(e); // this request only; what the slot holds is unknown now
        slot.tokens = [];
        continue;
      }
      slot.seq = seq;
      slot.tokens = prompt.slice(0, n);
      slot.lastUsed = ++this.#clock;
      seq.slot = choice.slot;
      seq.admittedAt = performance.now();
      seq.fed = n;
      seq.cachedTokens = n;
      this.#stats.cachedPromptTokens += n;
    }
  }

  /**
   * Puts the longest available prefix of `prompt` into slot `index`: what it keeps, then a copy
   * from a slot that holds more, then blocks of the host cache beyond that. What the slot held
   * beyond its kept prefix is saved to the host cache first. Returns the positions now in place.
   */
  #fill(index: number, prompt: readonly number[], reusable: number, choice: {
    keep: number;
    source: number;
    sourceLength: number;
  }): number {
    const kv = this.#rt.kv, cache = this.#opts.promptCache, slot = this.#slots[index];
    let n = choice.keep;
    if (cache?.enabled && slot.tokens.length > n) {
      cache.save(slot.tokens, slot.tokens.length, (from, to) => kv.read(index, from, to));
    }
    if (choice.sourceLength > n) {
      kv.copy(choice.source, index, n, choice.sourceLength);
      n = choice.sourceLength;
    }
    if (cache?.enabled && reusable - n >= cache.blockTokens) {
      const blocks = cache.lookup(prompt, reusable, n), b = cache.blockTokens;
      for (let i = Math.floor(n / b); i < blocks.length; i++) {
        const first = Math.max(0, n - i * b);
        kv.write(index, i * b, blocks[i], b, first);
      }
      n = Math.max(n, blocks.length * b);
    }
    return n;
  }

  /** The rows of the next step: decode tokens first, then prefill chunks. */
  #build(): Row[] {
    const { maxBatch, maxOut } = this.#rt.sizes;
    const rows: Row[] = [];
    let outs = 0;
    const active = this.#slots.map((s) => s.seq).filter((s): s is Sequence =>
      !!s && !s.finished && !s.cancelled
    );
    const { nVocab } = this.#rt.config, nCtx = this.#rt.sizes.nCtx;
    for (const seq of active) {
      if (seq.pending < 0 || rows.length >= maxBatch || outs >= maxOut) continue;
      if (!(Number.isInteger(seq.pending) && seq.pending < nVocab && seq.pendingPos < nCtx)) {
        seq.fail(
          new Error(`internal error: token ${seq.pending} at position ${seq.pendingPos} cannot be fed`),
        );
        continue;
      }
      rows.push({ seq, token: seq.pending, index: -1, out: true });
      outs++;
    }
    let prefillBudget = rows.length ? this.#opts.prefillChunk : maxBatch;
    const prefilling = active.filter((s) => s.fed < s.promptLength).sort((a, b) =>
      a.admittedAt - b.admittedAt
    );
    for (const seq of prefilling) {
      const left = seq.promptLength - seq.fed;
      let n = Math.min(left, maxBatch - rows.length, prefillBudget);
      const allOut = !!seq.request.promptLogprobs;
      if (allOut) n = Math.min(n, maxOut - outs);
      else if (n === left && outs >= maxOut) n = left - 1; // the last prompt token needs a logits row
      if (n <= 0) continue;
      for (let k = 0; k < n; k++) {
        const index = seq.fed + k;
        const out = allOut || index === seq.promptLength - 1;
        rows.push({ seq, token: seq.request.prompt[index], index, out });
        if (out) outs++;
      }
      prefillBudget -= n;
    }
    return rows;
  }

  /** Runs one step; null when it was aborted because all its sequences were cancelled. */
  async #forward(rows: Row[]): Promise<Float32Array | null> {
    const seqs = [...new Set(rows.map((r) => r.seq))];
    const ac = new AbortController();
    const check = () => seqs.every((s) => s.cancelled) && ac.abort();
    for (const s of seqs) s.signal?.addEventListener("abort", check);
    const t0 = this.#stepStart = performance.now();
    try {
      const logits = await this.#rt.forward({
        tokens: rows.map((r) => r.token),
        pos: rows.map((r) => (r.index >= 0 ? r.index : r.seq.pendingPos)),
        slot: rows.map((r) => r.seq.slot),
        outIdx: rows.flatMap((r, i) => (r.out ? [i] : [])),
      }, ac.signal);
      this.#stats.steps++;
      this.#stats.stepSeconds += (performance.now() - t0) / 1000;
      return logits;
    } catch (e) {
      if (e instanceof ForwardAbortedError) return null;
      const cause = e instanceof Error ? e : new Error(String(e));
      if (e instanceof PoolBrokenError) {
        // a worker died: nothing can run any more
        this.#broken = cause;
        this.#failAll(new EngineUnavailableError(`The model failed: ${cause.message}`));
        return null;
      }
      // the step failed, the workers did not: end this step's sequences, the next step runs
      for (const seq of seqs) {
        seq.fail(cause);
        const slot = this.#slots[seq.slot];
        slot.seq = null;
        slot.tokens.length = Math.min(slot.tokens.length, seq.fed);
      }
      return null;
    } finally {
      this.#stepStart = 0;
      for (const s of seqs) s.signal?.removeEventListener("abort", check);
    }
  }

  /**
   * Waits for the grammar masks of the rows about to be sampled (the worker computes them while
   * the forward pass runs, so this rarely waits); the wait counts as grammar time.
   */
  async #grammarMasks(rows: Row[]): Promise<void> {
    const waits: [Sequence, Promise<void>][] = [];
    for (const r of rows) {
      const p = r.out ? r.seq.grammarReady() : undefined;
      if (p) waits.push([r.seq, p]);
    }
    if (!waits.length) return;
    const t0 = performance.now();
    await Promise.all(waits.map((w) => w[1]));
    const dt = performance.now() - t0;
    for (const [seq] of waits) seq.grammarMs += dt;
  }

  #consume(rows: Row[], logits: Float32Array): void {
    const V = this.#rt.config.nVocab, nCtx = this.#rt.sizes.nCtx;
    let j = 0;
    for (const row of rows) {
      const seq = row.seq;
      const slot = this.#slots[seq.slot];
      slot.tokens[row.index >= 0 ? row.index : seq.pendingPos] = row.token;
      const lg = row.out ? logits.subarray(j * V, ++j * V) : null;
      if (row.index >= 0) {
        seq.fed++;
        this.#stats.promptTokens++;
      }
      if (!lg || seq.cancelled || seq.finished) continue;
      try {
        this.#take(row, seq, lg, nCtx);
      } catch (e) {
        seq.fail(e); // this sequence only: its slot is freed at the next step
      }
    }
  }

  /** What one logits row does for its sequence: a prompt logprob, the end, or the next token. */
  #take(row: Row, seq: Sequence, lg: Float32Array, nCtx: number): void {
    if (row.index >= 0 && row.index < seq.promptLength - 1) {
      seq.promptLogprob(row.index + 1, lg);
      return;
    }
    if (row.index >= 0) {
      seq.flushPromptLogprobs();
      if (seq.request.maxTokens === 0) {
        seq.finishNow("length");
        return;
      }
    }
    const before = seq.generated;
    try {
      seq.next(lg, nCtx);
    } finally {
      this.#stats.generatedTokens += seq.generated - before;
    }
  }

  /** Drains, then frees the runtime. */
  async close(): Promise<void> {
    await this.drain();
    await this.#rt.close();
  }
}
