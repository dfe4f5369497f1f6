/**
 * Saving, restoring and copying KV positions: logits after a restore or a copy are bit-identical
 * to recomputing the prefix.
 */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { loadModel } from "../../../engine/model/loader.ts";
import type { ModelRuntime } from "../../../engine/run/runtime.ts";
import { PromptCache } from "../../../engine/run/prompt_cache.ts";
import { tinyModel } from "../../_models.ts";

const P = [1, 17, 33, 99, 5, 200, 7, 8, 300, 42, 11, 256, 3, 77, 150, 499, 23, 64];
const Q = [1, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416];

/** Runs `tokens` at positions `from..` of `slot`; returns the logits of every row (copied). */
async function run(rt: ModelRuntime, tokens: number[], slot: number, from = 0): Promise<Float32Array> {
  const logits = await rt.forward({
    tokens,
    pos: tokens.map((_, i) => from + i),
    slot: tokens.map(() => slot),
    outIdx: tokens.map((_, i) => i),
  });
  return logits.slice();
}

async function withRuntime(fn: (rt: ModelRuntime) => Promise<void> | void) {
  const { runtime } = await loadModel(await tinyModel(), {
    nCtx: 64,
    nSlots: 3,
    maxBatch: 32,
    maxOut: 32,
    threads: 2,
  });
  try {
    await fn(runtime);
  } finally {
    await runtime.close();
  }
}

Deno.test("KV read then write back gives bit-identical logits to recomputing the prefix", async () => {
  await withRuntime(async (rt) => {
    const V = rt.config.nVocab, k = 11;
    const cold = await run(rt, P, 0);
    const saved = rt.kv.read(0, 0, k);
    assertEquals(saved.length, k * rt.kv.bytesPerToken);
    await run(rt, Q, 0); // overwrite positions 0..17 of slot 0
    rt.kv.write(0, 0, saved, k);
    const warm = await run(rt, P.slice(k), 0, k);
    assertEquals(warm, cold.subarray(k * V));
  });
});

Deno.test("KV copy between slots, and a partial write of saved positions, match recomputation", async () => {
  await withRuntime(async (rt) => {
    const V = rt.config.nVocab;
    const cold = await run(rt, P, 0);
    await run(rt, Q, 1);
    rt.kv.copy(0, 1, 0, 9);
    assertEquals(await run(rt, P.slice(9), 1, 9), cold.subarray(9 * V));
    // positions [4, 8) saved from slot 0 land in slot 2, whose [0, 6) already hold P's prefix
    await run(rt, Q, 2);
    rt.kv.copy(0, 2, 0, 6);
    rt.kv.write(2, 4, rt.kv.read(0, 4, 8), 4, 2);
    assertEquals(await run(rt, P.slice(8), 2, 8), cold.subarray(8 * V));
  });
});

Deno.test("a prompt restored through the PromptCache after its slot was reused gives identical logits", async () => {
  await withRuntime(async (rt) => {
    const V = rt.config.nVocab;
    const cache = new PromptCache(1 << 20, rt.kv.bytesPerToken, 4);
    const cold = await run(rt, P, 0);
    cache.save(P, P.length, (from, to) => rt.kv.read(0, from, to));
    await run(rt, Q, 0);
    const blocks = cache.lookup(P, P.length - 1);
    assertEquals(blocks.length, 4); // 16 of the 17 reusable positions
    blocks.forEach((data, i) => rt.kv.write(0, i * 4, data, 4));
    assertEquals(await run(rt, P.slice(16), 0, 16), cold.subarray(16 * V));
  });
});

Deno.test("KV access refuses slots and positions outside the plan and data of the wrong size", async () => {
  await withRuntime((rt) => {
    throws(() => rt.kv.read(3, 0, 1), /slot 3/);
    throws(() => rt.kv.read(0, 10, 65), /positions/);
    throws(() => rt.kv.write(0, 0, new Uint8Array(3), 1), /does not hold 1 positions/);
    throws(() => rt.kv.copy(0, 1, 5, 4), /positions/);
  });
});
