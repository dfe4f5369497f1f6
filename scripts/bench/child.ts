/**
 * One benchmark configuration, run in its own process so its peak RSS is its own. Started by
 * `scripts/bench.ts` as `deno run --v8-flags=<the serve task's> child.ts '<ChildConfig JSON>'`; progress
 * goes to stderr and the result is the last line of stdout (one JSON object).
 *
 * - `single` (one slot, 4096 positions: the RSS target): load, pp (one `runtime.forward` step),
 *   TTFT and tg (through `engine.generate`, as users see it), bytes per token, peak RSS.
 * - `multi` (one slot per stream): aggregate decode at each stream count.
 *
 * @module
 */
import { Engine } from "../../engine/run/engine.ts";
import { JSON_ESCAPE, PLAIN_CHAR } from "../../engine/text/json_chars.ts";
import type { ModelRuntime } from "../../engine/run/runtime.ts";
import type { GenerationEvent } from "../../engine/run/sequence.ts";
import { peakRss } from "./_proc.ts";
import { runProfile } from "./profile.ts";
import { mulberry32 } from "../_prng.ts";
import type {
  BytesPerToken,
  ChildConfig,
  GrammarResult,
  MultiResult,
  Samples,
  SingleResult,
  StreamResult,
} from "./result.ts";

/**
 * Random prompts whose first tokens all differ, so the scheduler never reuses a cached prefix
 * (every measured prompt is computed in full).
 */
function promptMaker(seed: number, vocab: number): (n: number) => number[] {
  const rand = mulberry32(seed);
  const firsts = new Set<number>();
  return (n) => {
    const p = Array.from({ length: n }, () => Math.floor(rand() * vocab));
    while (firsts.has(p[0]) && firsts.size < vocab) p[0] = Math.floor(rand() * vocab);
    firsts.add(p[0]);
    return p;
  };
}

/** VmHWM, or the current RSS where /proc is not readable (not Linux). */
function rss(): number {
  return peakRss() ?? Deno.memoryUsage().rss;
}

function samples(xs: number[], higherIsBetter: boolean): Samples {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, best: higherIsBetter ? s[s.length - 1] : s[0], samples: xs };
}

const log = (msg: string) => console.error(`  ${msg}`);

/** Bytes one decode step streams: every weight it multiplies by, plus the KV it attends over. */
export function bytesPerToken(rt: ModelRuntime, kvPosition: number): BytesPerToken {
  const c = rt.config, size = (name: string) => rt.plan.tensors.get(name)!.bytes;
  let ternary = 0, other = size(c.outputNorm.name);
  for (const L of c.layers) {
    for (const t of [L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown]) ternary += size(t.info.name);
    for (const n of [L.attnNorm, L.attnSubNorm, L.ffnNorm, L.ffnSubNorm]) other += size(n.name);
  }
  const head = size(c.output.name);
  if (!c.tiedOutput) other += size(c.tokenEmbd.name) / c.nVocab; // one embedding row
  const kv = 2 * c.nLayers * c.kvDim * 2 * (kvPosition + 1); // K and V, f16, positions 0..kvPosition
  return { ternary, head, other, kv, kvPosition, total: ternary + head + other + kv };
}

/** Makes every KV cache page resident, as a full context would (values are left unchanged). */
function touchKvCache(rt: ModelRuntime): void {
  for (const r of [rt.plan.kCache, rt.plan.vCache]) {
    const u8 = new Uint8Array(rt.memory.buffer, r.offset, r.bytes);
    for (let i = 0; i < u8.length; i += 4096) Atomics.or(u8, i, 0); // a write fault per page
  }
}

interface Generated {
  readonly tokenTimes: number[];
  readonly submittedAt: number;
  readonly completion: number;
  readonly cached: number;
  readonly decodeTokensPerSecond: number;
}

async function generate(engine: Engine, prompt: number[], maxTokens: number): Promise<Generated> {
  const submittedAt = performance.now();
  const events = engine.generate({ prompt, maxTokens, sampling: { temperature: 0 }, stopTokens: [] });
  return await collect(events, submittedAt);
}

async function collect(events: AsyncIterable<GenerationEvent>, submittedAt: number): Promise<Generated> {
  const tokenTimes: number[] = [];
  for await (const ev of events) {
    if (ev.type === "token") tokenTimes.push(performance.now());
    else if (ev.type === "done") {
      return {
        tokenTimes,
        submittedAt,
        completion: ev.usage.completionTokens,
        cached: ev.usage.cachedTokens,
        decodeTokensPerSecond: ev.timings.decodeTokensPerSecond,
      };
    }
  }
  throw new Error("generation ended without a done event");
}

async function runSingle(cfg: ChildConfig): Promise<SingleResult> {
  const w = cfg.workload;
  const t0 = performance.now();
  const engine = await Engine.load(cfg.model, {
    threads: cfg.threads,
    kernel: cfg.kernel,
    head: cfg.head,
    nCtx: w.singleCtx,
    nSlots: 1,
    maxBatch: Math.max(128, w.ppTokens),
  });
  const loadWallMs = performance.now() - t0;
  try {
    const rt = engine.runtime;
    const prompt = promptMaker(cfg.seed, engine.tokenizer.vocabSize);
    log(`${engine.describe()}`);

    // warm-up: a short prefill and a few decode steps
    const warm = prompt(16);
    await rt.forward({ tokens: warm, pos: warm.map((_, i) => i), slot: warm.map(() => 0), outIdx: [15] });
    for (let p = 16; p < 20; p++) {
      await rt.forward({ tokens: [warm[p - 16]], pos: [p], slot: [0], outIdx: [0] });
    }

    const pp: number[] = [];
    for (let r = 0; r < w.reps; r++) {
      const toks = prompt(w.ppTokens);
      const t = performance.now();
      await rt.forward({
        tokens: toks,
        pos: toks.map((_, i) => i),
        slot: toks.map(() => 0),
        outIdx: [toks.length - 1],
      });
      pp.push((w.ppTokens * 1000) / (performance.now() - t));
    }
    log(`pp${w.ppTokens}: ${pp.map((x) => x.toFixed(1)).join(", ")} tok/s`);

    await generate(engine, prompt(w.shortPrompt), 4); // warm the generate path
    const ttft: number[] = [];
    for (let r = 0; r < w.reps; r++) {
      const g = await generate(engine, prompt(w.ppTokens), 1);
      if (g.cached !== 0 || g.tokenTimes.length !== 1) {
        throw new Error("TTFT run reused a cached prefix or made no token");
      }
      ttft.push(g.tokenTimes[0] - g.submittedAt);
    }
    log(`TTFT(${w.ppTokens}): ${ttft.map((x) => x.toFixed(0)).join(", ")} ms`);

    const tg = await generate(engine, prompt(w.shortPrompt), w.tgTokens);
    if (tg.completion !== w.tgTokens) {
      throw new Error(`tg made ${tg.completion} tokens, expected ${w.tgTokens}`);
    }
    log(`tg${w.tgTokens}: ${tg.decodeTokensPerSecond.toFixed(2)} tok/s`);

    const bandwidthGBs = await rt.sweep(5);
    log(`weights sweep: ${bandwidthGBs.toFixed(1)} GB/s`);

    const rssBeforeKvBytes = rss();
    touchKvCache(rt);
    const peakRssBytes = rss();
    // after the peak RSS: the grammar worker (XGrammar and its tokenizer info) starts only when a
    // request asks for structured output, so what it adds is reported on its own
    const grammar = await measureGrammar(engine, prompt(w.shortPrompt), w.tgTokens, rss);
    log(
      `grammar: init ${grammar.initMs.toFixed(0)} ms, compile ${grammar.compileSmallMs.toFixed(0)} / ` +
        `${grammar.compile200Ms.toFixed(0)} ms (3 / 200 properties), constrained tg ${
          grammar.tgTokPerSec.toFixed(2)
        } tok/s, ` +
        `mask ${grammar.maskMsPerToken.toFixed(3)} ms/token (${
          (grammar.maskShare * 100).toFixed(2)
        }% of decode)`,
    );

    return {
      mode: "single",
      nCtx: engine.info.nCtx,
      nSlots: engine.info.nSlots,
      kernel: engine.info.kernel,
      headType: engine.info.headType,
      loadMs: engine.info.loadMs,
      loadWallMs,
      memory: engine.info.memory,
      ppTokPerSec: samples(pp, true),
      ttftMs: samples(ttft, false),
      tgTokPerSec: tg.decodeTokensPerSecond,
      bytesPerToken: bytesPerToken(rt, Math.round(w.shortPrompt + w.tgTokens / 2)),
      bandwidthGBs,
      rssBeforeKvBytes,
      peakRssBytes,
      grammar,
    };
  } finally {
    await engine.close();
  }
}

/** A 200-property object schema: 50 required, five value types in turn. */
export function wideSchema(n = 200): Record<string, unknown> {
  const kinds = [{ type: "string" }, { type: "integer" }, { type: "boolean" }, { type: "number" }, {
    enum: ["a", "b", "c"],
  }];
  const properties = Object.fromEntries(Array.from({ length: n }, (_, i) => [`field_${i}`, kinds[i % 5]]));
  return { type: "object", properties, required: Object.keys(properties).slice(0, n / 4) };
}

/** Compile times, and a greedy decode of JSON strings under a grammar that never completes. */
async function measureGrammar(
  engine: Engine,
  prompt: number[],
  tokens: number,
  rss: () => number,
): Promise<GrammarResult> {
  const grammars = engine.grammars;
  const timed = async (spec: Parameters<typeof grammars.compile>[0]) => {
    const t = performance.now();
    const g = await grammars.compile(spec);
    return { g, ms: performance.now() - t };
  };
  const small = await timed({
    type: "json_schema",
    schema: {
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" }, ok: { type: "boolean" } },
    },
  });
  small.g.release();
  const initMs = grammars.initMs;
  const wide = await timed({ type: "json_schema", schema: wideSchema() });
  wide.g.release();
  const cached = await timed({ type: "json_schema", schema: wideSchema() });
  cached.g.release();
  // a JSON array of strings that never closes: string masks as in any schema, and no end
  const strings = `root ::= "[" s ("," s)*\ns ::= "\\"" t\n` +
    `t ::= ("\\"" | ${PLAIN_CHAR} t | ${JSON_ESCAPE} t) (= [,}\\]:])`;
  const long = await grammars.compile({ type: "ebnf", grammar: strings });
  const events = engine.generate({ prompt, maxTokens: tokens, sampling: { temperature: 0 }, grammar: long });
  long.release();
  let done: Extract<GenerationEvent, { type: "done" }> | undefined;
  for await (const ev of events) if (ev.type === "done") done = ev;
  if (!done || done.usage.completionTokens !== tokens) throw new Error("the constrained tg run ended early");
  const t = done.timings;
  return {
    initMs,
    compileSmallMs: small.ms - initMs,
    compile200Ms: wide.ms,
    cachedMs: cached.ms,
    tgTokPerSec: t.decodeTokensPerSecond,
    maskMsPerToken: t.grammarMs / tokens,
    maskShare: t.decodeMs > 0 ? t.grammarMs / t.decodeMs : 0,
    peakRssBytes: rss(),
  };
}

/** Submits `prompts` at once (all admitted before the first step) and collects every stream. */
function runStreams(engine: Engine, prompts: number[][], maxTokens: number): Promise<Generated[]> {
  const started = prompts.map((prompt) => {
    const at = performance.now();
    return {
      at,
      events: engine.generate({ prompt, maxTokens, sampling: { temperature: 0 }, stopTokens: [] }),
    };
  });
  return Promise.all(started.map(({ at, events }) => collect(events, at)));
}

async function runMulti(cfg: ChildConfig): Promise<MultiResult> {
  const w = cfg.workload;
  const nSlots = Math.max(...w.streams);
  const engine = await Engine.load(cfg.model, {
    threads: cfg.threads,
    kernel: cfg.kernel,
    head: cfg.head,
    nCtx: w.multiCtx,
    nSlots,
    maxBatch: 128,
    maxQueue: nSlots,
  });
  try {
    const prompt = promptMaker(cfg.seed + 1, engine.tokenizer.vocabSize);
    log(`${engine.describe()}`);
    const prompts = (k: number) => Array.from({ length: k }, () => prompt(w.shortPrompt));
    await runStreams(engine, prompts(Math.min(2, nSlots)), 4); // warm-up
    const streams: StreamResult[] = [];
    for (const k of w.streams) {
      const runs = await runStreams(engine, prompts(k), w.streamTokens);
      const first = Math.min(...runs.map((r) => r.tokenTimes[0]));
      const last = Math.max(...runs.map((r) => r.tokenTimes[r.tokenTimes.length - 1]));
      const generated = runs.reduce((s, r) => s + r.completion, 0);
      const wallMs = last - first;
      const res: StreamResult = {
        streams: k,
        aggregateTokPerSec: wallMs > 0 ? ((generated - k) * 1000) / wallMs : 0,
        perStreamTokPerSec: runs.reduce((s, r) => s + r.decodeTokensPerSecond, 0) / k,
        generated,
        wallMs,
      };
      log(
        `${k} stream(s): ${res.aggregateTokPerSec.toFixed(2)} tok/s aggregate, ${
          res.perStreamTokPerSec.toFixed(2)
        } per stream`,
      );
      streams.push(res);
    }
    return { mode: "multi", nCtx: engine.info.nCtx, nSlots, streams, peakRssBytes: rss() };
  } finally {
    await engine.close();
  }
}

if (import.meta.main) {
  const cfg = JSON.parse(Deno.args[0]) as ChildConfig;
  const result = cfg.mode === "single"
    ? await runSingle(cfg)
    : cfg.mode === "multi"
    ? await runMulti(cfg)
    : await runProfile(cfg);
  console.log(JSON.stringify(result));
}
