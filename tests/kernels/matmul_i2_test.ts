/**
 * The ternary matmul kernels (kernels/matmul_i2.c) against a plain TypeScript reference: integer
 * dots must match exactly, and the BitLinear outputs bit for bit (the f32 epilogue is emulated with
 * Math.fround), for every variant, odd shapes and thread counts 1, 2, 3 and 8.
 */
import { deepStrictEqual as assertEquals, equal } from "node:assert/strict";
import { packI2S } from "../../engine/format/ternary_pack.ts";
import { runMatmul } from "../_kernel_harness.ts";
import { rng } from "./_probe.ts";
import { planMemory } from "../../engine/model/memory_plan.ts";
import { compileKernel } from "../../wasm/loader.ts";
import type { KernelVariant, TernaryLayout } from "../../wasm/loader.ts";

/** f32.nearest */
function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The spec's BitLinear in f32 steps: what the kernels must produce bit for bit. */
function reference(trits: Int8Array, beta: number, rows: number, cols: number, x: Float32Array) {
  const f = Math.fround, n = x.length / cols;
  const dots = new Int32Array(n * rows), y = new Float32Array(n * rows);
  for (let t = 0; t < n; t++) {
    const xr = x.subarray(t * cols, (t + 1) * cols);
    let amax = 0;
    for (const v of xr) amax = Math.max(amax, Math.abs(v));
    const s = f(127 / Math.max(amax, f(1e-5)));
    const q = Array.from(xr, (v) => Math.max(-128, Math.min(127, rint(f(v * s)))));
    const sum = q.reduce((a, b) => a + b, 0);
    for (let m = 0; m < rows; m++) {
      let d = 0;
      for (let j = 0; j < cols; j++) d += (trits[m * cols + j] + 1) * q[j];
      dots[t * rows + m] = d;
      y[t * rows + m] = f(f((d - sum) / s) * beta);
    }
  }
  return { dots, y };
}

function problem(seed: number, rows: number, cols: number, n: number, scale = 4) {
  const r = rng(seed);
  const trits = Int8Array.from({ length: rows * cols }, () => Math.floor(r() * 3) - 1);
  const x = Float32Array.from({ length: n * cols }, () => (r() - 0.5) * scale);
  return { trits, x, beta: Math.fround(0.5 + r() * 2) };
}

const VARIANTS: KernelVariant[] = ["ref", "simd128", "relaxed"];
const LAYOUTS: TernaryLayout[] = ["r4", "r16"];

// rows in fours or sixteens (the memory layouts): whole groups, tails of rows past the last group,
// ranges cut inside a group (3 and 8 threads), 1-4 and 32-33 activation rows (token pairs, an odd one)
const SHAPES = [
  [1, 128, 1],
  [3, 384, 1],
  [17, 640, 3],
  [130, 256, 33],
  [64, 1280, 2],
  [130, 384, 1],
  [21, 1152, 1],
  [48, 2560, 4],
  [35, 768, 5],
  [160, 6912, 1],
];

for (const [rows, cols, n] of SHAPES) {
  Deno.test(`dot_i2_i8 matches the reference exactly for ${rows}x${cols} with ${n} activation rows`, async () => {
    const { trits, x, beta } = problem(rows * 7 + cols + n, rows, cols, n);
    const want = reference(trits, beta, rows, cols, x);
    const w = packI2S(trits, beta);
    for (const layout of LAYOUTS) {
      for (const variant of VARIANTS) {
        for (const threads of [1, 2, 3, 8]) {
          if (variant !== "relaxed" && (threads === 2 || threads === 8)) continue; // keep the test short
          const got = await runMatmul(variant, threads, w, rows, cols, x, layout);
          const what = `${layout} ${variant} x ${threads} threads`;
          equal(got.status, 0);
          assertEquals(got.dots, want.dots, `${what}: integer dots`);
          assertEquals(got.y, want.y, `${what}: outputs`);
        }
      }
    }
  });
}

Deno.test("dot_i2_i8 handles all-zero activations (absmax floor 1e-5) and extreme magnitudes", async () => {
  for (const scale of [0, 1e-9, 1e30]) {
    const { trits, x, beta } = problem(99, 16, 256, 2, scale);
    const want = reference(trits, beta, 16, 256, x);
    for (const layout of LAYOUTS) {
      const got = await runMatmul("relaxed", 2, packI2S(trits, beta), 16, 256, x, layout);
      assertEquals(got.dots, want.dots, `${layout} scale ${scale}`);
      assertEquals(got.y, want.y, `${layout} scale ${scale}`);
    }
  }
});

Deno.test("dot_i2_i8 is exact at the largest codes and activations (all +1 trits, activations +-127)", async () => {
  const rows = 18, cols = 6912; // a group of 16 and a tail of 2
  const trits = new Int8Array(rows * cols).fill(1);
  const x = Float32Array.from(
    { length: 3 * cols },
    (_, j) => j < cols ? 1 : j < 2 * cols ? -1 : (j % 2 ? 1 : -1),
  );
  const want = reference(trits, 1, rows, cols, x);
  for (const layout of LAYOUTS) {
    for (const variant of VARIANTS) {
      const got = await runMatmul(variant, 1, packI2S(trits, 1), rows, cols, x, layout);
      assertEquals(got.dots, want.dots, `${layout} ${variant}`);
    }
  }
});

Deno.test("the memory plan aligns what the SIMD matmul's fast path needs (else it takes the scalar path)", async () => {
  const km = await compileKernel("relaxed");
  for (
    const [dim, ffn, heapBase] of [[256, 768, km.heapBase], [2560, 6912, km.heapBase + 48], [128, 384, 1000]]
  ) {
    const shape = { dim, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: dim / 4, ffnDim: ffn, nVocab: 1000 };
    const sizes = { nCtx: 64, nSlots: 2, maxBatch: 7, maxOut: 3, nThreads: 3 };
    const tensors = [{ name: "odd", bytes: 13 }, { name: "w", bytes: (dim * ffn) / 4 + 32 }];
    const plan = planMemory(shape, sizes, tensors, 0, heapBase, km.abi.ctxBytes, km.abi.layerBytes);
    equal(plan.scratch.xq.offset % 128, 0, "activation rows at 128 bytes");
    equal(plan.tensors.get("w")!.offset % 32, 0, "weight blocks at 32 bytes");
  }
});
