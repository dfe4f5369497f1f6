/**
 * `deno task bench:ternary`: the ternary kernels alone, both layouts interleaved in one process
 * (`r4`: rows in fours, the 128-bit kernels; `r16`: rows in sixteens, the kernels V8 fuses into
 * 256-bit code), at 1 and 2 threads, on 2B4T's matrix shapes:
 *
 * - `L2`: one 512 x 2560 matrix passed over again and again (each thread's rows stay in its L2);
 * - `DRAM`: 8 of 2B4T's layers (q, k, v, o, gate, up, down: 139 MB a layout) streamed once a pass;
 * - token counts 1 (decode), 2, 4, 8 (streams), 32 (a prefill tile) on the DRAM set.
 *
 * Prints G multiply-adds/s per thread (wall time), best and median of the rounds; the median per
 * CPU-second of the process (what a core does while it runs: on a shared machine, free of the time
 * other jobs take); and the r16/r4 ratio of the wall medians. Run it with and without V8's
 * revectorizer to see what fusing adds:
 *
 * ```sh
 * deno task bench:ternary                       # the serve task's V8 flags (revectorizer on)
 * deno run --allow-read --v8-flags=--no-liftoff scripts/bench/ternary.ts   # the flag off
 * deno task bench:ternary --threads 1 --rounds 9 --tokens 1,8
 * ```
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import {
  compileKernel,
  detectKernel,
  type KernelModule,
  STACK_BYTES,
  type TernaryLayout,
  WasmHost,
} from "../../wasm/loader.ts";
import type { Job } from "./_ternary_worker.ts";

const LAYOUTS: TernaryLayout[] = ["r4", "r16"];
/** One 2B4T layer: [rows, cols] of q, k, v, o, gate, up, down. */
const LAYER: readonly (readonly [number, number])[] = [
  [2560, 2560],
  [640, 2560],
  [640, 2560],
  [2560, 2560],
  [6912, 2560],
  [6912, 2560],
  [2560, 6912],
];

interface Mat {
  readonly rows: number;
  readonly cols: number;
  readonly at: Record<TernaryLayout, number>;
}

/** Shared memory with both layouts of every matrix, activations and outputs. */
function setUp(km: KernelModule, threads: number, layers: number, maxTokens: number) {
  const shapes: (readonly [number, number])[] = [[512, 2560]];
  for (let l = 0; l < layers; l++) shapes.push(...LAYER);
  const align = (a: number) => Math.ceil(a / 128) * 128;
  let end = align(km.heapBase + STACK_BYTES * threads);
  const stackTops = Array.from({ length: threads }, (_, i) => km.heapBase + STACK_BYTES * (i + 1));
  const q = end;
  end = align(q + maxTokens * 6912);
  const dots = end;
  end = align(dots + threads * 4 * maxTokens * 6912);
  const stage = end;
  end = align(stage + (6912 * 2560) / 4 + 32);
  const mats: Mat[] = shapes.map(([rows, cols]) => {
    const bytes = (rows * cols) / 4 + 32;
    const at = { r4: end, r16: align(end + bytes) };
    end = align(at.r16 + bytes);
    return { rows, cols, at };
  });
  const pages = Math.ceil(end / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  return { memory, mats, q, dots, stage, stackTops };
}

async function place(
  km: KernelModule,
  memory: WebAssembly.Memory,
  mats: Mat[],
  stage: number,
  q: number,
  n: number,
) {
  const host = await WasmHost.create(km, memory, km.heapBase);
  const bytes = new Uint8Array(memory.buffer);
  let seed = 12345;
  const pattern = new Uint8Array(1 << 16);
  for (let i = 0; i < pattern.length; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) | 0;
    const r = seed >>> 8;
    pattern[i] = (r % 3) | ((r >>> 4) % 3) << 2 | ((r >>> 8) % 3) << 4 | ((r >>> 12) % 3) << 6;
  }
  for (let i = 0; i < n * 6912; i++) bytes[q + i] = pattern[i & 0xffff] * 7;
  for (const m of mats) {
    const nb = (m.rows * m.cols) / 4 + 32;
    for (let i = 0; i < nb; i += pattern.length) {
      bytes.set(pattern.subarray(0, Math.min(pattern.length, nb - i)), stage + i);
    }
    for (const l of LAYOUTS) host.placeI2s(stage, m.at[l], m.rows, m.cols, nb, l);
  }
}

async function startWorkers(
  km: KernelModule,
  memory: WebAssembly.Memory,
  stackTops: number[],
): Promise<Worker[]> {
  const workers = stackTops.map(() =>
    new Worker(new URL("./_ternary_worker.ts", import.meta.url), { type: "module" })
  );
  await Promise.all(workers.map((w, i) =>
    new Promise<void>((resolve, reject) => {
      w.onmessage = () => resolve();
      w.onerror = (e) => reject(new Error(e.message));
      w.postMessage({ init: { km, memory, stackTop: stackTops[i] } });
    })
  ));
  return workers;
}

/** Runs `job` (mats split by rows across the workers); returns the wall time and the process's CPU time, in ms. */
async function timed(
  workers: Worker[],
  job: Omit<Job, "mats" | "dots">,
  mats: Mat[],
  layout: TernaryLayout,
  dots: number,
  n: number,
) {
  const t0 = performance.now(), cpu0 = process.cpuUsage();
  await Promise.all(workers.map((w, i) =>
    new Promise<void>((resolve, reject) => {
      const share = mats.map((m) => {
        const groups = m.rows / 16;
        const m0 = Math.floor((groups * i) / workers.length) * 16,
          m1 = Math.floor((groups * (i + 1)) / workers.length) * 16;
        return { w: m.at[layout], rows: m.rows, cols: m.cols, m0, m1 };
      });
      w.onmessage = () => resolve();
      w.onerror = (e) => reject(new Error(e.message));
      w.postMessage({ run: { ...job, mats: share, dots: dots + i * 4 * n * 6912 } });
    })
  ));
  const cpu = process.cpuUsage(cpu0);
  return { wall: performance.now() - t0, cpu: (cpu.user + cpu.system) / 1000 };
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => b - a);
  return { best: s[0], median: s[s.length >> 1] };
};

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      threads: { type: "string", default: "1,2" },
      tokens: { type: "string", default: "1,2,4,8,32" },
      rounds: { type: "string", default: "7" },
      layers: { type: "string", default: "8" },
      kernel: { type: "string" },
    },
  });
  const threadCounts = v.threads.split(",").map(Number);
  const tokenCounts = v.tokens.split(",").map(Number);
  const rounds = Number(v.rounds), layers = Number(v.layers);
  const kernel = (v.kernel ?? detectKernel()) as "simd128" | "relaxed";
  const km = await compileKernel(kernel);
  const maxThreads = Math.max(...threadCounts), maxTokens = Math.max(...tokenCounts);
  const { memory, mats, q, dots, stage, stackTops } = setUp(km, maxThreads, layers, maxTokens);
  await place(km, memory, mats, stage, q, maxTokens);
  const l2 = [mats[0]], dram = mats.slice(1);
  const dramMacs = dram.reduce((s, m) => s + m.rows * m.cols, 0);
  console.log(
    `ternary kernels, ${kernel} build | ${navigator.hardwareConcurrency} cores | DRAM set ${
      (dramMacs / 4 / 1e6).toFixed(0)
    } MB a layout | G multiply-adds/s per thread, best / median of ${rounds}`,
  );
  console.log(
    "| threads | weights | tokens | r4 best / median | r16 best / median | per CPU-second r4 / r16 | r16/r4 (medians) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  const all = await startWorkers(km, memory, stackTops);
  try {
    for (const threads of threadCounts) {
      const workers = all.slice(0, threads);
      const cases: [string, Mat[], number, number][] = [["L2", l2, 1, 64]];
      for (const n of tokenCounts) cases.push(["DRAM", dram, n, 1]);
      for (const [name, set, n, reps] of cases) {
        const macs = set.reduce((s, m) => s + m.rows * m.cols, 0) * n * reps;
        const rate: Record<TernaryLayout, number[]> = { r4: [], r16: [] };
        const perCpu: Record<TernaryLayout, number[]> = { r4: [], r16: [] };
        const job = { kernel, q, n, reps };
        for (const l of LAYOUTS) await timed(workers, { ...job, layout: l }, set, l, dots, n); // warm
        for (let r = 0; r < rounds; r++) {
          for (const l of LAYOUTS) {
            const t = await timed(workers, { ...job, layout: l }, set, l, dots, n);
            rate[l].push(macs / t.wall / 1e6 / threads);
            perCpu[l].push(macs / t.cpu / 1e6);
          }
        }
        const a = stats(rate.r4), b = stats(rate.r16), ca = stats(perCpu.r4), cb = stats(perCpu.r16);
        const cells = [
          `${a.best.toFixed(1)} / ${a.median.toFixed(1)}`,
          `${b.best.toFixed(1)} / ${b.median.toFixed(1)}`,
          `${ca.median.toFixed(1)} / ${cb.median.toFixed(1)}`,
          (b.median / a.median).toFixed(2),
        ];
        console.log(`| ${threads} | ${name} | ${n} | ${cells.join(" | ")} |`);
      }
    }
  } finally {
    for (const w of all) w.terminate();
  }
}
