import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { PromptCache } from "../../../engine/run/prompt_cache.ts";

/** KV bytes of positions [from, to) of a token list: each position's byte is its token (mod 256). */
const kvOf = (tokens: number[]) => (from: number, to: number) => Uint8Array.from(tokens.slice(from, to));
const seq = (start: number, n: number) => Array.from({ length: n }, (_, i) => start + i);

Deno.test("PromptCache keeps whole blocks and finds the longest cached prefix", () => {
  const cache = new PromptCache(1024, 1, 4);
  const t = seq(1, 10);
  assertEquals(cache.save(t, 10, kvOf(t)), 2); // [0,4) and [4,8); the partial [8,10) is not kept
  assertEquals(cache.lookup(t, 10), [Uint8Array.of(1, 2, 3, 4), Uint8Array.of(5, 6, 7, 8)]);
  assertEquals(cache.lookup([...t.slice(0, 6), 99, 98, 97], 9).length, 1); // block 2 differs
  assertEquals(cache.lookup(t, 7).length, 1); // the limit cuts block 2
  assertEquals(cache.save(t, 10, kvOf(t)), 0); // nothing new
  const s = cache.stats;
  assertEquals([s.blocks, s.bytes, s.saved, s.hits, s.hitTokens], [2, 8, 2, 3, 16]);
});

Deno.test("PromptCache finds a block only after the exact tokens before it", () => {
  const cache = new PromptCache(1024, 1, 2);
  cache.save([1, 2, 3, 4], 4, kvOf([1, 2, 3, 4]));
  assertEquals(cache.lookup([9, 9, 3, 4], 4).length, 0); // same second block, other parent
  cache.save([9, 9, 3, 4], 4, kvOf([9, 9, 3, 4]));
  assertEquals(cache.lookup([9, 9, 3, 4], 4), [Uint8Array.of(9, 9), Uint8Array.of(3, 4)]);
  assertEquals(cache.stats.blocks, 4);
});

Deno.test("PromptCache shares the blocks of a common prefix between two sequences", () => {
  const cache = new PromptCache(1024, 1, 2);
  const system = [1, 2, 3, 4];
  cache.save([...system, 5, 6], 6, kvOf([...system, 5, 6]));
  assertEquals(cache.save([...system, 7, 8], 6, kvOf([...system, 7, 8])), 1);
  assertEquals(cache.stats.blocks, 4);
});

Deno.test("PromptCache evicts the least recently used chain, leaves first, by bytes", () => {
  const cache = new PromptCache(6 * 4, 4, 1); // room for 6 one-position blocks of 4 bytes
  const kv = (from: number, to: number) => new Uint8Array((to - from) * 4);
  cache.save([1, 2, 3], 3, kv);
  cache.save([7, 8, 9], 3, kv);
  cache.lookup([1, 2, 3], 3); // [1,2,3] is now the most recent
  cache.save([4, 5], 2, kv); // needs 2 blocks: [7,8,9]'s leaves go first
  assertEquals(cache.lookup([7, 8, 9], 3).length, 1);
  assertEquals(cache.lookup([1, 2, 3], 3).length, 3);
  assertEquals(cache.lookup([4, 5], 2).length, 2);
  assertEquals(cache.stats.bytes, 24);
  assert(cache.stats.evicted === 2);
});

Deno.test("PromptCache stays within its capacity and always finds what it just saved (random workload)", () => {
  let x = 12345;
  const rand = (n: number) => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) % n);
  const cache = new PromptCache(10 * 3 * 2, 3, 2); // 10 blocks of 2 positions, 3 bytes each
  const systems = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]];
  for (let op = 0; op < 400; op++) {
    const t = [...systems[rand(3)], ...Array.from({ length: rand(12) }, () => rand(4))];
    if (rand(2)) {
      cache.save(t, t.length, (f, e) => new Uint8Array((e - f) * 3).fill(t[f]));
      const found = cache.lookup(t, t.length);
      assertEquals(found.length, Math.floor(t.length / 2));
      found.forEach((b, i) => assertEquals(b[0], t[2 * i])); // each block holds its own positions
    } else cache.lookup(t, t.length);
    const s = cache.stats;
    assert(s.bytes <= s.capacityBytes && s.bytes === s.blocks * 6, JSON.stringify(s));
  }
  assert(cache.stats.evicted > 0);
});

Deno.test("PromptCache keeps only the first blocks of a prefix longer than its capacity", () => {
  const cache = new PromptCache(2 * 4, 4, 1);
  assertEquals(cache.save([1, 2, 3, 4], 4, (f, t) => new Uint8Array((t - f) * 4)), 2);
  assertEquals(cache.lookup([1, 2, 3, 4], 4).length, 2);
});

Deno.test("PromptCache is disabled below one block, and refuses bad sizes and block data", () => {
  const cache = new PromptCache(15, 1, 16);
  assertEquals(cache.enabled, false);
  assertEquals(cache.save(seq(0, 32), 32, kvOf(seq(0, 32))), 0);
  throws(() => new PromptCache(1024, 1, 0), RangeError);
  throws(() => new PromptCache(-1, 1), RangeError);
  throws(() => new PromptCache(1024, 1, 2).save([1, 2], 2, () => new Uint8Array(3)), /expected 2/);
});
