/**
 * A small seeded PRNG (mulberry32) for scripts and tests: benchmark prompts, property tests, data
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
