/**
 * The exact F16 head in the F16P layout (kernels/head_f16.c): placement (rows in fours, each group
 * scaled by 2^10 unless a value is 64 or more) keeps every value exactly, and the logits equal the
 * canonical F32 x F16 dot of the file's values bit for bit (emulated here with Math.fround), on every
 * variant, for odd vocabularies, subnormal and zero weights, unscaled pairs, activations of 2^16 and
 * more (the exact fallback), and ranges that start or end anywhere.
 */
import { equal, throws } from "node:assert/strict";
import { assertRows, canonicalSum, probe, rng, variantsOf } from "./_probe.ts";

/** An F16 [nv][dim] matrix: gaussian values, some subnormals and zeros, and `big` rows of 64 and more. */
function matrix(seed: number, nv: number, dim: number, big: readonly number[]): Uint16Array {
  const r = rng(seed), f = new Float16Array(nv * dim);
  for (let i = 0; i < f.length; i++) {
    const u = r();
    f[i] = u < 0.02
      ? 0
      : u < 0.06
      ? (r() - 0.5) * 2 ** -15
      : 0.05 * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(7 * u);
  }
  for (const v of big) f[v * dim + Math.floor(r() * dim)] = r() < 0.5 ? 64 : -1000;
  return new Uint16Array(f.buffer);
}

Deno.test("F16P placement refuses a range of rows that splits a group of four", async () => {
  const p = await probe("simd128");
  const src = p.alloc(2 * 12 * 128), dst = p.alloc(2 * 12 * 128 + 4);
  for (const [row0, rows] of [[2, 4], [0, 6], [4, 7]]) {
    throws(() => p.host.placeF16p(src, dst, row0, rows, 128, 12), RangeError, `rows ${row0} +${rows}`);
  }
  p.host.placeF16p(src, dst, 8, 4, 128, 12); // the last group
  p.host.placeF16p(src, dst, 8, 3, 128, 11); // a count that ends the matrix
});

for (const build of ["simd128", "relaxed"] as const) {
  Deno.test(`F16P head logits equal the canonical F16 dot bit for bit (${build} build and its _ref)`, async () => {
    const p = await probe(build);
    for (const [nv, dim, big] of [[37, 128, [5, 36]], [64, 384, [0]], [9, 256, []]] as const) {
      const src = matrix(nv * dim, nv, dim, big);
      const values = new Float16Array(src.buffer);
      const s = p.alloc(src.byteLength), w = p.alloc(src.byteLength + nv);
      new Uint16Array(p.memory.buffer, s, src.length).set(src);
      const half = 4 * Math.floor(nv / 8); // placed in two chunks, as the loader's jobs do
      p.host.placeF16p(s, w, 0, half, dim, nv);
      p.host.placeF16p(s + 2 * half * dim, w, half, nv - half, dim, nv);
      const row = p.alloc(4 * dim);
      for (let v = 0; v < nv; v++) {
        p.host.embedF16p(w, nv, dim, v, row);
        const got = new Float32Array(p.memory.buffer, row, dim);
        for (let c = 0; c < dim; c++) equal(got[c], values[v * dim + c], `embedding ${v}, ${c}`);
      }
      const x = p.alloc(4 * dim), hxs = p.alloc(4 * (2 * dim + 4)), out = p.alloc(4 * nv);
      for (const scale of [1, 1e-20, 3e4, 1e5]) { // 1e5: some |x| >= 2^16, the exact fallback
        const r = rng(scale * 7 + nv), xs = new Float32Array(p.memory.buffer, x, dim);
        for (let c = 0; c < dim; c++) xs[c] = (r() - 0.5) * 2 * scale;
        const want = Array.from(
          { length: nv },
          (_, v) => canonicalSum((c) => Math.fround(xs[c] * values[v * dim + c]), dim),
        );
        for (const { name, id } of variantsOf(build)) {
          for (const [v0, v1] of [[0, nv], [2, Math.min(13, nv)], [4, nv], [1, nv - 1]]) {
            const logits = new Float32Array(p.memory.buffer, out, nv);
            logits.fill(NaN);
            p.host.headF16p(id, w, dim, v0, v1, x, hxs, out, nv);
            assertRows(logits, want, v0, v1, `${name} nv ${nv} dim ${dim} x*${scale}`);
          }
        }
      }
    }
  });
}
