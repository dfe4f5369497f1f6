/**
 * Child process of revec_test.ts, started with the V8 flags under test. Modes:
 *
 * - `dots`: on this thread only (so that V8's trace of each function's compilation is not
 *   interleaved with other threads'), the ternary kernels of the relaxed build in both layouts on
 *   odd shapes and 1-8 activation rows; prints `RESULT {"mismatches": [...], "checked": n}` against
 *   a plain integer reference.
 * - `forward MODEL`: a tiny model's prefill logits with the relaxed kernels in both layouts at 2
 *   threads; prints `RESULT {"r4": sha256, "r16": sha256}` of the f32 logits' bytes.
 *
 * @module
 */
import { packI2S } from "../../engine/format/ternary_pack.ts";
import { loadModel } from "../../engine/model/loader.ts";
import { compileKernel, type TernaryLayout, WasmHost } from "../../wasm/loader.ts";

/** Shapes [rows, cols, tokens]: whole groups of 16, a tail past them, 1-8 tokens (pairs and an odd one). */
export const DOT_SHAPES: readonly (readonly [number, number, number])[] = [
  [48, 2560, 1],
  [48, 2560, 2],
  [35, 768, 3],
  [32, 6912, 4],
  [64, 1280, 8],
  [19, 384, 5],
];

/** The prefill tokens of `forward`. */
export const FORWARD_TOKENS = [1, 17, 33, 99, 5, 200, 7, 8, 300, 42, 11, 256, 3, 77, 150, 499];

function rng(seed: number) {
  return () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) | 0;
    return (seed >>> 8) / 2 ** 24;
  };
}

async function dots(): Promise<{ mismatches: string[]; checked: number }> {
  const km = await compileKernel("relaxed");
  const memory = new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true });
  const host = await WasmHost.create(km, memory, km.heapBase);
  const base = Math.ceil(km.heapBase / 4096) * 4096;
  const src = base, dst = base + (4 << 20), q = base + (8 << 20), out = base + (9 << 20);
  const bytes = new Uint8Array(memory.buffer);
  const mismatches: string[] = [];
  let checked = 0;
  for (const [rows, cols, n] of DOT_SHAPES) {
    const r = rng(rows * 131 + cols + n);
    const trits = Int8Array.from({ length: rows * cols }, () => Math.floor(r() * 3) - 1);
    const acts = Int8Array.from({ length: n * cols }, () => Math.floor(r() * 256) - 128);
    const file = packI2S(trits, 1);
    bytes.set(file, src);
    new Int8Array(memory.buffer, q, acts.length).set(acts);
    for (const layout of ["r4", "r16"] as TernaryLayout[]) {
      host.placeI2s(src, dst, rows, cols, file.length, layout);
      const status = host.probeI2("relaxed", layout, dst, rows, cols, q, n, out);
      if (status !== 0) mismatches.push(`${layout} ${rows}x${cols}: status ${status}`);
      const got = new Int32Array(memory.buffer, out, n * rows);
      for (let t = 0; t < n; t++) {
        for (let m = 0; m < rows; m++) {
          let want = 0;
          for (let j = 0; j < cols; j++) want += (trits[m * cols + j] + 1) * acts[t * cols + j];
          checked++;
          if (got[t * rows + m] !== want) {
            mismatches.push(
              `${layout} ${rows}x${cols} token ${t} row ${m}: ${got[t * rows + m]}, expected ${want}`,
            );
          }
        }
      }
    }
  }
  return { mismatches: mismatches.slice(0, 10), checked };
}

/** SHA-256 (hex) of logits' bytes: equal digests, bit-identical logits. */
export async function logitsDigest(logits: Float32Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", logits.slice());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function forward(model: string): Promise<Record<TernaryLayout, string>> {
  const out = {} as Record<TernaryLayout, string>;
  for (const layout of ["r4", "r16"] as TernaryLayout[]) {
    const { runtime } = await loadModel(model, {
      kernel: "relaxed",
      threads: 2,
      layout,
      nCtx: 64,
      maxBatch: 32,
    });
    try {
      const t = FORWARD_TOKENS;
      const logits = await runtime.forward({
        tokens: t,
        pos: t.map((_, i) => i),
        slot: t.map(() => 0),
        outIdx: t.map((_, i) => i),
      });
      out[layout] = await logitsDigest(logits);
    } finally {
      await runtime.close();
    }
  }
  return out;
}

if (import.meta.main) {
  const [mode, model] = Deno.args;
  const result = mode === "dots" ? await dots() : await forward(model);
  console.log(`RESULT ${JSON.stringify(result)}`);
}
