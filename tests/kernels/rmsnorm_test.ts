/**
 * RMSNorm (kernels/vec.c) in double: the sum of squares in 8 partial sums s[i % 8] folded 4-2-1,
 * each square exact, and each output (x * scale) * w rounded to f32 once; JavaScript numbers are
 * doubles, so the emulation here is exact. Every variant, lengths of 16 to 6912, tiny and huge values.
 */
import { equal } from "node:assert/strict";
import { probe, rng, sameF32, variantsOf } from "./_probe.ts";

function reference(x: Float32Array, w: Float32Array, eps: number): Float32Array {
  const s = new Array<number>(8).fill(0);
  for (let i = 0; i < x.length; i++) s[i & 7] += x[i] * x[i];
  for (let j = 0; j < 4; j++) s[j] += s[j + 4];
  const scale = 1 / Math.sqrt(((s[0] + s[2]) + (s[1] + s[3])) / x.length + Math.fround(eps));
  return Float32Array.from(x, (v, i) => (v * scale) * w[i]);
}

for (const build of ["simd128", "relaxed"] as const) {
  Deno.test(`rmsnorm sums in double and rounds each output once (${build} build and its _ref)`, async () => {
    const p = await probe(build);
    for (const n of [16, 48, 2560, 6912]) {
      for (const mag of [1e-30, 1e-3, 1, 3e4]) {
        const r = rng(n + mag), x = p.alloc(4 * n), w = p.alloc(4 * n), y = p.alloc(4 * n);
        const xs = new Float32Array(p.memory.buffer, x, n), ws = new Float32Array(p.memory.buffer, w, n);
        for (let i = 0; i < n; i++) {
          xs[i] = (r() - 0.5) * 2 * mag;
          ws[i] = 0.5 + r();
        }
        const want = reference(xs, ws, 1e-6);
        for (const { name, id } of variantsOf(build)) {
          p.host.rmsnorm(id, y, x, w, n, 1e-6);
          const got = new Float32Array(p.memory.buffer, y, n);
          for (let i = 0; i < n; i++) {
            equal(
              sameF32(got[i], want[i]),
              true,
              `${name} n ${n} x ~${mag} element ${i}: ${got[i]} vs ${want[i]}`,
            );
          }
        }
      }
    }
  });
}
