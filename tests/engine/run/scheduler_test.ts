/**
 * The scheduler's admission: prefixes copied from a busy slot, the host-memory cache behind the
 * slots, and what may not be reused; every reuse gives the tokens a cold computation gives.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Engine } from "../../../engine/run/engine.ts";
import type { GenerateRequest, GenerationEvent } from "../../../engine/run/sequence.ts";
import { tinyModel } from "../../_models.ts";

async function withEngine<T>(opts: Parameters<typeof Engine.load>[1], fn: (e: Engine) => Promise<T>) {
  const engine = await Engine.load(await tinyModel(), { threads: 2, nCtx: 128, maxBatch: 32, ...opts });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

async function collect(events: AsyncIterable<GenerationEvent>) {
  const ids: number[] = [];
  let cached = -1;
  for await (const ev of events) {
    if (ev.type === "token") ids.push(ev.id);
    if (ev.type === "done") cached = ev.usage.cachedTokens;
  }
  return { ids, cached };
}

const greedy = (prompt: number[], maxTokens = 8, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  prompt,
  maxTokens,
  sampling: { temperature: 0 },
  stopTokens: [],
  ...extra,
});

const SYSTEM = Array.from({ length: 40 }, (_, i) => (i === 0 ? 1 : 7 + ((i * 13) % 400)));
const X = [...SYSTEM, 450, 451, 452], Y = [...SYSTEM, 460, 461];

Deno.test("a prompt sharing a running sequence's prefix copies it from that busy slot, same tokens as cold", async () => {
  const cold = await withEngine(
    { nSlots: 1, cacheMemBytes: 0 },
    async (e) => (await collect(e.generate(greedy(Y)))).ids,
  );
  await withEngine({ nSlots: 2, cacheMemBytes: 0 }, async (e) => {
    const first = e.generate(greedy(X, 60))[Symbol.asyncIterator]();
    assertEquals((await first.next()).value?.type, "token"); // X is in its slot, still generating
    const second = await collect(e.generate(greedy(Y)));
    assertEquals(second.cached, SYSTEM.length);
    assertEquals(second.ids, cold);
    while (!(await first.next()).done) { /* drain */ }
  });
});

Deno.test("the host-memory cache brings a prefix back after both slots were reused, same tokens as cold", async () => {
  const cold = await withEngine(
    { nSlots: 1, cacheMemBytes: 0 },
    async (e) => (await collect(e.generate(greedy(Y)))).ids,
  );
  for (const cacheMemBytes of [0, 1 << 20]) {
    await withEngine({ nSlots: 2, cacheMemBytes }, async (e) => {
      await collect(e.generate(greedy(X)));
      for (let i = 0; i < 3; i++) await collect(e.generate(greedy([1, 300 + i, 301, 302, 303])));
      const again = await collect(e.generate(greedy(Y)));
      if (cacheMemBytes) {
        assertEquals(again.cached, Math.floor(SYSTEM.length / 16) * 16); // whole blocks of 16
        assert(e.stats().promptCache!.hitTokens >= again.cached - 1);
      } else assertEquals(again.cached, 1); // BOS, copied from a slot
      assertEquals(again.ids, cold);
    });
  }
});

Deno.test("nothing is reused for cache_prompt false or prompt logprobs; a repeat reuses all but the last token", async () => {
  await withEngine({ nSlots: 1 }, async (e) => {
    await collect(e.generate(greedy(X)));
    assertEquals((await collect(e.generate(greedy(X)))).cached, X.length - 1);
    assertEquals((await collect(e.generate(greedy(X, 4, { cachePrompt: false })))).cached, 0);
    assertEquals((await collect(e.generate(greedy(X, 4, { promptLogprobs: true })))).cached, 0);
  });
});
