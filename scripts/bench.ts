/**
 * `deno task bench`: load time, TTFT, prefill and decode speed, aggregate decode at 1/4/8 streams,
 * peak RSS, bytes streamed per token and implied GB/s, for each thread count x kernel x head mode,
 * each with V8's revectorizer off and on (`--experimental-wasm-revectorize`, which fuses the
 * kernels written for it into 256-bit code; the flag is process-wide, so the two run in separate
 * children, interleaved), with the fused/unfused ratios, and a per-part profile of decode and
 * prefill steps (`bench/profile.ts`). Every configuration runs in child processes (`bench/child.ts`,
 * with the V8 flags of the serve task, wasm fully optimized with `--no-liftoff`, and the
 * revectorizer as the run asks) so that its peak RSS is its own. Writes JSON and prints markdown
 * tables.
 *
 * ```sh
 * deno task bench                               # 2B4T-shaped synthetic model, threads 1 and 2
 * deno task bench --model ggml-model-i2_s.gguf --threads 4 --head file,q8_0
 * deno task bench --compare bench/before.json   # ... and the change against a saved run
 * deno task bench --from bench/last.json --compare bench/before.json   # no run: re-render, compare
 * ```
 *
 * Options: `--model FILE` (default: `bench/2b4t-i2_s.gguf`, generated when missing), `--threads
 * 1,2` (default 1, 2 and the core count), `--kernel ref|simd128|relaxed` (default: detected),
 * `--head file|q8_0|q7|file,q7` (default file), `--revec off|on|both` (default both), `--json FILE`
 * (default `bench/last.json`), `--md FILE` (default: stdout), `--compare FILE`, `--from FILE`,
 * `--reps N`, `--quick`, `--no-cold-start`, `--no-profile`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { openGguf } from "../engine/format/gguf.ts";
import type { HeadMode } from "../engine/model/loader.ts";
import { modelConfigFromGguf } from "../engine/model/model_config.ts";
import { detectKernel, type KernelVariant } from "../wasm/loader.ts";
import { synthModel } from "./synth_model.ts";
import { readProc } from "./bench/_proc.ts";
import { measureColdStart, serveFlags } from "./bench/cold_start.ts";
import { compare, fusedRatios, markdown, profileTables } from "./bench/report.ts";
import {
  type BenchResult,
  type ChildConfig,
  type ColdStart,
  type MachineInfo,
  type ModelSummary,
  type MultiResult,
  type ProfileResult,
  RESULT_VERSION,
  type RunResult,
  type SingleResult,
  type Workload,
} from "./bench/result.ts";

const ROOT = new URL("../", import.meta.url);
const DEFAULT_MODEL = new URL("bench/2b4t-i2_s.gguf", ROOT).pathname;
const DEFAULT_JSON = new URL("bench/last.json", ROOT).pathname;
const CHILD = new URL("bench/child.ts", import.meta.url).pathname;
const BANDWIDTH_NOTE = "all workers reading the loaded weights (best of the runs)";

/** Token counts of a full run and of `--quick`. */
export const WORKLOADS: Readonly<Record<"full" | "quick", Workload>> = {
  full: {
    ppTokens: 128,
    tgTokens: 128,
    shortPrompt: 8,
    streamTokens: 64,
    streams: [1, 4, 8],
    reps: 3,
    singleCtx: 4096,
    multiCtx: 512,
    profileLongPos: 2048,
  },
  quick: {
    ppTokens: 128,
    tgTokens: 16,
    shortPrompt: 8,
    streamTokens: 8,
    streams: [1, 4, 8],
    reps: 1,
    singleCtx: 4096,
    multiCtx: 256,
    profileLongPos: 256,
  },
};

const KERNELS: readonly KernelVariant[] = ["ref", "simd128", "relaxed"];
const HEADS: readonly HeadMode[] = ["file", "q8_0", "q7"];
const REVEC = ["off", "on", "both"] as const;

/** V8's flag for its revectorizer (reference/wasm-256bit.md). */
export const REVEC_V8_FLAG = "--experimental-wasm-revectorize";

/** Parsed command line. */
export interface BenchArgs {
  readonly model: string | null;
  readonly threads: readonly number[];
  readonly kernel: KernelVariant;
  readonly heads: readonly HeadMode[];
  readonly json: string;
  readonly md: string | null;
  readonly compare: string | null;
  readonly from: string | null;
  readonly quick: boolean;
  readonly reps: number | null;
  readonly coldStart: boolean;
  /** Run the children with V8's revectorizer off, on, or both (interleaved). */
  readonly revec: typeof REVEC[number];
  readonly profile: boolean;
}

function list<T extends string>(s: string, allowed: readonly T[], what: string): T[] {
  const xs = s.split(",").map((x) => x.trim()).filter(Boolean);
  for (const x of xs) {
    if (!allowed.includes(x as T)) {
      throw new TypeError(`Unknown ${what} "${x}", expected one of ${allowed.join(", ")}`);
    }
  }
  if (!xs.length) throw new TypeError(`--${what} is empty`);
  return [...new Set(xs)] as T[];
}

/**
 * Parses the command line.
 *
 * @throws {TypeError} for an unknown option or value
 */
export function parseBenchArgs(args: readonly string[]): BenchArgs {
  const { values: v } = parseArgs({
    args: [...args],
    options: {
      model: { type: "string" },
      threads: { type: "string" },
      kernel: { type: "string" },
      head: { type: "string" },
      json: { type: "string" },
      md: { type: "string" },
      compare: { type: "string" },
      from: { type: "string" },
      reps: { type: "string" },
      quick: { type: "boolean" },
      revec: { type: "string" },
      "no-cold-start": { type: "boolean" },
      "no-profile": { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (v.help) {
    console.log(
      "deno task bench [--model FILE] [--threads 1,2] [--kernel ref|simd128|relaxed] [--head file,q8_0,q7]\n" +
        "                [--revec off|on|both] [--json FILE] [--md FILE] [--compare FILE] [--from FILE] [--reps N]\n" +
        "                [--quick] [--no-cold-start] [--no-profile]",
    );
    Deno.exit(0);
  }
  const cores = navigator.hardwareConcurrency ?? 1;
  const threads = v.threads === undefined ? [...new Set([1, 2, cores])] : v.threads.split(",").map(Number);
  for (const t of threads) {
    if (!Number.isInteger(t) || t < 1) {
      throw new TypeError(`--threads: "${v.threads}" is not a list of positive integers`);
    }
  }
  const reps = v.reps === undefined ? null : Number(v.reps);
  if (reps !== null && (!Number.isInteger(reps) || reps < 1)) {
    throw new TypeError(`--reps must be a positive integer`);
  }
  return {
    model: v.model ?? null,
    threads: [...new Set(threads)].sort((a, b) => a - b),
    kernel: v.kernel === undefined ? detectKernel() : list(v.kernel, KERNELS, "kernel")[0],
    heads: list(v.head ?? "file", HEADS, "head"),
    json: v.json ?? DEFAULT_JSON,
    md: v.md ?? null,
    compare: v.compare ?? null,
    from: v.from ?? null,
    quick: v.quick ?? false,
    reps,
    coldStart: !v["no-cold-start"],
    revec: list(v.revec ?? "both", REVEC, "revec")[0],
    profile: !v["no-profile"],
  };
}

function machineInfo(bandwidthGBs: number | null): MachineInfo {
  return {
    cpu: readProc("/proc/cpuinfo")?.match(/^model name\s*:\s*(.+)$/m)?.[1].trim() ?? "unknown CPU",
    cores: navigator.hardwareConcurrency ?? 1,
    os: `${Deno.build.os} ${Deno.build.arch}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    detectedKernel: detectKernel(),
    bandwidthGBs,
    bandwidthNote: BANDWIDTH_NOTE,
  };
}

/** The default model: generated into bench/ on first use. */
async function defaultModel(): Promise<string> {
  try {
    Deno.statSync(DEFAULT_MODEL);
    return DEFAULT_MODEL;
  } catch { /* generate it */ }
  console.error(`bench: generating the 2B4T-shaped synthetic model at ${DEFAULT_MODEL} (~1.2 GB, once)...`);
  Deno.mkdirSync(new URL("bench/", ROOT), { recursive: true });
  const tmp = `${DEFAULT_MODEL}.partial`;
  const s = await synthModel({ preset: "2b4t", out: tmp });
  Deno.renameSync(tmp, DEFAULT_MODEL);
  console.error(`bench: wrote ${(s.bytes / 1e9).toFixed(2)} GB in ${s.seconds.toFixed(1)} s`);
  return DEFAULT_MODEL;
}

function modelSummary(path: string): ModelSummary {
  const config = modelConfigFromGguf(openGguf(path));
  return {
    path,
    file: path.split("/").pop()!,
    bytes: Deno.statSync(path).size,
    id: config.name,
    arch: config.arch,
    nLayers: config.nLayers,
    dim: config.dim,
    nVocab: config.nVocab,
  };
}

/** Reads the file once so every child (and the cold start) loads from a warm page cache. */
function warmPageCache(path: string): void {
  using file = Deno.openSync(path, { read: true });
  const buf = new Uint8Array(8 << 20);
  while ((file.readSync(buf) ?? 0) > 0) { /* read through */ }
}

/**
 * The serve task's V8 flags (wasm fully optimized), so the bench cannot drift from it, with V8's
 * revectorizer on or off as the child is asked to run.
 */
function childV8Flags(revec: boolean): string {
  const serve = serveFlags().find((f) => f.startsWith("--v8-flags="))?.slice("--v8-flags=".length);
  const flags = (serve ?? "--no-liftoff").split(",").filter((f) => f && f !== REVEC_V8_FLAG);
  return `--v8-flags=${[...flags, ...(revec ? [REVEC_V8_FLAG] : [])].join(",")}`;
}

/** Runs one child configuration and returns its JSON line. */
async function runChild<T>(cfg: ChildConfig): Promise<T> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-run=cat",
      "--no-prompt",
      childV8Flags(cfg.revec),
      CHILD,
      JSON.stringify(cfg),
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(
      `bench child (${cfg.mode}, ${cfg.threads} threads, revectorizer ${
        cfg.revec ? "on" : "off"
      }) failed with code ${out.code}`,
    );
  }
  return JSON.parse(text.slice(text.lastIndexOf("\n") + 1)) as T;
}

/** Runs every configuration and the cold start; the result the JSON file holds. */
export async function runBench(args: BenchArgs): Promise<BenchResult> {
  const model = args.model ?? await defaultModel();
  const summary = modelSummary(model);
  const base = WORKLOADS[args.quick ? "quick" : "full"];
  const workload: Workload = { ...base, reps: args.reps ?? base.reps };
  warmPageCache(model);
  const measured: Omit<RunResult, "bandwidthFraction">[] = [];
  const modes = args.revec === "both" ? [false, true] : [args.revec === "on"];
  const on = (revec: boolean) => `revectorizer ${revec ? "on" : "off"}`;
  for (const head of args.heads) {
    for (const threads of args.threads) {
      console.error(`bench: ${summary.file}, ${threads} thread(s), kernel ${args.kernel}, head ${head}`);
      // fused and unfused children alternate, so that a change in the machine's load hits both
      const cfg = { model, threads, kernel: args.kernel, head, workload, seed: 1234 };
      const single = new Map<boolean, SingleResult>(), multi = new Map<boolean, MultiResult>();
      const profile = new Map<boolean, ProfileResult>();
      for (const revec of modes) {
        console.error(`bench: single stream, ${on(revec)}`);
        single.set(revec, await runChild<SingleResult>({ ...cfg, revec, mode: "single" }));
      }
      for (const revec of modes) {
        console.error(`bench: streams, ${on(revec)}`);
        multi.set(revec, await runChild<MultiResult>({ ...cfg, revec, mode: "multi" }));
      }
      for (const revec of args.profile ? modes : []) {
        console.error(`bench: step profile, ${on(revec)}`);
        profile.set(revec, await runChild<ProfileResult>({ ...cfg, revec, mode: "profile" }));
      }
      for (const revec of modes) {
        const s = single.get(revec)!;
        const impliedGBs = (s.bytesPerToken.total * s.tgTokPerSec) / 1e9;
        measured.push({
          threads,
          kernel: args.kernel,
          head,
          revec,
          single: s,
          multi: multi.get(revec)!,
          profile: profile.get(revec) ?? null,
          impliedGBs,
        });
      }
    }
  }
  const bw = measured.length ? Math.max(...measured.map((r) => r.single.bandwidthGBs)) : null;
  const machine = machineInfo(bw);
  const runs: RunResult[] = measured.map((r) => ({ ...r, bandwidthFraction: bw ? r.impliedGBs / bw : null }));
  let coldStart: ColdStart = { ms: null, note: "skipped (--no-cold-start)" };
  if (args.coldStart) {
    console.error("bench: cold start (main.ts, spawn to GET /ready 200)");
    coldStart = await measureColdStart(model);
    if (coldStart.ms === null) console.error(`bench: cold start not measured: ${coldStart.note}`);
  }
  return {
    version: RESULT_VERSION,
    date: new Date().toISOString(),
    quick: args.quick,
    machine,
    model: summary,
    workload,
    coldStart,
    runs,
  };
}

function readResult(path: string): BenchResult {
  return JSON.parse(Deno.readTextFileSync(path)) as BenchResult;
}

if (import.meta.main) {
  try {
    const args = parseBenchArgs(Deno.args);
    const baseline = args.compare ? readResult(args.compare) : null; // fail early on a bad file
    const result = args.from ? readResult(args.from) : await runBench(args);
    if (!args.from) {
      const dir = args.json.slice(0, Math.max(0, args.json.lastIndexOf("/")));
      if (dir) Deno.mkdirSync(dir, { recursive: true });
      Deno.writeTextFileSync(args.json, JSON.stringify(result, null, 2) + "\n");
      console.error(`bench: wrote ${args.json}`);
    }
    const md = [markdown(result), fusedRatios(result), profileTables(result)].filter(Boolean).join("\n\n");
    if (args.md) Deno.writeTextFileSync(args.md, md + "\n");
    else console.log(md);
    if (baseline) console.log("\n" + compare(baseline, result));
  } catch (e) {
    console.error(`bench: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
