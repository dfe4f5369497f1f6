/**
 * The engine facade: a loaded model, its tokenizer and chat template, and the scheduler that runs
 * generation requests. Everything the HTTP layer needs and nothing about HTTP.
 *
 * @module
 */
import { type ChatMessage, chatStopIds, encodeChat } from "../text/chat_template.ts";
import { ContextOverflowError } from "./errors.ts";
import { loadModel, type LoadOptions } from "../model/loader.ts";
import { PromptCache } from "./prompt_cache.ts";
import { ReplyMemory } from "../text/reply_memory.ts";
import { type ModelRuntime } from "./runtime.ts";
import { Scheduler, type SchedulerStats } from "./scheduler.ts";
import { type GenerateRequest, type GenerationEvent, Sequence } from "./sequence.ts";
import { Tokenizer } from "../text/tokenizer.ts";
import { formatBytes } from "../model/memory_plan.ts";
import type { TernaryLayout } from "../../wasm/loader.ts";
import { Grammars } from "../text/grammar_service.ts";

export interface EngineOptions extends LoadOptions {
  /** Requests that may wait for a slot (default 16). */
  readonly maxQueue?: number;
  /** Prompt tokens per step while other sequences decode (default 32). */
  readonly prefillChunk?: number;
  /**
   * Bytes of host memory for prompt KV states evicted from the slots (default
   * {@linkcode DEFAULT_CACHE_MEM}; 0: off).
   */
  readonly cacheMemBytes?: number;
  /** Compiled grammars kept in the cache when no request uses them (default 32). */
  readonly grammarCache?: number;
}

/** Default size of the host-memory prompt cache: 256 MiB (about 3,400 positions of 2B4T). */
export const DEFAULT_CACHE_MEM = 256 * 2 ** 20;

/** What the server reports about the loaded model. */
export interface ModelInfo {
  readonly id: string;
  readonly path: string;
  readonly arch: string;
  readonly nCtx: number;
  /** The context length the model was trained with (its GGUF `context_length`). */
  readonly nCtxTrain: number;
  readonly nSlots: number;
  readonly nVocab: number;
  readonly kernel: string;
  /** Which ternary kernels run, and why. */
  readonly ternary: {
    /** `r16`: the kernels V8 fuses into 256-bit code; `r4`: the 128-bit ones. */
    readonly layout: TernaryLayout;
    /** Decode G multiply-adds/s of one thread per layout in the start-up probe (null: not probed). */
    readonly probe: Readonly<Record<TernaryLayout, number>> | null;
  };
  readonly threads: number;
  readonly headType: string;
  readonly activation: string;
  readonly loadMs: number;
  readonly memory: {
    readonly total: number;
    readonly weights: number;
    readonly kv: number;
    readonly scratch: number;
  };
}

/**
 * A loaded model ready to generate.
 *
 * @example
 * ```ts ignore
 * const engine = await Engine.load("models/default.gguf", { threads: 2 });
 * const prompt = engine.encodeChat([{ role: "user", content: "Hello" }]);
 * for await (const ev of engine.generate({ prompt, maxTokens: 32, sampling: { temperature: 0 } })) {
 *   if (ev.type === "token") Deno.stdout.writeSync(new TextEncoder().encode(ev.text));
 * }
 * await engine.close();
 * ```
 */
export class Engine {
  readonly info: ModelInfo;
  readonly tokenizer: Tokenizer;
  /** Token ids that end a reply: end-of-turn and end-of-text. */
  readonly stopTokens: readonly number[];
  readonly runtime: ModelRuntime;
  /** Constrained decoding: compiles grammars for {@linkcode GenerateRequest.grammar}. */
  readonly grammars: Grammars;
  readonly #scheduler: Scheduler;
  readonly #replies: ReplyMemory;

  private constructor(
    info: ModelInfo,
    tokenizer: Tokenizer,
    runtime: ModelRuntime,
    scheduler: Scheduler,
    grammarCache?: number,
  ) {
    this.info = info;
    this.tokenizer = tokenizer;
    this.runtime = runtime;
    this.stopTokens = chatStopIds(tokenizer);
    this.#scheduler = scheduler;
    this.#replies = new ReplyMemory(tokenizer);
    this.grammars = new Grammars(tokenizer, this.stopTokens, { cacheSize: grammarCache });
  }

  /** Loads the GGUF at `path`, its tokenizer, and starts the kernel workers. */
  static async load(path: string, options: EngineOptions = {}): Promise<Engine> {
    let tokenizer: Tokenizer | undefined;
    let tokenizerError: Error | undefined;
    const { config, runtime, loadMs } = await loadModel(path, {
      ...options,
      // built while the workers read the weights (saves its ~150 ms on 2B4T's vocabulary)
      whileLoading: (gguf) => {
        try {
          tokenizer = Tokenizer.fromGgufMetadata(gguf.metadata);
        } catch (e) {
          tokenizerError = e as Error;
        }
      },
    });
    if (!tokenizer) {
      await runtime.close();
      throw new TypeError(`Cannot load model "${path}": ${tokenizerError?.message ?? "no tokenizer"}`);
    }
    if (tokenizer.vocabSize > config.nVocab) {
      await runtime.close();
      throw new TypeError(
        `Cannot load model "${path}": the tokenizer has ${tokenizer.vocabSize} tokens but the embedding ${config.nVocab} rows`,
      );
    }
    const plan = runtime.plan;
    const info: ModelInfo = Object.freeze({
      id: config.name,
      path,
      arch: config.arch,
      nCtx: runtime.sizes.nCtx,
      nCtxTrain: config.contextLength,
      nSlots: runtime.sizes.nSlots,
      nVocab: config.nVocab,
      kernel: runtime.kernel,
      ternary: Object.freeze({
        layout: runtime.ternary.layout,
        probe: runtime.ternary.probe
          ? Object.freeze({
            r4: runtime.ternary.probe.gmacs.r4.decode,
            r16: runtime.ternary.probe.gmacs.r16.decode,
          })
          : null,
      }),
      threads: runtime.sizes.threads,
      headType: runtime.headType,
      activation: config.activation,
      loadMs,
      memory: Object.freeze({ total: plan.totalBytes, ...plan.bytes }),
    });
    const cacheMem = options.cacheMemBytes ?? DEFAULT_CACHE_MEM;
    const scheduler = new Scheduler(runtime, {
      maxQueue: options.maxQueue ?? 16,
      prefillChunk: options.prefillChunk ?? 32,
      promptCache: cacheMem > 0 ? new PromptCache(cacheMem, runtime.kv.bytesPerToken) : undefined,
    });
    return new Engine(info, tokenizer, runtime, scheduler, options.grammarCache);
  }

  /** One line for start-up logs: model, kernel and which ternary path runs, threads, memory. */
  describe(): string {
    const i = this.info, m = i.memory, pc = this.#scheduler.stats.promptCache;
    const cache = pc ? `prompt cache up to ${formatBytes(pc.capacityBytes)}` : "prompt cache off";
    return `${i.id} (${i.arch}, ${i.activation}, head ${i.headType}) | kernel ${i.kernel} x ${i.threads} threads, ` +
      `${describeTernary(i.ternary)} | ` +
      `${i.nSlots} slot(s) x ${i.nCtx} ctx | memory ${formatBytes(m.total)} (weights ${
        formatBytes(m.weights)
      }, ` +
      `KV ${formatBytes(m.kv)}, scratch ${formatBytes(m.scratch)}) | ${cache} | loaded in ${
        i.loadMs.toFixed(0)
      } ms`;
  }

  /**
   * The chat prompt in the trained 2B4T format, with exactly one BOS. An assistant message whose
   * text this engine generated recently is given the token ids it generated (see
   * {@linkcode ReplyMemory}), so the history matches the KV cache that turn left behind.
   */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    return encodeChat(this.tokenizer, messages, { replyTokens: (text) => this.#replies.lookup(text) });
  }

  /**
   * Starts generating. Throws at once (before any event) when the request cannot be admitted:
   * `ContextOverflowError`, `QueueFullError`, `DrainingError`, `EngineUnavailableError`, or a
   * `RangeError` for token ids outside the vocabulary. The stream throws `signal.reason` if the
   * signal aborts first.
   */
  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerationEvent> {
    const n = request.prompt.length;
    if (n === 0) throw new RangeError("The prompt is empty");
    for (const id of request.prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= this.info.nVocab) {
        throw new RangeError(`Token id ${id} is outside the vocabulary (0..${this.info.nVocab - 1})`);
      }
    }
    if (!Number.isInteger(request.maxTokens) || request.maxTokens < 0) {
      throw new RangeError(`maxTokens must be a non-negative integer, got ${request.maxTokens}`);
    }
    if (n + request.maxTokens > this.info.nCtx) {
      throw new ContextOverflowError(n, request.maxTokens, this.info.nCtx);
    }
    const seq = new Sequence(request, this.tokenizer, this.stopTokens, signal);
    seq.onFinish = (ids, text) => this.#replies.remember(ids, text);
    if (signal?.aborted) throw signal.reason;
    this.#scheduler.submit(seq);
    return seq.events;
  }

  stats(): SchedulerStats {
    return this.#scheduler.stats;
  }

  /** Stops admitting; resolves when every running and queued request has finished. */
  drain(): Promise<void> {
    return this.#scheduler.drain();
  }

  /** Drains, then stops the workers. */
  async close(): Promise<void> {
    try {
      await this.#scheduler.close();
    } finally {
      this.grammars.close();
    }
  }
}

/**
 * Which ternary path runs, for the start-up banner: "ternary rows in 16s (the kernels V8 fuses into
 * 256-bit code; probe 94 vs 51 G MAC/s a thread)" or "ternary rows in 4s (the 128-bit kernels; no
 * probe)". The probe's figures say whether fusing happened: about twice the 128-bit speed where it does.
 */
export function describeTernary(t: ModelInfo["ternary"]): string {
  const path = t.layout === "r16"
    ? "rows in 16s (the kernels V8 fuses into 256-bit code"
    : "rows in 4s (the 128-bit kernels";
  const other = t.layout === "r16" ? "r4" : "r16";
  const why = t.probe
    ? `probe ${t.probe[t.layout].toFixed(0)} vs ${t.probe[other].toFixed(0)} G MAC/s a thread`
    : "no probe";
  return `ternary ${path}; ${why})`;
}
