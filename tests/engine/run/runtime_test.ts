/**
 * The WASM forward pass against the TypeScript oracle (tests/_oracle.ts), and its determinism:
 * logits are bit-identical across kernel variants, thread counts 1/2/3/8, ternary file layouts and
 * memory layouts (rows in fours for the 128-bit kernels, in sixteens for the fused ones), batch
 * composition (one prefill step vs token by token, several slots in one step).
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { loadModel } from "../../../engine/model/loader.ts";
import { ForwardAbortedError, type ModelRuntime } from "../../../engine/run/runtime.ts";
import type { KernelVariant, TernaryLayout } from "../../../wasm/loader.ts";
import { Oracle } from "../../_oracle.ts";
import { tinyModel } from "../../_models.ts";
import { canRevectorize, runDeno } from "../../_revec_child.ts";

const TOKENS = [1, 17, 33, 99, 5, 200, 7, 8, 300, 42, 11, 256, 3, 77, 150, 499];

async function prefill(rt: ModelRuntime, tokens: number[], slot = 0): Promise<Float32Array> {
  const logits = await rt.forward({
    tokens,
    pos: tokens.map((_, i) => i),
    slot: tokens.map(() => slot),
    outIdx: tokens.map((_, i) => i),
  });
  return logits.slice();
}

async function withModel<T>(
  path: string,
  opts: Parameters<typeof loadModel>[1],
  fn: (rt: ModelRuntime) => Promise<T>,
) {
  const { runtime } = await loadModel(path, { nCtx: 64, maxBatch: 32, maxOut: 32, ...opts });
  try {
    return await fn(runtime);
  } finally {
    await runtime.close();
  }
}

/**
 * Tolerance against the float64 oracle: the engine computes in f32, so a value that lands within
 * an ulp of an int8 rounding boundary can quantize one step apart and shift that position's
 * logits. So: every position's logits within 1e-5 of the oracle on at least 90% of positions, every
 * position within 0.25, and the argmax equal on at least 90%.
 */
function compareToOracle(logits: Float32Array, ref: Float64Array[], nVocab: number) {
  let tight = 0, agree = 0;
  ref.forEach((r, i) => {
    let err = 0, a = 0, b = 0;
    for (let v = 0; v < nVocab; v++) {
      const x = logits[i * nVocab + v];
      err = Math.max(err, Math.abs(x - r[v]));
      if (x > logits[i * nVocab + a]) a = v;
      if (r[v] > r[b]) b = v;
    }
    assert(err <= 0.25, `position ${i}: max |logit error| ${err}`);
    if (err <= 1e-5) tight++;
    if (a === b) agree++;
  });
  assert(tight >= 0.9 * ref.length, `${tight}/${ref.length} positions within 1e-5 of the oracle`);
  assert(agree >= 0.9 * ref.length, `argmax agrees on ${agree}/${ref.length} positions`);
}

for (const embd of ["f16", "q8_0"] as const) {
  Deno.test(`forward() matches the oracle on a tiny I2_S model with a ${embd} embedding`, async () => {
    const path = await tinyModel({ embd });
    const oracle = Oracle.load(path);
    const ref = TOKENS.map((t) => oracle.step(t));
    await withModel(path, { kernel: "relaxed", threads: 2 }, async (rt) => {
      compareToOracle(await prefill(rt, TOKENS), ref, rt.config.nVocab);
    });
  });
}

for (const head of ["q8_0", "q7"] as const) {
  Deno.test(`forward() matches the oracle with the F16 head quantized to ${head} at load`, async () => {
    const path = await tinyModel({ nVocab: 517 }); // not a multiple of the 4-row tile
    const oracle = Oracle.load(path, head);
    const ref = TOKENS.map((t) => oracle.step(t));
    let first: Float32Array | undefined;
    for (const kernel of ["ref", "simd128", "relaxed"] as KernelVariant[]) {
      for (const threads of [1, 3]) {
        const logits = await withModel(path, { kernel, threads, head }, (rt) => prefill(rt, TOKENS));
        if (!first) {
          first = logits;
          compareToOracle(logits, ref, oracle.config.nVocab);
        } else assertEquals(logits, first, `${head} ${kernel} x${threads}`);
      }
    }
  });
}

const LAYOUTS: TernaryLayout[] = ["r4", "r16"];

Deno.test("forward() logits are bit-identical across kernels, thread counts, file and memory layouts", async () => {
  let first: Float32Array | undefined;
  for (const type of ["i2_s", "tq2_0", "tq1_0"] as const) {
    const path = await tinyModel({ type });
    for (const layout of LAYOUTS) {
      for (const kernel of ["ref", "simd128", "relaxed"] as KernelVariant[]) {
        for (const threads of [1, 2, 3, 8]) {
          if (type !== "i2_s" && (kernel !== "relaxed" || threads !== 2)) continue;
          const logits = await withModel(path, { kernel, threads, layout }, (rt) => prefill(rt, TOKENS));
          if (!first) first = logits;
          else assertEquals(logits, first, `${type} ${layout} ${kernel} x${threads}`);
        }
      }
    }
  }
});

for (const layout of LAYOUTS) {
  Deno.test(`forward() gives the same logits for one prefill step and token-by-token decoding (${layout})`, async () => {
    const path = await tinyModel();
    await withModel(path, { kernel: "relaxed", threads: 3, layout }, async (rt) => {
      const all = await prefill(rt, TOKENS);
      const V = rt.config.nVocab;
      for (let i = 0; i < TOKENS.length; i++) {
        const one = await rt.forward({ tokens: [TOKENS[i]], pos: [i], slot: [0], outIdx: [0] });
        assertEquals(one.slice(), all.slice(i * V, (i + 1) * V), `position ${i}`);
      }
    });
  });
}

for (const [kernel, layout] of [["simd128", "r4"], ["relaxed", "r16"]] as const) {
  Deno.test(`forward() keeps slots apart: two sequences in one step equal each run alone (${kernel}, ${layout})`, async () => {
    const path = await tinyModel();
    const a = TOKENS.slice(0, 6), b = TOKENS.slice(6, 12);
    await withModel(path, { kernel, threads: 2, nSlots: 3, layout }, async (rt) => {
      const V = rt.config.nVocab;
      const alone = await prefill(rt, b, 2);
      // a in slot 0, b in slot 2, interleaved in one batch
      const tokens: number[] = [], pos: number[] = [], slot: number[] = [];
      for (let i = 0; i < 6; i++) tokens.push(a[i], b[i]), pos.push(i, i), slot.push(0, 2);
      const mixed = await rt.forward({ tokens, pos, slot, outIdx: tokens.map((_, i) => i) });
      for (let i = 0; i < 6; i++) {
        assertEquals(
          mixed.slice((2 * i + 1) * V, (2 * i + 2) * V),
          alone.slice(i * V, (i + 1) * V),
          `b[${i}]`,
        );
      }
    });
  });
}

Deno.test("forward() rejects tokens, positions and slots outside the plan", async () => {
  const path = await tinyModel();
  await withModel(path, { threads: 1 }, async (rt) => {
    await rejects(rt.forward({ tokens: [100000], pos: [0], slot: [0], outIdx: [0] }), RangeError);
    await rejects(rt.forward({ tokens: [1], pos: [64], slot: [0], outIdx: [0] }), RangeError);
    await rejects(rt.forward({ tokens: [1], pos: [0], slot: [1], outIdx: [0] }), RangeError);
    await rejects(rt.forward({ tokens: [], pos: [], slot: [], outIdx: [] }), RangeError);
    // still usable afterwards
    assertEquals(
      (await rt.forward({ tokens: [1], pos: [0], slot: [0], outIdx: [0] })).length,
      rt.config.nVocab,
    );
  });
});

Deno.test("forward() stops at a layer boundary when its signal aborts, and the next step runs", async () => {
  const path = await tinyModel({ layers: 24 });
  await withModel(path, { threads: 2, kernel: "ref", maxBatch: 64, nCtx: 64 }, async (rt) => {
    const tokens = Array.from({ length: 64 }, (_, i) => i);
    const ac = new AbortController();
    const step = rt.forward({ tokens, pos: tokens, slot: tokens.map(() => 0), outIdx: [63] }, ac.signal);
    setTimeout(() => ac.abort(), 5);
    await rejects(step, ForwardAbortedError);
    const logits = await rt.forward({ tokens: [1], pos: [0], slot: [0], outIdx: [0] });
    assert(logits.every(Number.isFinite));
  });
});

Deno.test("the host isolate stays responsive while a forward step runs on the workers", async () => {
  const path = await tinyModel({ layers: 24 });
  await withModel(path, { threads: 2, kernel: "ref", maxBatch: 64, nCtx: 64 }, async (rt) => {
    const tokens = Array.from({ length: 64 }, (_, i) => i);
    let ticks = 0, running = true;
    const tick = () => {
      ticks++;
      if (running) setTimeout(tick, 1);
    };
    setTimeout(tick, 1);
    const t0 = performance.now();
    await rt.forward({ tokens, pos: tokens, slot: tokens.map(() => 0), outIdx: [63] });
    const ms = performance.now() - t0;
    running = false;
    // a blocked isolate would run no timer at all until the step ends
    assert(ms > 20, `the step should take a while to make this meaningful (took ${ms.toFixed(1)} ms)`);
    assert(ticks >= 3, `${ticks} timer ticks during a ${ms.toFixed(0)} ms step`);
  });
});

Deno.test({
  name:
    "forward() logits are bit-identical with V8's revectorizer on and off, across kernels, threads and heads",
  ignore: !canRevectorize(),
  async fn() {
    const child = new URL("./_logits_digest.ts", import.meta.url);
    const [on, off] = await Promise.all([true, false].map((revec) => runDeno(child, [], { revec })));
    const fused = JSON.parse(on) as Record<string, string>, plain = JSON.parse(off) as Record<string, string>;
    assertEquals(fused, plain, "fused and unfused logits differ");
    // and within a run, every kernel variant and thread count gives the same logits per model and head
    const byModel = new Map<string, Set<string>>();
    for (const [key, digest] of Object.entries(fused)) {
      const [model, head] = key.split(" ");
      byModel.set(`${model} ${head}`, (byModel.get(`${model} ${head}`) ?? new Set()).add(digest));
    }
    for (const [config, digests] of byModel) {
      assertEquals(digests.size, 1, `${config}: ${[...digests].join(", ")}`);
    }
  },
});
