/**
 * Small seeded PRNGs (mulberry32, splitmix32) for scripts and tests: benchmark prompts, property tests, data
 * shuffles. Not for sampling (the engine's sampler owns its xoshiro128** stream).
 *
 * @example
 * ```ts
 * import { mulberry32 } from "./_prng.ts";
 * const rand = mulberry32(42);
 * rand(); // a float in [0, 1), the same on every run
 * ```
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * splitmix32: a seeded stream of uint32 values (one independent stream per seed; the synthetic
 * models' tensors and the kernel tests' inputs are made with it).
 *
 * @example
 * ```ts
 * import { splitmix32 } from "./_prng.ts";
 * const next = splitmix32(7);
 * next(); // an integer in [0, 2^32), the same on every run
 * ```
 */
export function splitmix32(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x9e3779b9) | 0;
    let t = state ^ (state >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
}
