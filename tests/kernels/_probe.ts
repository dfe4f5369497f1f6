/**
 * Shared setup of the single-op kernel tests: a host instance of each build over a small shared
 * memory with a bump allocator, a seeded generator, f32 emulation helpers and a check of logits rows.
 */
import { equal } from "node:assert/strict";
import { splitmix32 } from "../../scripts/_prng.ts";
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

/** A seeded generator in [0, 1) ({@linkcode splitmix32} over 2^32). */
export function rng(seed: number): () => number {
  const next = splitmix32(seed);
  return () => next() / 2 ** 32;
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

/**
 * Checks logits of rows [v0, v1) against `want` bit for bit, and that every row outside the range
 * kept the NaN the caller filled `logits` with (a kernel must not write past its rows).
 */
export function assertRows(
  logits: Float32Array,
  want: ArrayLike<number>,
  v0: number,
  v1: number,
  label: string,
): void {
  for (let v = 0; v < logits.length; v++) {
    const inside = v >= v0 && v < v1;
    equal(
      inside ? sameF32(logits[v], want[v]) : Number.isNaN(logits[v]),
      true,
      `${label} rows [${v0}, ${v1}) row ${v}: ${logits[v]} vs ${want[v]}`,
    );
  }
}
