/**
 * The host side of constrained decoding: compiles {@linkcode GrammarSpec}s and runs one matcher
 * per sequence in the grammar worker (`grammar_worker.ts`), so neither compiling nor masking
 * blocks the HTTP isolate.
 *
 * The worker starts on first use and builds XGrammar's tokenizer info from the vocabulary once
 * (byte-level BPE: each token's bytes; special and unused tokens can never be generated inside a
 * grammar, the end-of-turn/end-of-text tokens end it). Compiled grammars are cached by spec (least
 * recently used first out, `cacheSize` kept); a request pins its grammar until its sequences have
 * opened their matchers.
 *
 * Per token: {@linkcode GrammarMatcher.advance} posts the accepted token; the worker answers with
 * the bitmask of the tokens allowed next, usually while the next forward pass still runs.
 *
 * @module
 */
import { BYTE_TO_CHAR } from "./byte_unicode.ts";
import type { GrammarSpec } from "./grammar.ts";
import { GrammarError } from "./grammar_error.ts";
import type {
  ErrorData,
  GrammarNotice,
  GrammarReply,
  GrammarRequest,
  GrammarStats,
} from "./grammar_worker.ts";
import { type Tokenizer, TokenType } from "./tokenizer.ts";

/** Options of {@linkcode Grammars}. */
export interface GrammarsOptions {
  /** Compiled grammars kept when no request uses them (default 32). */
  readonly cacheSize?: number;
}

type Pending = { resolve: (r: GrammarReply) => void; reject: (e: Error) => void };
type Request = GrammarRequest extends infer R ? R extends { id: number } ? Omit<R, "id"> : never : never;

function toError(e: ErrorData): Error {
  if (e.name === "GrammarError") {
    const err = new GrammarError("", { keyword: e.keyword, path: e.path });
    err.message = e.message;
    return err;
  }
  return new Error(e.message);
}

/**
 * The grammars of one model.
 *
 * @example
 * ```ts ignore
 * const grammars = new Grammars(tokenizer, [128009, 128001]);
 * const g = await grammars.compile({ type: "json_object" });
 * const m = g.matcher();
 * g.release();
 * m.advance(-1);
 * await m.ready; // m.mask: the tokens allowed first
 * ```
 */
export class Grammars {
  readonly #tokenizer: Tokenizer;
  readonly #stops: readonly number[];
  readonly #cacheSize: number;
  readonly #pending = new Map<number, Pending>();
  #worker: Worker | null = null;
  #ready: Promise<void> | null = null;
  #nextId = 1;
  #nextMatcher = 1;
  #closed = false;
  /** Milliseconds the tokenizer info took to build (0 until the worker started). */
  initMs = 0;

  constructor(tokenizer: Tokenizer, stopIds: readonly number[], options: GrammarsOptions = {}) {
    this.#tokenizer = tokenizer;
    this.#stops = stopIds;
    this.#cacheSize = options.cacheSize ?? 32;
  }

  /**
   * Compiles `spec` (or takes it from the cache). Throws {@linkcode GrammarError} for a grammar or
   * schema that cannot be enforced.
   */
  async compile(spec: GrammarSpec): Promise<CompiledGrammar> {
    await this.#start();
    const r = await this.#call({ op: "compile", spec }) as {
      grammar: number;
      compileMs: number;
      cached: boolean;
    };
    return new CompiledGrammar(this, r.grammar, r.compileMs, r.cached);
  }

  /** The worker's counters. */
  async stats(): Promise<GrammarStats> {
    await this.#start();
    return ((await this.#call({ op: "stats" })) as { stats: GrammarStats }).stats;
  }

  /** Stops the worker; pending calls fail. */
  close(): void {
    this.#closed = true;
    this.#stop(new Error("The grammar engine was closed"));
  }

  /** @internal */
  notify(msg: GrammarNotice): void {
    this.#worker?.postMessage(msg);
  }

  /** @internal */
  newMatcherId(): number {
    return this.#nextMatcher++;
  }

  /** @internal */
  call(req: Request): Promise<GrammarReply> {
    return this.#call(req);
  }

  #start(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("The grammar engine was closed"));
    if (this.#ready) return this.#ready;
    const worker = new Worker(new URL("./grammar_worker.ts", import.meta.url), { type: "module" });
    this.#worker = worker;
    worker.onmessage = (ev: MessageEvent<GrammarReply>) => {
      const p = this.#pending.get(ev.data.id);
      if (!p) return;
      this.#pending.delete(ev.data.id);
      if ("error" in ev.data) p.reject(toError(ev.data.error));
      else p.resolve(ev.data);
    };
    worker.onerror = (ev) => {
      ev.preventDefault();
      this.#stop(new Error(`The grammar worker failed: ${ev.message}`));
    };
    const t0 = performance.now();
    const vocab = this.#vocab();
    const ready = this.#call({ op: "init", vocab, stops: [...this.#stops], cache: this.#cacheSize }).then(
      () => {
        this.initMs = performance.now() - t0;
      },
    );
    this.#ready = ready;
    ready.catch((e: Error) => {
      if (this.#ready === ready) this.#stop(e); // the next call starts a new worker
    });
    return ready;
  }

  #stop(reason: Error): void {
    this.#worker?.terminate();
    this.#worker = null;
    this.#ready = null;
    for (const p of this.#pending.values()) p.reject(reason);
    this.#pending.clear();
  }

  #call(req: Request): Promise<GrammarReply> {
    const worker = this.#worker;
    if (!worker) return Promise.reject(new Error("The grammar worker is not running"));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ ...req, id });
    });
  }

  /** The vocabulary as XGrammar's byte-level strings; "" for tokens a grammar never allows. */
  #vocab(): string[] {
    const tok = this.#tokenizer;
    const out: string[] = new Array(tok.vocabSize);
    for (let id = 0; id < tok.vocabSize; id++) {
      if (tok.isSpecial(id) || tok.tokenType(id) === TokenType.UNUSED) {
        out[id] = "";
        continue;
      }
      let s = "";
      for (const b of tok.tokenBytes(id)) s += BYTE_TO_CHAR[b];
      out[id] = s;
    }
    return out;
  }
}

/** A compiled grammar, pinned in the worker's cache until {@linkcode CompiledGrammar.release}. */
export class CompiledGrammar {
  #released = false;

  constructor(
    readonly grammars: Grammars,
    readonly id: number,
    /** Time to convert and compile (0 when cached). */
    readonly compileMs: number,
    readonly cached: boolean,
  ) {}

  /** A new matcher at the grammar's start. */
  matcher(): GrammarMatcher {
    if (this.#released) throw new Error("The grammar was released");
    return new GrammarMatcher(this.grammars, this.id);
  }

  /** Unpins the grammar (matchers keep it alive); idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.grammars.notify({ op: "release", grammar: this.id });
  }
}

/**
 * One sequence's position in a grammar. Call {@linkcode GrammarMatcher.advance} with -1 first,
 * then with each accepted token; after `ready` resolves, `mask` (or `end`, or `error`) is the
 * answer for the next token.
 */
export class GrammarMatcher {
  readonly #grammars: Grammars;
  readonly #id: number;
  /** Resolves when the answer for the next token is in; never rejects. */
  ready: Promise<void> = Promise.resolve();
  /** Bit `i` set: token `i` is allowed next. */
  mask: Int32Array | null = null;
  /** The grammar is complete: only an end token may follow. */
  end = false;
  /** Why the matcher failed (the sequence must end with this error). */
  error: Error | null = null;
  /** Whether an answer is outstanding. */
  pending = false;
  #closed = false;

  constructor(grammars: Grammars, grammar: number) {
    this.#grammars = grammars;
    this.#id = grammars.newMatcherId();
    grammars.notify({ op: "open", matcher: this.#id, grammar });
  }

  /** Accepts `token` (-1: none, at the start) and asks for the next mask. */
  advance(token: number): void {
    if (this.#closed) return;
    this.mask = null;
    this.pending = true;
    this.ready = this.#grammars.call({ op: "step", matcher: this.#id, token }).then(
      (r) => {
        const { mask, end } = r as { mask: Int32Array; end: boolean };
        this.mask = mask;
        this.end = end;
      },
      (e: Error) => {
        this.error = e;
      },
    ).finally(() => {
      this.pending = false;
    });
  }

  /** Frees the matcher in the worker; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#grammars.notify({ op: "close", matcher: this.#id });
  }
}
