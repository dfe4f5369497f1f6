/**
 * Renders a benchmark run as markdown (the README table) and compares two runs metric by metric.
 *
 * @module
 */
import { formatBytes } from "../../engine/model/memory_plan.ts";
import type { StepProfile } from "../../engine/run/step_profile.ts";
import { PROFILE_PARTS } from "../../wasm/loader.ts";
import type { BenchResult, ProfileResult, RunResult } from "./result.ts";

const f = (x: number | null | undefined, digits = 1) =>
  x === null || x === undefined ? "n/a" : x.toFixed(digits);
const ms = (x: number | null | undefined) => x === null || x === undefined ? "n/a" : `${x.toFixed(0)} ms`;

function streamRate(run: RunResult, k: number): number | null {
  return run.multi.streams.find((s) => s.streams === k)?.aggregateTokPerSec ?? null;
}

/** The line above the table: CPU, cores, runtime, date, model, cold start, bandwidth. */
export function machineLine(r: BenchResult): string {
  const m = r.machine;
  const bw = m.bandwidthGBs === null
    ? `not measured (${m.bandwidthNote})`
    : `${m.bandwidthGBs.toFixed(1)} GB/s`;
  return `CPU: ${m.cpu}, ${m.cores} cores, ${m.os} | Deno ${m.deno} (V8 ${m.v8}) | ${
    r.date.slice(0, 10)
  } | ` +
    `model \`${r.model.file}\` (${r.model.id}, ${formatBytes(r.model.bytes)}) | cold start ${
      ms(r.coldStart.ms)
    } | ` +
    `memory read bandwidth ${bw}${r.quick ? " | QUICK MODE (smoke test, not a measurement)" : ""}`;
}

/**
 * The markdown report: machine line, one table row per configuration, and what each column means.
 *
 * @example
 * ```ts ignore
 * console.log(markdown(JSON.parse(Deno.readTextFileSync("bench/last.json"))));
 * ```
 */
export function markdown(r: BenchResult): string {
  const w = r.workload;
  const head = [
    "model",
    "threads",
    "kernel",
    "fused",
    "head",
    "load",
    `TTFT(${w.ppTokens})`,
    `pp${w.ppTokens} tok/s`,
    `tg${w.tgTokens} tok/s`,
    ...w.streams.map((k) => `${k} stream${k === 1 ? "" : "s"}`),
    "peak RSS",
    "bytes/token",
    "GB/s",
  ];
  const rows = r.runs.map((run) => {
    const s = run.single;
    return [
      r.model.file,
      String(run.threads),
      run.kernel,
      run.revec ? "on" : "off",
      `${run.head} (${s.headType})`,
      ms(s.loadMs),
      ms(s.ttftMs.median),
      f(s.ppTokPerSec.median),
      f(s.tgTokPerSec, 2),
      ...w.streams.map((k) => f(streamRate(run, k), 2)),
      formatBytes(s.peakRssBytes),
      formatBytes(s.bytesPerToken.total),
      f(run.impliedGBs, 2),
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const multiCtx = r.runs[0]?.multi;
  return [
    machineLine(r),
    "",
    line(head),
    line(head.map(() => "---")),
    ...rows.map(line),
    "",
    `load: open to workers ready. TTFT: median of ${w.reps}, \`engine.generate\` submission to first token, ` +
    `${w.ppTokens}-token prompt. pp: median of ${w.reps} one-step prefills (\`runtime.forward\`). ` +
    `tg: greedy decode of ${w.tgTokens} tokens through \`engine.generate\` (sampling and detokenizing included). ` +
    `k streams: aggregate tok/s of k concurrent greedy requests of ${w.streamTokens} tokens` +
    (multiCtx ? ` (${multiCtx.nSlots} slots x ${multiCtx.nCtx} ctx)` : "") +
    `. peak RSS: VmHWM at ${w.singleCtx} ctx x 1 slot with the whole KV cache resident, before the grammar worker starts. ` +
    `bytes/token: weights + LM head + KV read at the tg run's mean position; GB/s = bytes/token x tg tok/s. ` +
    `fused: V8's revectorizer on (\`--experimental-wasm-revectorize\`: 256-bit AVX2 code for the kernels written for it).`,
    ...grammarTable(r),
  ].join("\n");
}

const configKey = (x: RunResult) => `${x.threads} threads, ${x.kernel}, head ${x.head}`;

/**
 * Fused against unfused in the same run (their children alternated): each metric of the runs that
 * have both, with the fused/unfused ratio (above 1: fused is better, for every metric). Empty when no
 * configuration ran both ways.
 */
export function fusedRatios(r: BenchResult): string {
  const pairs = new Map<string, { off?: RunResult; on?: RunResult }>();
  for (const run of r.runs) {
    const p = pairs.get(configKey(run)) ?? {};
    p[run.revec ? "on" : "off"] = run;
    pairs.set(configKey(run), p);
  }
  const lines: string[] = [];
  for (const [key, { off, on }] of pairs) {
    if (!off || !on) continue;
    for (const m of metrics(r)) {
      const a = m.get(off), b = m.get(on);
      if (a === null || b === null || a === 0 || b === 0) continue;
      const ratio = m.higherIsBetter ? b / a : a / b;
      lines.push(`| ${key} | ${m.name} | ${m.fmt(a)} | ${m.fmt(b)} | ${ratio.toFixed(2)}x |`);
    }
  }
  if (!lines.length) return "";
  return [
    "Fused (V8's revectorizer on) against unfused, same run, children alternating:",
    "",
    "| configuration | metric | unfused | fused | fused gain |",
    "| --- | --- | --- | --- | --- |",
    ...lines,
  ].join("\n");
}

const PART_NAMES: Readonly<Record<typeof PROFILE_PARTS[number], string>> = {
  embed: "embedding",
  norm: "RMSNorms",
  quant: "activation quantization",
  qkv: "Q, K, V (+ RoPE, KV cache)",
  attention: "attention",
  wo: "attention output (O)",
  gate_up: "FFN gate and up",
  act: "relu^2 x up",
  down: "FFN down",
  head_prep: "final norm",
  head: "LM head",
};

/** ms per step of one part as the wall clock sees it: work and the barrier wait after it (mean over threads). */
const wall = (p: StepProfile, part: typeof PROFILE_PARTS[number]) => p.parts[part].work + p.parts[part].wait;

function profileTable(
  runs: readonly RunResult[],
  title: string,
  pick: (p: ProfileResult) => StepProfile,
  tokens: number,
): string {
  const cols = runs.map((x) => `${x.threads}t ${x.head} ${x.revec ? "fused" : "unfused"}`);
  const cell = (fn: (p: StepProfile) => number) =>
    runs.map((x) => (fn(pick(x.profile!)) / tokens).toFixed(2));
  const rows = PROFILE_PARTS.map((part) => [PART_NAMES[part], ...cell((p) => wall(p, part))]);
  rows.push([
    "of these, barrier waits",
    ...cell((p) => PROFILE_PARTS.reduce((s, part) => s + p.parts[part].wait, 0)),
  ]);
  rows.push(["workers waking up", ...cell((p) => p.wakeMs)]);
  rows.push(["host seeing the end", ...cell((p) => p.doneMs)]);
  rows.push(["step (host clock)", ...cell((p) => p.stepMs)]);
  // G multiply-adds/s per core: each thread's share of a step's multiply-adds over its work time
  const rate = (macs: (x: RunResult) => number, parts: readonly (typeof PROFILE_PARTS[number])[]) =>
    runs.map((x) => {
      const ms = parts.reduce((s, part) => s + pick(x.profile!).parts[part].work, 0);
      return ms > 0 ? (macs(x) / x.threads / (ms * 1e6)).toFixed(1) : "n/a";
    });
  // every profiled step wants one row of logits
  rows.push(["LM head G MAC/s per core", ...rate((x) => x.profile!.macs.head, ["head"])]);
  rows.push([
    "ternary G MAC/s per core",
    ...rate((x) => x.profile!.macs.ternary * tokens, ["qkv", "wo", "gate_up", "down"]),
  ]);
  return [
    title,
    "",
    `| part | ${cols.join(" | ")} |`,
    `| --- | ${cols.map(() => "---").join(" | ")} |`,
    ...rows.map((cells) => `| ${cells.join(" | ")} |`),
  ].join("\n");
}

/**
 * Where the time of a step goes: ms per token of each part (its work and the barrier wait after
 * it, mean over threads) for decode at the tg run's mean position, decode at the long position, and
 * prefill; plus the workers' wake-up, the host's view of the step, and G multiply-adds/s per core of
 * the LM head and the ternary matmuls. Empty when no run has a profile.
 */
export function profileTables(r: BenchResult): string {
  const runs = r.runs.filter((x) => x.profile);
  if (!runs.length) return "";
  const p0 = runs[0].profile!, pp = r.workload.ppTokens;
  return [
    profileTable(runs, `Decode step at position ${p0.decodePos}, ms per token:`, (p) => p.decode, 1),
    profileTable(runs, `Decode step at position ${p0.decodeLongPos}, ms per token:`, (p) => p.decodeLong, 1),
    profileTable(
      runs,
      `Prefill steps of ${pp} tokens (one row of logits), ms per token:`,
      (p) => p.prefill,
      pp,
    ),
    "Each part: its work and the barrier wait after it, mean over the threads (kernels/prof.c, a clock " +
    "imported from the host; profiled steps run about 1% slower than plain ones).",
  ].join("\n\n");
}

/** The constrained-decoding table (runs that measured it). */
function grammarTable(r: BenchResult): string[] {
  const runs = r.runs.filter((run) => run.single.grammar);
  if (!runs.length) return [];
  const head = [
    "threads",
    "head",
    "fused",
    "tokenizer info",
    "compile 3 props",
    "compile 200 props",
    "cached",
    `constrained tg${r.workload.tgTokens} tok/s`,
    "mask ms/token",
    "mask % of decode",
    "peak RSS with it",
  ];
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [
    "",
    `Constrained decoding (XGrammar, ${r.model.nVocab}-token vocabulary):`,
    "",
    line(head),
    line(head.map(() => "---")),
    ...runs.map((run) => {
      const g = run.single.grammar!;
      return line([
        String(run.threads),
        run.head,
        run.revec ? "on" : "off",
        ms(g.initMs),
        ms(g.compileSmallMs),
        ms(g.compile200Ms),
        `${g.cachedMs.toFixed(1)} ms`,
        f(g.tgTokPerSec, 2),
        f(g.maskMsPerToken, 3),
        `${f(g.maskShare * 100, 2)}%`,
        g.peakRssBytes === undefined ? "-" : formatBytes(g.peakRssBytes),
      ]);
    }),
    "",
    "tokenizer info: grammar worker start and XGrammar's tokenizer info, once per model. compile: a schema with 3 " +
    "properties, then 200 (50 required); cached: the 200 again. constrained tg: greedy decode inside a JSON " +
    "string; mask: `timings.grammarMs` (waiting for the worker's bitmask plus applying it to the logits) per token " +
    "and as a share of the decode time. peak RSS with it: VmHWM after these runs, the grammar worker " +
    "included (the main table's peak RSS is before it starts: the server starts it with the first " +
    "structured-output request).",
  ];
}

interface Metric {
  readonly name: string;
  readonly get: (run: RunResult) => number | null;
  readonly higherIsBetter: boolean;
  readonly fmt: (x: number) => string;
}

const mib = (x: number) => formatBytes(x);

function metrics(r: BenchResult): Metric[] {
  const w = r.workload;
  return [
    { name: "load ms", get: (x) => x.single.loadMs, higherIsBetter: false, fmt: (x) => x.toFixed(0) },
    {
      name: `TTFT(${w.ppTokens}) ms`,
      get: (x) => x.single.ttftMs.median,
      higherIsBetter: false,
      fmt: (x) => x.toFixed(0),
    },
    {
      name: `pp${w.ppTokens} tok/s`,
      get: (x) => x.single.ppTokPerSec.median,
      higherIsBetter: true,
      fmt: (x) => x.toFixed(1),
    },
    {
      name: `tg${w.tgTokens} tok/s`,
      get: (x) => x.single.tgTokPerSec,
      higherIsBetter: true,
      fmt: (x) => x.toFixed(2),
    },
    ...w.streams.map((k): Metric => ({
      name: `${k} stream${k === 1 ? "" : "s"} tok/s`,
      get: (x) => streamRate(x, k),
      higherIsBetter: true,
      fmt: (x) => x.toFixed(2),
    })),
    { name: "peak RSS", get: (x) => x.single.peakRssBytes, higherIsBetter: false, fmt: mib },
    { name: "bytes/token", get: (x) => x.single.bytesPerToken.total, higherIsBetter: false, fmt: mib },
    { name: "GB/s", get: (x) => x.impliedGBs, higherIsBetter: true, fmt: (x) => x.toFixed(2) },
    {
      name: "compile 200 props ms",
      get: (x) => x.single.grammar?.compile200Ms ?? null,
      higherIsBetter: false,
      fmt: (x) => x.toFixed(0),
    },
    {
      name: "mask % of decode",
      get: (x) => x.single.grammar ? x.single.grammar.maskShare * 100 : null,
      higherIsBetter: false,
      fmt: (x) => x.toFixed(2),
    },
  ];
}

/** "+12.3% (better)", "-4.0% (worse)", "0.0%"; "n/a" when either side is missing or old is 0. */
export function change(old: number | null, cur: number | null, higherIsBetter: boolean): string {
  if (old === null || cur === null || old === 0) return "n/a";
  const pct = ((cur - old) / Math.abs(old)) * 100;
  const s = `${pct >= 0 ? "+" : ""}${pct.toFixed(1)}%`;
  if (Math.abs(pct) < 0.05) return s;
  return `${s} (${(pct > 0) === higherIsBetter ? "better" : "worse"})`;
}

const runKey = (x: RunResult) => `${configKey(x)}${x.revec ? ", fused" : ""}`;

/**
 * Each metric of `cur` against `old` (matched by threads, kernel and head) as a markdown table,
 * with warnings when the two runs are not comparable (other CPU, model, workload).
 */
export function compare(old: BenchResult, cur: BenchResult): string {
  const out: string[] = [`Change against the run of ${old.date} (${old.machine.cpu}):`];
  const warn = (cond: boolean, msg: string) => cond && out.push(`warning: ${msg}`);
  warn(old.version !== cur.version, `result format ${old.version} vs ${cur.version}`);
  warn(old.machine.cpu !== cur.machine.cpu, `different CPU: "${old.machine.cpu}" vs "${cur.machine.cpu}"`);
  warn(old.model.file !== cur.model.file || old.model.bytes !== cur.model.bytes, "different model file");
  warn(JSON.stringify(old.workload) !== JSON.stringify(cur.workload), "different workload (quick vs full?)");
  out.push("", "| configuration | metric | old | new | change |", "| --- | --- | --- | --- | --- |");
  const oldRuns = new Map(old.runs.map((x) => [runKey(x), x]));
  const row = (cfg: string, name: string, a: string, b: string, c: string) =>
    out.push(`| ${cfg} | ${name} | ${a} | ${b} | ${c} |`);
  const coldOld = old.coldStart.ms, coldNew = cur.coldStart.ms;
  row("server", "cold start ms", f(coldOld, 0), f(coldNew, 0), change(coldOld, coldNew, false));
  const unmatched: string[] = [];
  for (const run of cur.runs) {
    const prev = oldRuns.get(runKey(run));
    if (!prev) {
      unmatched.push(`only in the new run: ${runKey(run)}`);
      continue;
    }
    oldRuns.delete(runKey(run));
    for (const m of metrics(cur)) {
      const a = m.get(prev), b = m.get(run);
      row(
        runKey(run),
        m.name,
        a === null ? "n/a" : m.fmt(a),
        b === null ? "n/a" : m.fmt(b),
        change(a, b, m.higherIsBetter),
      );
    }
  }
  for (const k of oldRuns.keys()) unmatched.push(`only in the old run: ${k}`);
  return [...out, ...(unmatched.length ? ["", ...unmatched] : [])].join("\n");
}
