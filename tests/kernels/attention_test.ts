/**
 * The attention ops (kernels/vec.c: scores_f16s, values_f16s) against a TypeScript emulation of the
 * contract: each head's score is the canonical F32 x F16 dot (bit for bit), each output element sums
 * weight x value over the positions in order; for one head or two sharing the loads, head sizes
 * 16-128 (multiples of 32 and a 16-element tail), 1 to 33 positions, on every variant.
 */
import { equal } from "node:assert/strict";
import { canonicalSum, probe, rng, sameF32, variantsOf } from "./_probe.ts";

const f = Math.fround;
/** f16 bits shifted into an f32 (bn_f16_shifted): the value times 2^-112, exactly */
const shifted = (h: number) => new Float16Array(new Uint16Array([h]).buffer)[0] * 2 ** -112;

for (const build of ["simd128", "relaxed"] as const) {
  Deno.test(`attention scores and values equal their scalar contract (${build} build and its _ref)`, async () => {
    const p = await probe(build);
    for (const hd of [16, 48, 64, 128]) {
      for (const n of [1, 2, 7, 33]) {
        for (const heads of [1, 2]) {
          const r = rng(hd * 1000 + n * 10 + heads);
          const cache = new Float16Array(2 * n * hd);
          for (let i = 0; i < cache.length; i++) {
            const u = r();
            cache[i] = u < 0.03 ? 0 : u < 0.06 ? (r() - 0.5) * 2 ** -16 : (r() - 0.5) * 8;
          }
          const bits = new Uint16Array(cache.buffer);
          const k = p.alloc(2 * n * hd), v = p.alloc(2 * n * hd);
          new Uint16Array(p.memory.buffer, k, n * hd).set(bits.subarray(0, n * hd));
          new Uint16Array(p.memory.buffer, v, n * hd).set(bits.subarray(n * hd));
          const q = [p.alloc(4 * hd), p.alloc(4 * hd)], s = [p.alloc(4 * n), p.alloc(4 * n)];
          const o = [p.alloc(4 * hd), p.alloc(4 * hd)];
          const qs = q.map((a) => new Float32Array(p.memory.buffer, a, hd));
          for (const row of qs) for (let i = 0; i < hd; i++) row[i] = f((r() - 0.5) * 2 ** 112);
          const scale = 2 ** 100; // scores of about 2^100: the values' weights (times 2^112) in range
          const wantS = qs.map((row) =>
            Array.from(
              { length: n },
              (_, t) => f(canonicalSum((i) => f(row[i] * shifted(bits[t * hd + i])), hd) * scale),
            )
          );
          const wantO = wantS.map((w) =>
            Array.from({ length: hd }, (_, i) => {
              let acc = 0;
              for (let t = 0; t < n; t++) acc = f(acc + f(w[t] * shifted(bits[(n + t) * hd + i])));
              return acc;
            })
          );
          for (const { name, id } of variantsOf(build)) {
            p.host.attention(id, [q[0], heads === 2 ? q[1] : 0], k, v, hd, n, scale, [s[0], s[1]], [
              o[0],
              o[1],
            ]);
            for (let h = 0; h < heads; h++) {
              const gotS = new Float32Array(p.memory.buffer, s[h], n),
                gotO = new Float32Array(p.memory.buffer, o[h], hd);
              const at = `${name} hd ${hd} n ${n} heads ${heads} head ${h}`;
              for (let t = 0; t < n; t++) {
                equal(sameF32(gotS[t], wantS[h][t]), true, `${at} score ${t}: ${gotS[t]} vs ${wantS[h][t]}`);
              }
              for (let i = 0; i < hd; i++) {
                equal(sameF32(gotO[i], wantO[h][i]), true, `${at} value ${i}: ${gotO[i]} vs ${wantO[h][i]}`);
              }
            }
          }
        }
      }
    }
  });
}
