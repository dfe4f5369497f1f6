/**
 * The Engine facade and its scheduler: deterministic generation whatever the concurrency, prefix
 * reuse, cancellation freeing slots, bounded queue, drain, context checks, stop tokens, logprobs.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects, throws } from "node:assert/strict";
import { Engine } from "../../../engine/run/engine.ts";
import { ContextOverflowError, DrainingError, QueueFullError } from "../../../engine/run/errors.ts";
import type { GenerateRequest, GenerationEvent } from "../../../engine/run/sequence.ts";
import { tinyModel } from "../../_models.ts";
import { rewriteGguf } from "../../_gguf_edit.ts";

async function collect(events: AsyncIterable<GenerationEvent>) {
  const ids: number[] = [];
  let text = "", done: Extract<GenerationEvent, { type: "done" }> | undefined;
  let prompt: Extract<GenerationEvent, { type: "prompt" }> | undefined;
  const logprobs = [];
  for await (const ev of events) {
    if (ev.type === "token") {
      ids.push(ev.id);
      text += ev.text;
      if (ev.logprob) logprobs.push(ev.logprob);
    } else if (ev.type === "done") {
      text += ev.text;
      done = ev;
    } else prompt = ev;
  }
  return { ids, text, done: done!, prompt, logprobs };
}

async function withEngine<T>(
  opts: Parameters<typeof Engine.load>[1],
  fn: (e: Engine) => Promise<T>,
): Promise<T> {
  const engine = await Engine.load(await tinyModel(), { threads: 2, nCtx: 128, maxBatch: 32, ...opts });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

const greedy = (prompt: number[], maxTokens = 12): GenerateRequest => ({
  prompt,
  maxTokens,
  sampling: { temperature: 0 },
  stopTokens: [],
});

const PROMPTS = [[1, 10, 20, 30], [1, 40, 50], [1, 60, 70, 80, 90, 100], [1, 10, 20, 31]];

Deno.test("generate() gives the same greedy tokens alone and with concurrent requests in one batch", async () => {
  const alone = await withEngine({ nSlots: 1 }, async (e) => {
    const out = [];
    for (const p of PROMPTS) out.push((await collect(e.generate(greedy(p)))).ids);
    return out;
  });
  const together = await withEngine(
    { nSlots: 4, prefillChunk: 2 },
    (e) => Promise.all(PROMPTS.map(async (p) => (await collect(e.generate(greedy(p)))).ids)),
  );
  assertEquals(together, alone);
  assert(alone.every((ids) => ids.length === 12));
});

Deno.test("generate() reuses a slot's cached prefix and still produces the same tokens", async () => {
  await withEngine({ nSlots: 1 }, async (e) => {
    const first = await collect(e.generate(greedy([1, 10, 20, 30, 40, 50])));
    const second = await collect(e.generate(greedy([1, 10, 20, 30, 40, 50, 60])));
    assertEquals(second.done.usage.cachedTokens, 6);
    const fresh = await withEngine(
      { nSlots: 1 },
      async (f) => (await collect(f.generate(greedy([1, 10, 20, 30, 40, 50, 60])))).ids,
    );
    assertEquals(second.ids, fresh);
    assertEquals(first.done.usage.cachedTokens, 0);
  });
});

Deno.test("generate() stops on max tokens (length) and on a stop token (stop, not emitted)", async () => {
  await withEngine({}, async (e) => {
    const r = await collect(e.generate(greedy([1, 2, 3], 5)));
    assertEquals([r.done.finishReason, r.ids.length, r.done.usage.completionTokens], ["length", 5, 5]);
    // make the third greedy token a stop token
    const stop = r.ids[2];
    const s = await collect(e.generate({ ...greedy([1, 2, 3], 5), stopTokens: [stop] }));
    assertEquals([s.done.finishReason, s.ids], ["stop", r.ids.slice(0, 2)]);
  });
});

Deno.test("a cancelled generation frees its slot before the next step and leaves the engine idle", async () => {
  await withEngine({ nSlots: 1 }, async (e) => {
    const ac = new AbortController();
    const events = e.generate(greedy([1, 2, 3], 100), ac.signal);
    let n = 0;
    await rejects(async () => {
      for await (const ev of events) {
        if (ev.type === "token" && ++n === 3) ac.abort(new Error("client went away"));
      }
    }, /client went away/);
    // the slot is free: a new request runs to completion at once
    const next = await collect(e.generate(greedy([1, 4], 4)));
    assertEquals(next.done.finishReason, "length");
    const st = e.stats();
    assertEquals([st.busySlots, st.queued], [0, 0]);
  });
});

Deno.test("a request cancelled while queued never runs", async () => {
  await withEngine({ nSlots: 1, maxQueue: 4 }, async (e) => {
    const running = collect(e.generate(greedy([1, 2], 30)));
    const ac = new AbortController();
    const queued = e.generate(greedy([1, 3], 30), ac.signal);
    assertEquals(e.stats().queued, 1);
    ac.abort(new Error("gone"));
    await rejects(collect(queued), /gone/);
    await running;
    assertEquals(e.stats().busySlots, 0);
  });
});

Deno.test("a full queue refuses with QueueFullError and a Retry-After estimate", async () => {
  await withEngine({ nSlots: 1, maxQueue: 1 }, async (e) => {
    const a = collect(e.generate(greedy([1, 2], 20)));
    const b = collect(e.generate(greedy([1, 3], 20)));
    throws(
      () => e.generate(greedy([1, 4], 20)),
      (x) => x instanceof QueueFullError && x.retryAfterSeconds >= 1,
    );
    await Promise.all([a, b]);
  });
});

Deno.test("a burst within one step admits free slots + maxQueue requests, and refuses the next", async () => {
  await withEngine({ nSlots: 2, maxQueue: 1 }, async (e) => {
    const ok = [1, 2, 3].map((t) => collect(e.generate(greedy([1, t], 4))));
    throws(() => e.generate(greedy([1, 9], 4)), QueueFullError);
    assertEquals((await Promise.all(ok)).map((r) => r.done.finishReason), ["length", "length", "length"]);
  });
});

Deno.test("drain() refuses new work, lets running requests finish, then resolves", async () => {
  await withEngine({ nSlots: 1, maxQueue: 2 }, async (e) => {
    const a = collect(e.generate(greedy([1, 2], 10)));
    const drained = e.drain();
    throws(() => e.generate(greedy([1, 3], 2)), DrainingError);
    assertEquals((await a).done.finishReason, "length");
    await drained;
  });
});

Deno.test("generate() checks the context: prompt + max tokens must fit, ids must be in the vocabulary", async () => {
  await withEngine({ nCtx: 32 }, (e) => {
    throws(
      () => e.generate(greedy(Array(30).fill(1), 5)),
      (x) =>
        x instanceof ContextOverflowError && x.promptTokens === 30 && x.requestedTokens === 5 &&
        x.contextTokens === 32,
    );
    throws(() => e.generate(greedy([1, 99999])), RangeError);
    throws(() => e.generate(greedy([])), RangeError);
    return Promise.resolve();
  });
});

Deno.test("generate() reports prompt logprobs (first null) and generated-token logprobs with alternatives", async () => {
  await withEngine({}, async (e) => {
    const r = await collect(e.generate({ ...greedy([1, 7, 8, 9], 3), promptLogprobs: true, logprobs: 3 }));
    assertEquals(r.prompt!.logprobs.length, 4);
    assertEquals(r.prompt!.logprobs[0], null);
    assert(r.prompt!.logprobs.slice(1).every((l) => l !== null && l.logprob <= 0 && l.top.length === 3));
    assertEquals(r.logprobs.length, 3);
    for (const lp of r.logprobs) {
      assert(lp.top[0].logprob >= lp.top[1].logprob && lp.top[1].logprob >= lp.top[2].logprob);
      assertEquals(lp.logprob, lp.top[0].logprob); // greedy picks the most likely token
    }
    // max_tokens 0 with prompt logprobs: scoring only
    const s = await collect(e.generate({ ...greedy([1, 7, 8, 9], 0), promptLogprobs: true }));
    assertEquals([s.ids.length, s.done.finishReason], [0, "length"]);
    assertEquals(s.prompt!.logprobs.map((l) => l?.logprob), r.prompt!.logprobs.map((l) => l?.logprob));
  });
});

Deno.test("greedy tokens are identical across kernels ref/simd128/relaxed and 1, 2, 3 and 8 threads", async () => {
  const path = await tinyModel({ type: "tq1_0", arch: "bitnet" });
  let first: number[] | undefined;
  for (const kernel of ["ref", "simd128", "relaxed"] as const) {
    for (const threads of [1, 2, 3, 8]) {
      const engine = await Engine.load(path, { kernel, threads, nCtx: 64 });
      try {
        const { ids } = await collect(engine.generate(greedy([1, 10, 20, 30], 24)));
        if (!first) first = ids;
        else assertEquals(ids, first, `${kernel} x${threads}`);
      } finally {
        await engine.close();
      }
    }
  }
});

Deno.test("load() refuses a model whose tokenizer cannot be built, naming the file and the problem", async () => {
  const path = rewriteGguf(await tinyModel(), Deno.makeTempFileSync({ suffix: ".gguf" }), (t) => t, [
    ["tokenizer.ggml.token_type", { type: "array", elem: "i32", value: [1, 1, 1] }],
  ]);
  try {
    await rejects(Engine.load(path, { threads: 2 }), (e: Error) => {
      assert(e.message.startsWith(`Cannot load model "${path}"`), e.message);
      assert(e.message.includes("3 token types"), e.message);
      return true;
    });
  } finally {
    Deno.removeSync(path);
  }
});
