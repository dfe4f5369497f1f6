/**
 * The grammar worker: owns XGrammar (compiled grammars cannot leave the WebAssembly instance that
 * compiled them, so compiling and matching both live here, off the HTTP isolate). Messages are
 * handled strictly in order; see `grammar_service.ts` for the protocol.
 *
 * Two XGrammar instances: a small one parses every grammar first, because XGrammar reports a bad
 * grammar by aborting its instance; only grammars that parse are compiled by the serving instance
 * that holds the tokenizer and the live matchers. If the serving instance fails anyway, it is
 * rebuilt and every matcher it held reports an error.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import type { CompiledGrammar, GrammarCompiler, GrammarMatcher, TokenizerInfo } from "@mlc-ai/web-xgrammar";
import { loadXGrammar, type XGrammarInstance, xgrammarMessage } from "./_xgrammar.ts";
import { charStateLimit, grammarEbnf, grammarKey, type GrammarSpec } from "./grammar.ts";
import { GrammarError } from "./grammar_error.ts";

/** Requests the worker answers (with the same `id`). */
export type GrammarRequest =
  | {
    readonly op: "init";
    readonly id: number;
    readonly vocab: string[];
    readonly stops: number[];
    readonly cache: number;
  }
  | { readonly op: "compile"; readonly id: number; readonly spec: GrammarSpec }
  | { readonly op: "step"; readonly id: number; readonly matcher: number; readonly token: number }
  | { readonly op: "stats"; readonly id: number };

/** Notices the worker does not answer. */
export type GrammarNotice =
  | { readonly op: "release"; readonly grammar: number }
  | { readonly op: "open"; readonly matcher: number; readonly grammar: number }
  | { readonly op: "close"; readonly matcher: number };

/** An error as it crosses to the host. */
export interface ErrorData {
  readonly name: string;
  readonly message: string;
  readonly keyword?: string;
  readonly path?: string;
}

/** Replies. */
export type GrammarReply =
  | { readonly id: number; readonly error: ErrorData }
  | { readonly id: number; readonly ok: true; readonly initMs: number }
  | { readonly id: number; readonly grammar: number; readonly compileMs: number; readonly cached: boolean }
  | { readonly id: number; readonly mask: Int32Array; readonly end: boolean }
  | { readonly id: number; readonly stats: GrammarStats };

/** Counters of the worker. */
export interface GrammarStats {
  readonly grammars: number;
  readonly matchers: number;
  readonly compiles: number;
  readonly cacheHits: number;
  readonly restarts: number;
}

interface Entry {
  readonly id: number;
  readonly key: string;
  readonly compiled: CompiledGrammar;
  /** The serving instance it was compiled in. */
  readonly generation: number;
  /** Holders: the host's pins plus open matchers. */
  refs: number;
  lastUsed: number;
}

interface Serving {
  readonly inst: XGrammarInstance;
  readonly info: TokenizerInfo;
  readonly compiler: GrammarCompiler;
  readonly generation: number;
}

let init: { vocab: string[]; stops: number[]; cache: number } | null = null;
let serving: Serving | null = null;
let generation = 0;
let checker: XGrammarInstance | null = null;
let nextGrammar = 1;
let clock = 0;
const byKey = new Map<string, Entry>();
const byId = new Map<number, Entry>();
const matchers = new Map<number, { m: GrammarMatcher | null; entry: Entry | null; generation: number }>();
const stats = { compiles: 0, cacheHits: 0, restarts: 0 };
let stopIds: Set<number> = new Set();
let queue: Promise<void> = Promise.resolve();

function errorData(e: unknown): ErrorData {
  if (e instanceof GrammarError) {
    return { name: e.name, message: e.message, keyword: e.keyword, path: e.path };
  }
  return { name: e instanceof Error ? e.name : "Error", message: e instanceof Error ? e.message : String(e) };
}

async function start(): Promise<Serving> {
  if (serving) return serving;
  if (!init) throw new Error("The grammar worker was not initialised");
  const inst = loadXGrammar();
  const info = await inst.xg.TokenizerInfo.createTokenizerInfo(
    init.vocab,
    "byte_level",
    false,
    init.vocab.length,
    init.stops,
  );
  const compiler = await inst.xg.GrammarCompiler.createGrammarCompiler(info, false);
  // the first compile pays for warming up XGrammar's code (about a second on a 128k vocabulary):
  // pay it here, not in the first request's grammar
  const { ebnf, root } = grammarEbnf({ type: "json_object" });
  (await compiler.compileGrammar(ebnf, root)).dispose();
  inst.takeLog();
  serving = { inst, info, compiler, generation: ++generation };
  return serving;
}

/** The serving instance failed: forget it and everything compiled in it. */
function lose(): void {
  serving = null;
  stats.restarts++;
  byKey.clear();
  for (const e of byId.values()) if (e.refs === 0) evict(e);
}

function evict(e: Entry): void {
  byId.delete(e.id);
  if (byKey.get(e.key) === e) byKey.delete(e.key);
  try {
    e.compiled.dispose();
  } catch { /* its instance is gone */ }
}

/** Parses the EBNF in the checker instance; a bad grammar becomes a GrammarError. */
async function check(ebnf: string, root: string): Promise<void> {
  checker ??= loadXGrammar();
  checker.takeLog();
  try {
    const g = await checker.xg.Grammar.fromEBNF(ebnf, root);
    g.dispose();
  } catch (e) {
    const why = xgrammarMessage(checker.takeLog());
    checker = null; // aborted: never reuse it
    throw new GrammarError(why ?? `the grammar was refused (${e instanceof Error ? e.message : String(e)})`);
  }
  const warning = xgrammarMessage(checker.takeLog());
  if (warning) throw new GrammarError(warning);
}

async function compile(spec: GrammarSpec): Promise<GrammarReply & { grammar: number }> {
  const key = grammarKey(spec);
  const hit = byKey.get(key);
  if (hit) {
    hit.refs++;
    hit.lastUsed = ++clock;
    stats.cacheHits++;
    return { id: 0, grammar: hit.id, compileMs: 0, cached: true };
  }
  const t0 = performance.now();
  const { ebnf, root } = grammarEbnf(spec, charStateLimit(init?.vocab.length ?? 0));
  await check(ebnf, root);
  const s = await start();
  let compiled: CompiledGrammar;
  try {
    compiled = await s.compiler.compileGrammar(ebnf, root);
  } catch (e) {
    const why = xgrammarMessage(s.inst.takeLog());
    lose();
    throw new Error(`XGrammar failed to compile a grammar it parsed: ${why ?? String(e)}`);
  }
  s.inst.takeLog();
  stats.compiles++;
  const entry: Entry = {
    id: nextGrammar++,
    key,
    compiled,
    generation: s.generation,
    refs: 1,
    lastUsed: ++clock,
  };
  byKey.set(key, entry);
  byId.set(entry.id, entry);
  trim();
  return { id: 0, grammar: entry.id, compileMs: performance.now() - t0, cached: false };
}

/** Evicts the least recently used grammars nobody holds, down to the cache size. */
function trim(): void {
  const idle = [...byId.values()].filter((e) => e.refs === 0).sort((a, b) => a.lastUsed - b.lastUsed);
  while (idle.length && byId.size > (init?.cache ?? 0)) evict(idle.shift()!);
}

function unref(e: Entry): void {
  e.refs--;
  e.lastUsed = ++clock;
  if (e.refs <= 0 && e.generation !== serving?.generation) evict(e);
  else trim();
}

async function open(id: number, grammar: number): Promise<void> {
  const entry = byId.get(grammar);
  if (!entry || entry.generation !== serving?.generation) {
    matchers.set(id, { m: null, entry: null, generation: -1 });
    return;
  }
  entry.refs++;
  const m = await serving.inst.xg.GrammarMatcher.createGrammarMatcher(entry.compiled);
  matchers.set(id, { m, entry, generation: entry.generation });
}

async function step(id: number, matcher: number, token: number): Promise<GrammarReply> {
  const rec = matchers.get(matcher);
  if (!rec?.m || rec.generation !== serving?.generation) {
    throw new Error("The grammar matcher is gone (its grammar engine failed)");
  }
  const m = rec.m;
  if (token >= 0 && !m.acceptToken(token)) throw new Error(`The grammar rejected token ${token}`);
  let mask: Int32Array;
  try {
    mask = await m.getNextTokenBitmask();
  } catch (e) {
    const why = xgrammarMessage(serving.inst.takeLog());
    lose();
    throw new Error(`The grammar engine failed: ${why ?? String(e)}`);
  }
  // the grammar is complete when nothing but a stop token may follow
  let more = false, stop = false;
  for (let w = 0; w < mask.length && !more; w++) {
    let bits = mask[w];
    while (bits !== 0) {
      const b = 31 - Math.clz32(bits & -bits);
      bits &= bits - 1;
      if (stopIds.has(w * 32 + b)) stop = true;
      else {
        more = true;
        break;
      }
    }
  }
  if (!more && !stop) throw new Error("The grammar allows no next token");
  return { id, mask, end: !more };
}

function close(matcher: number): void {
  const rec = matchers.get(matcher);
  if (!rec) return;
  matchers.delete(matcher);
  try {
    if (rec.generation === serving?.generation) rec.m?.dispose();
  } catch { /* already gone */ }
  if (rec.entry) unref(rec.entry);
}

async function handle(msg: GrammarRequest | GrammarNotice): Promise<void> {
  switch (msg.op) {
    case "init": {
      const t0 = performance.now();
      init = { vocab: msg.vocab, stops: msg.stops, cache: msg.cache };
      stopIds = new Set(msg.stops);
      await start();
      return post({ id: msg.id, ok: true, initMs: performance.now() - t0 });
    }
    case "compile":
      return post({ ...(await compile(msg.spec)), id: msg.id });
    case "release": {
      const e = byId.get(msg.grammar);
      if (e) unref(e);
      return;
    }
    case "open":
      return await open(msg.matcher, msg.grammar);
    case "step": {
      const reply = await step(msg.id, msg.matcher, msg.token) as {
        id: number;
        mask: Int32Array;
        end: boolean;
      };
      return post(reply, [reply.mask.buffer as ArrayBuffer]);
    }
    case "close":
      return close(msg.matcher);
    case "stats":
      return post({
        id: msg.id,
        stats: { grammars: byId.size, matchers: matchers.size, ...stats },
      });
  }
}

function post(reply: GrammarReply, transfer: Transferable[] = []): void {
  self.postMessage(reply, transfer);
}

self.onmessage = (ev: MessageEvent<GrammarRequest | GrammarNotice>) => {
  const msg = ev.data;
  queue = queue.then(() => handle(msg)).catch((e) => {
    if ("id" in msg) post({ id: msg.id, error: errorData(e) });
  });
};
