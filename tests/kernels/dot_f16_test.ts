/**
 * The F16 head's fast dot: with the activation pre-multiplied by 2^112 (exact), the weights need no
 * re-bias multiply, and every product and sum is the plain F32 x F16 dot's, bit for bit, for every
 * finite f16 (zeros, subnormals, the largest values) and both signs, on every variant.
 */
import { equal } from "node:assert/strict";
import { compileKernel, KERNEL_IDS, type KernelVariant, WasmHost } from "../../wasm/loader.ts";

function rng(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

Deno.test("dot_f32_f16s on x * 2^112 equals dot_f32_f16 on x bit for bit, on every variant", async () => {
  const n = 4096, A = 1 << 20, AS = 2 << 20, B = 3 << 20;
  for (const build of ["simd128", "relaxed"] as const) {
    const km = await compileKernel(build);
    const memory = new WebAssembly.Memory({ initial: 64, maximum: 64, shared: true });
    const host = await WasmHost.create(km, memory, km.heapBase + 65536);
    const a = new Float32Array(memory.buffer, A, n), as = new Float32Array(memory.buffer, AS, n);
    const b = new Uint16Array(memory.buffer, B, n);
    for (let trial = 0; trial < 24; trial++) {
      const r = rng(trial + 1);
      for (let i = 0; i < n; i++) {
        // every exponent (0: zero/subnormal, 30: near 65504), both signs; 31 (inf/nan) is refused at load
        const e = Math.floor(r() * 31), m = Math.floor(r() * 1024), s = r() < 0.5 ? 0x8000 : 0;
        b[i] = s | (e << 10) | m;
        const mag = [1e-30, 1e-3, 1, 300, 60000][trial % 5];
        a[i] = Math.fround((r() - 0.5) * 2 * mag);
        as[i] = Math.fround(a[i] * 2 ** 112);
      }
      const want = host.dotF32F16(KERNEL_IDS.ref, A, B, n, false);
      for (const v of ["ref", build] as KernelVariant[]) {
        const plain = host.dotF32F16(KERNEL_IDS[v], A, B, n, false);
        const fast = host.dotF32F16(KERNEL_IDS[v], AS, B, n, true);
        equal(Object.is(plain, want), true, `${build}/${v} trial ${trial}: plain ${plain} vs ref ${want}`);
        equal(Object.is(fast, want), true, `${build}/${v} trial ${trial}: pre-scaled ${fast} vs ${want}`);
      }
    }
  }
});
