/**
 * Shared setup of the single-op kernel tests: a host instance of each build over a small shared
 * memory with a bump allocator, a seeded generator, and f32 emulation helpers.
 */
import { compileKernel, KERNEL_IDS, type KernelVariant, WasmHost } from "../../wasm/loader.ts";

/** A host instance over its own memory: `alloc` hands out 64-byte aligned regions after the stack. */
export interface Probe {
  readonly host: WasmHost;
  readonly memory: WebAssembly.Memory;
  alloc(bytes: number): number;
}

/** A probe of `build` with `mib` MiB of memory. */
export async function probe(build: "simd128" | "relaxed", mib = 16): Promise<Probe> {
  const km = await compileKernel(build);
  const pages = mib * 16;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const stackTop = Math.ceil((km.heapBase + 65536) / 64) * 64;
  const host = await WasmHost.create(km, memory, stackTop);
  let at = stackTop + 64;
  return {
    host,
    memory,
    alloc(bytes: number): number {
      const o = at;
      at = Math.ceil((at + bytes) / 64) * 64;
      if (at > memory.buffer.byteLength) throw new RangeError("probe memory exhausted");
      return o;
    },
  };
}

/** The variants a build runs: its own and the scalar twins (`ref`). */
export function variantsOf(build: "simd128" | "relaxed"): { name: KernelVariant; id: number }[] {
  return [{ name: "ref", id: KERNEL_IDS.ref }, { name: build, id: KERNEL_IDS[build] }];
}

/** A seeded generator in [0, 1). */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x9e3779b9) | 0;
    let t = seed ^ (seed >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    return ((t ^ (t >>> 15)) >>> 0) / 2 ** 32;
  };
}

/** The canonical float reduction (kernels/bn_impl.h, bn_fold16) over f32 terms, emulated. */
export function canonicalSum(terms: (i: number) => number, n: number): number {
  const f = Math.fround, s = new Array<number>(16).fill(0);
  for (let i = 0; i < n; i++) s[i & 15] = f(s[i & 15] + terms(i));
  for (let j = 0; j < 8; j++) s[j] = f(s[j] + s[j + 8]);
  for (let j = 0; j < 4; j++) s[j] = f(s[j] + s[j + 4]);
  return f(f(s[0] + s[2]) + f(s[1] + s[3]));
}

/** True when a and b are the same f32 (bit for bit, so -0 differs from 0 and NaN equals NaN). */
export function sameF32(a: number, b: number): boolean {
  const x = new Float32Array([a, b]), u = new Uint32Array(x.buffer);
  return u[0] === u[1];
}
