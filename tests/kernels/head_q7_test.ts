/**
 * The Q7 head (kernels/head.c, layout made at load by bn_quantize_q7_f16: rows and block scales in
 * fours) against a TypeScript emulation of its contract: weights quantized per 32 to w + 64 with
 * an f32 scale absmax/63, the activation per 32 to int8 with scale absmax/127, per row and block four
 * integer lane sums (lane 0 less 64 times the block's activation sum) times dw*dq added to four f32
 * lanes, folded (0+2)+(1+3). Bit for bit, every variant, odd vocabularies (rows past the last four)
 * and ranges that start or end inside a group of four.
 */
import { assertRows, probe, rng, variantsOf } from "./_probe.ts";

const f = Math.fround;
const rint = (x: number) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** Per-32 quantization as the kernels do it: the ints and the f32 scale of each block. */
function blocks(v: ArrayLike<number>, limit: number): { q: Int32Array; d: Float32Array } {
  const q = new Int32Array(v.length), d = new Float32Array(v.length / 32);
  for (let k = 0; k < d.length; k++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(v[32 * k + i]));
    d[k] = f(amax / limit);
    const id = d[k] > 0 ? f(1 / d[k]) : 0;
    for (let i = 0; i < 32; i++) {
      q[32 * k + i] = Math.max(-limit, Math.min(limit, rint(f(v[32 * k + i] * id))));
    }
  }
  return { q, d };
}

function reference(w: Float16Array, nv: number, dim: number, y: Float32Array): Float32Array {
  const a = blocks(y, 127), out = new Float32Array(nv);
  for (let v = 0; v < nv; v++) {
    const wq = blocks(w.subarray(v * dim, (v + 1) * dim), 63), acc = [0, 0, 0, 0];
    for (let k = 0; k < dim / 32; k++) {
      const lane = [0, 0, 0, 0];
      let sum = 0;
      for (let i = 0; i < 32; i++) {
        lane[(i % 16) >> 2] += (wq.q[32 * k + i] + 64) * a.q[32 * k + i];
        sum += a.q[32 * k + i];
      }
      lane[0] -= 64 * sum;
      const sc = f(wq.d[k] * a.d[k]);
      for (let l = 0; l < 4; l++) acc[l] = f(acc[l] + f(lane[l] * sc));
    }
    out[v] = f(f(acc[0] + acc[2]) + f(acc[1] + acc[3]));
  }
  return out;
}

for (const build of ["simd128", "relaxed"] as const) {
  Deno.test(`Q7 head logits follow their contract bit for bit (${build} build and its _ref)`, async () => {
    const p = await probe(build);
    for (const [nv, dim] of [[39, 128], [16, 384], [7, 256]] as const) {
      const r = rng(nv * dim), w = new Float16Array(nv * dim);
      for (let i = 0; i < w.length; i++) {
        w[i] = r() < 0.03 ? 0 : 0.05 * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(9 * r());
      }
      const src = p.alloc(2 * nv * dim), dst = p.alloc(nv * dim + 4 * (nv * dim) / 32);
      new Uint16Array(p.memory.buffer, src, nv * dim).set(new Uint16Array(w.buffer));
      p.host.quantizeQ7(src, dst, dst + nv * dim, 0, nv, dim, nv);
      const y = p.alloc(4 * dim), scratch = p.alloc(2 * dim), out = p.alloc(4 * nv);
      const ys = new Float32Array(p.memory.buffer, y, dim);
      for (let i = 0; i < dim; i++) ys[i] = (r() - 0.5) * 6;
      const want = reference(w, nv, dim, ys);
      for (const { name, id } of variantsOf(build)) {
        for (const [v0, v1] of [[0, nv], [1, nv - 2], [4, Math.min(9, nv)], [3, 6]]) {
          const logits = new Float32Array(p.memory.buffer, out, nv);
          logits.fill(NaN);
          p.host.headQ7(id, dst, dim, v0, v1, y, scratch, out, nv);
          assertRows(logits, want, v0, v1, `${name} nv ${nv} dim ${dim}`);
        }
      }
    }
  });
}
