/** typical-p: the kept set against a sort-based reference, and the sampler drawing only from it. */
import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { typicalFilter, TypicalScratch } from "../../../engine/run/_typical.ts";
import { Sampler } from "../../../engine/run/sampler.ts";

function rng(seed: number) {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function randomLogits(n: number, seed: number, spread = 6): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() - 0.5) * spread);
}

/** The typical set by the definition: sort by |surprisal - entropy|, take until the mass reaches p. */
function reference(logits: Float32Array, t: number, p: number): Set<number> {
  const m = Math.max(...logits);
  const e = Array.from(logits, (x) => Math.exp((x - m) / t));
  const z = e.reduce((a, b) => a + b, 0);
  const q = e.map((x) => x / z);
  const h = -q.reduce((a, x) => a + (x > 0 ? x * Math.log(x) : 0), 0);
  const order = q.map((_, i) => i).filter((i) => q[i] > 0)
    .sort((a, b) => Math.abs(-Math.log(q[a]) - h) - Math.abs(-Math.log(q[b]) - h) || a - b);
  const kept = new Set<number>();
  let cum = 0;
  for (const i of order) {
    kept.add(i);
    cum += q[i];
    if (cum >= p) break;
  }
  return kept;
}

Deno.test("typicalFilter() keeps the tokens closest to the entropy until the mass reaches p", () => {
  for (
    const [n, seed, t, p] of [[50, 1, 1, 0.5], [1000, 2, 0.7, 0.9], [4096, 3, 1.3, 0.2], [7, 4, 1, 0.99]]
  ) {
    const logits = randomLogits(n, seed);
    const m = Math.max(...logits);
    const e = Float64Array.from(logits, (x) => Math.exp((x - m) / t));
    const z = e.reduce((a, b) => a + b, 0);
    const out = typicalFilter(e, n, z, p, new TypicalScratch());
    const kept = new Set([...e.keys()].filter((i) => e[i] > 0));
    assertEquals(kept, reference(logits, t, p), `n ${n} t ${t} p ${p}`);
    let sum = 0, max = 0;
    for (const i of kept) (sum += e[i], max = Math.max(max, e[i]));
    assert(Math.abs(out.z - sum) < 1e-9 && out.max === max);
  }
});

Deno.test("typicalFilter() can drop the most likely token when it is far less surprising than typical", () => {
  // one dominant token and a flat tail: the tail is 'typical', the dominant token is not
  const logits = Float32Array.from({ length: 200 }, (_, i) => (i === 0 ? 5 : 0));
  const kept = reference(logits, 1, 0.3);
  assert(!kept.has(0));
  const e = Float64Array.from(logits, (x) => Math.exp(x - 5));
  typicalFilter(e, 200, e.reduce((a, b) => a + b, 0), 0.3, new TypicalScratch());
  assertEquals(e[0], 0);
});

Deno.test("Sampler with typicalP draws only typical tokens, with min-p measured from the kept max", () => {
  const logits = randomLogits(300, 9);
  const kept = reference(logits, 1, 0.6);
  const s = new Sampler({ temperature: 1, typicalP: 0.6, seed: 5 });
  const seen = new Set<number>();
  for (let i = 0; i < 3000; i++) seen.add(s.sample(logits));
  assert([...seen].every((id) => kept.has(id)), "drew a token outside the typical set");
  assert(seen.size > kept.size / 2, `only ${seen.size} of ${kept.size} typical tokens drawn`);
  // a dominant token dropped by typical-p: min-p 0.5 (measured from the dominant token, it would
  // exclude the whole tail) still leaves the tail to draw from, with and without top-k
  const peaked = Float32Array.from({ length: 200 }, (_, i) => (i === 0 ? 5 : 0));
  assert(!reference(peaked.subarray(0, 199), 1, 0.3).has(0));
  for (const topK of [0, 199]) {
    const t = new Sampler({ temperature: 1, typicalP: 0.3, minP: 0.5, topK, seed: 1 });
    for (let i = 0; i < 200; i++) {
      const id = t.sample(peaked);
      assert(id > 0 && id < (topK || 200), `topK ${topK}: drew ${id}`);
    }
  }
  throws(() => new Sampler({ typicalP: 0 }), /typicalP/);
});

Deno.test("sample() never picks a banned token, greedy or not", () => {
  const logits = Float32Array.of(0, 5, 1, 4.9);
  assertEquals(new Sampler({ temperature: 0 }).sample(logits, [], [1]), 3);
  const s = new Sampler({ temperature: 2, seed: 3 });
  for (let i = 0; i < 500; i++) assert(s.sample(logits, [], [1, 3]) !== 1);
});
