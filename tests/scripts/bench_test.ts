/**
 * `deno task bench` end to end in `--quick` mode on a tiny synthetic model: the JSON has every
 * field with sane values for each configuration with V8's revectorizer off and on, the markdown
 * tables (results, fused/unfused ratios, per-part step profiles) are printed, and `--compare` prints
 * each metric's change. No timing assertions (the numbers depend on the machine).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { change, compare, fusedRatios, markdown, profileTables } from "../../scripts/bench/report.ts";
import type { BenchResult, RunResult } from "../../scripts/bench/result.ts";
import { parseBenchArgs, WORKLOADS } from "../../scripts/bench.ts";
import { tinyModel } from "../_models.ts";

const BENCH = new URL("../../scripts/bench.ts", import.meta.url).pathname;
const PERMS = ["--allow-read", "--allow-write=/tmp", "--allow-env", "--allow-net=127.0.0.1", "--allow-run"];

async function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMS, BENCH, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const positive = (x: unknown, what: string) =>
  assert(typeof x === "number" && Number.isFinite(x) && x > 0, `${what} = ${x}`);

function checkRun(run: RunResult, threads: number, revec: boolean) {
  assertEquals([run.threads, run.revec], [threads, revec]);
  assertEquals(run.head, "file");
  const s = run.single;
  assertEquals([s.mode, s.nCtx, s.nSlots, s.headType], ["single", 4096, 1, "F16"]);
  for (const k of ["loadMs", "loadWallMs", "tgTokPerSec", "rssBeforeKvBytes", "peakRssBytes"] as const) {
    positive(s[k], k);
  }
  for (const k of ["total", "weights", "kv", "scratch"] as const) positive(s.memory[k], `memory.${k}`);
  for (const x of [s.ppTokPerSec, s.ttftMs]) {
    positive(x.median, "median");
    positive(x.best, "best");
    assertEquals(x.samples.length, 1);
  }
  const b = s.bytesPerToken;
  for (const k of ["ternary", "head", "other", "kv", "total"] as const) positive(b[k], `bytesPerToken.${k}`);
  assertEquals(b.total, b.ternary + b.head + b.other + b.kv);
  assert(s.peakRssBytes >= s.rssBeforeKvBytes && s.peakRssBytes >= s.memory.weights);
  const g = s.grammar!;
  for (
    const k of [
      "initMs",
      "compileSmallMs",
      "compile200Ms",
      "cachedMs",
      "tgTokPerSec",
      "maskMsPerToken",
    ] as const
  ) {
    positive(g[k], `grammar.${k}`);
  }
  positive(g.maskShare, "grammar.maskShare"); // a tiny model decodes faster than the worker answers: no bound
  // measured after the main peak RSS: the grammar worker comes on top of it
  assert(g.peakRssBytes! >= s.peakRssBytes, `grammar.peakRssBytes ${g.peakRssBytes} < ${s.peakRssBytes}`);
  positive(run.impliedGBs, "impliedGBs");
  positive(s.bandwidthGBs, "bandwidthGBs");
  positive(run.bandwidthFraction ?? 0, "bandwidthFraction");
  const m = run.multi;
  assertEquals([m.mode, m.nSlots], ["multi", 8]);
  positive(m.peakRssBytes, "multi.peakRssBytes");
  assertEquals(m.streams.map((x) => x.streams), [1, 4, 8]);
  for (const x of m.streams) {
    assertEquals(x.generated, x.streams * 8);
    positive(x.aggregateTokPerSec, "aggregateTokPerSec");
    positive(x.perStreamTokPerSec, "perStreamTokPerSec");
    positive(x.wallMs, "wallMs");
  }
  const p = run.profile!;
  assertEquals([p.mode, p.decodePos, p.decodeLongPos], ["profile", 16, 256]);
  for (const step of [p.decode, p.decodeLong, p.prefill]) {
    assertEquals(step.threads, threads);
    assert(step.steps >= 1, `${step.steps} steps profiled`);
    for (const part of ["qkv", "gate_up", "down", "head"] as const) positive(step.parts[part].work, part);
    const inside = Object.values(step.parts).reduce((s, t) => s + t.work + t.wait, 0);
    assert(inside <= step.stepMs * 1.001, `parts ${inside} ms, step ${step.stepMs} ms`);
  }
  positive(p.macs.ternary, "macs.ternary");
  positive(p.macs.head, "macs.head");
}

/** A copy of `r` whose tg was twice as fast (so the run compared against it is 50% slower). */
function fasterBaseline(r: BenchResult): BenchResult {
  return {
    ...r,
    runs: r.runs.map((run) => ({
      ...run,
      single: { ...run.single, tgTokPerSec: run.single.tgTokPerSec * 2 },
    })),
  };
}

/** A hand-made result (the shape a run writes) for the report tests. */
function fixture(): BenchResult {
  const samples = (x: number) => ({ median: x, best: x, samples: [x] });
  const run = (threads: number): RunResult => ({
    threads,
    kernel: "relaxed",
    head: "file",
    single: {
      mode: "single",
      nCtx: 4096,
      nSlots: 1,
      kernel: "relaxed",
      headType: "F16",
      loadMs: 900,
      loadWallMs: 950,
      memory: { total: 1.6e9, weights: 1.2e9, kv: 3e8, scratch: 1e8 },
      ppTokPerSec: samples(40 * threads),
      ttftMs: samples(3200 / threads),
      tgTokPerSec: 5 * threads,
      bytesPerToken: { ternary: 5.2e8, head: 6.6e8, other: 1e6, kv: 5e6, kvPosition: 72, total: 1.186e9 },
      bandwidthGBs: 40,
      rssBeforeKvBytes: 1.3e9,
      peakRssBytes: 1.6e9,
    },
    multi: {
      mode: "multi",
      nCtx: 512,
      nSlots: 8,
      streams: [1, 4, 8].map((k) => ({
        streams: k,
        aggregateTokPerSec: 5 * k,
        perStreamTokPerSec: 5,
        generated: 64 * k,
        wallMs: 12600,
      })),
      peakRssBytes: 1.4e9,
    },
    impliedGBs: 5.93 * threads,
    bandwidthFraction: (5.93 * threads) / 40,
  });
  return {
    version: 1,
    date: "2026-01-01T00:00:00.000Z",
    quick: false,
    machine: {
      cpu: "Test CPU",
      cores: 2,
      os: "linux x86_64",
      deno: "2.9.6",
      v8: "15.0",
      detectedKernel: "relaxed",
      bandwidthGBs: 40,
      bandwidthNote: "all workers reading the loaded weights (best of the runs)",
    },
    model: {
      path: "/m/2b4t-i2_s.gguf",
      file: "2b4t-i2_s.gguf",
      bytes: 1.19e9,
      id: "bitnet2b",
      arch: "bitnet-b1.58",
      nLayers: 30,
      dim: 2560,
      nVocab: 128256,
    },
    workload: WORKLOADS.full,
    coldStart: { ms: 800, note: "test" },
    runs: [run(1), run(2)],
  };
}

Deno.test("bench --quick writes JSON with every field and prints the table; --compare prints changes", async () => {
  const model = await tinyModel();
  const dir = Deno.makeTempDirSync({ prefix: "bn-bench-test-" });
  try {
    const json = `${dir}/run.json`;
    const run = await bench(["--quick", "--model", model, "--threads", "1,2", "--json", json]);
    assertEquals(run.code, 0, run.stderr);
    const r = JSON.parse(Deno.readTextFileSync(json)) as BenchResult;

    assertEquals([r.version, r.quick], [2, true]);
    assert(!Number.isNaN(Date.parse(r.date)));
    assert(r.machine.cpu.length > 0 && r.machine.cores >= 1 && r.machine.deno === Deno.version.deno);
    assert(["simd128", "relaxed"].includes(r.machine.detectedKernel));
    assert(r.machine.bandwidthGBs !== null && r.machine.bandwidthGBs > 0);
    for (const run of r.runs) {
      assert(run.single.bandwidthGBs > 0 && run.single.bandwidthGBs <= r.machine.bandwidthGBs);
      assert(run.bandwidthFraction !== null && run.bandwidthFraction > 0);
    }
    assertEquals([r.model.path, r.model.file, r.model.nLayers, r.model.nVocab], [
      model,
      model.split("/").pop(),
      2,
      512,
    ]);
    positive(r.model.bytes, "model.bytes");
    assertEquals(r.workload.ppTokens, 128);
    assert(r.coldStart.ms === null || r.coldStart.ms > 0, JSON.stringify(r.coldStart));
    assert(r.coldStart.note.length > 0);
    assertEquals(r.runs.map((x) => [x.threads, x.revec]), [[1, false], [1, true], [2, false], [2, true]]);
    r.runs.forEach((x) => checkRun(x, x.threads, x.revec!));
    assertEquals(r.runs[0].kernel, r.machine.detectedKernel);

    assert(
      run.stdout.includes(
        "| model | threads | kernel | fused | head | load | TTFT(128) | pp128 tok/s | tg16 tok/s |",
      ),
    );
    for (const fused of ["off", "on"]) {
      assert(
        run.stdout.includes(`| ${r.model.file} | 2 | ${r.machine.detectedKernel} | ${fused} | file (F16) |`),
        run.stdout,
      );
    }
    assert(run.stdout.includes(fusedRatios(r)) && fusedRatios(r).includes("| 2 threads, "), run.stdout);
    assert(run.stdout.includes(profileTables(r)), run.stdout);
    assert(profileTables(r).includes("| LM head | "), profileTables(r));
    assert(
      run.stdout.includes(
        "| threads | head | fused | tokenizer info | compile 3 props | compile 200 props |",
      ),
      run.stdout,
    );

    // --from re-renders a saved run without running; --compare prints old -> new per metric
    const old = `${dir}/old.json`;
    Deno.writeTextFileSync(old, JSON.stringify(fasterBaseline(r)));
    const cmp = await bench(["--from", json, "--compare", old, "--md", `${dir}/run.md`]);
    assertEquals(cmp.code, 0, cmp.stderr);
    assertEquals(
      Deno.readTextFileSync(`${dir}/run.md`).trim(),
      [markdown(r), fusedRatios(r), profileTables(r)].join("\n\n"),
    );
    assert(cmp.stdout.includes("| configuration | metric | old | new | change |"), cmp.stdout);
    assert(
      cmp.stdout.includes("| 1 threads, " + r.runs[0].kernel + ", head file | tg16 tok/s |"),
      cmp.stdout,
    );
    assert(cmp.stdout.includes("-50.0% (worse)"), cmp.stdout);
    assert(cmp.stdout.includes("+0.0%"), cmp.stdout);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("markdown() prints the machine line, one row per configuration and the column notes", () => {
  const text = markdown(fixture());
  const lines = text.split("\n");
  assert(
    lines[0].startsWith("CPU: Test CPU, 2 cores, linux x86_64 | Deno 2.9.6 (V8 15.0) | 2026-01-01 |"),
    lines[0],
  );
  assert(
    lines[0].includes(
      "cold start 800 ms | memory read bandwidth 40.0 GB/s",
    ),
  );
  assertEquals(
    lines[2],
    "| model | threads | kernel | fused | head | load | TTFT(128) | pp128 tok/s | tg128 tok/s | 1 stream | 4 streams | 8 streams " +
      "| peak RSS | bytes/token | GB/s |",
  );
  assertEquals(
    lines[5],
    "| 2b4t-i2_s.gguf | 2 | relaxed | off | file (F16) | 900 ms | 1600 ms | 80.0 | 10.00 | 5.00 | 20.00 | 40.00 | 1.49 GiB | 1.10 GiB | 11.86 |",
  );
});

Deno.test("compare() warns about runs that are not comparable and lists unmatched configurations", () => {
  const base = fixture();
  const other = {
    ...base,
    machine: { ...base.machine, cpu: "Other CPU" },
    runs: [{ ...base.runs[0], threads: 3 }],
  };
  const text = compare(base, other);
  assert(text.includes('warning: different CPU: "Test CPU" vs "Other CPU"'), text);
  assert(text.includes("only in the new run: 3 threads, relaxed, head file"), text);
  assert(text.includes("only in the old run: 1 threads, relaxed, head file"), text);
  assert(text.includes("only in the old run: 2 threads, relaxed, head file"), text);
  assert(text.includes("| server | cold start ms | 800 | 800 | +0.0% |"), text);
});

Deno.test("change() gives the signed percentage and says whether it is better", () => {
  assertEquals(change(100, 150, true), "+50.0% (better)");
  assertEquals(change(100, 150, false), "+50.0% (worse)");
  assertEquals(change(200, 100, false), "-50.0% (better)");
  assertEquals(change(100, 100, true), "+0.0%");
  assertEquals(change(null, 100, true), "n/a");
  assertEquals(change(0, 100, true), "n/a");
});

Deno.test("parseBenchArgs() reads lists and refuses unknown kernels, heads and thread counts", () => {
  const a = parseBenchArgs(["--threads", "2,1,2", "--head", "file,q8_0", "--kernel", "simd128", "--quick"]);
  assertEquals([a.threads, a.heads, a.kernel, a.quick, a.model, a.compare, a.revec, a.profile], [
    [1, 2],
    ["file", "q8_0"],
    "simd128",
    true,
    null,
    null,
    "both",
    true,
  ]);
  const b = parseBenchArgs(["--revec", "on", "--no-profile"]);
  assertEquals([b.revec, b.profile], ["on", false]);
  assert(a.json.endsWith("/bench/last.json"));
  for (
    const bad of [["--kernel", "avx"], ["--head", "f32"], ["--threads", "0"], ["--threads", "x"], [
      "--reps",
      "0",
    ], ["--revec", "maybe"]]
  ) {
    let threw = false;
    try {
      parseBenchArgs(bad);
    } catch (e) {
      threw = e instanceof TypeError;
    }
    assert(threw, bad.join(" "));
  }
});
