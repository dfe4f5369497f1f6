/**
 * The step profile: ProfileAccumulator turns the kernels' per-thread records into means per step,
 * and a runtime with profiling on times every part of real steps (kernels/prof.c) on 1 and 3 threads.
 */
import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { ProfileAccumulator } from "../../../engine/run/step_profile.ts";
import { loadModel } from "../../../engine/model/loader.ts";
import { PROFILE_PARTS, PROFILE_STRIDE } from "../../../wasm/loader.ts";
import { tinyModel } from "../../_models.ts";

Deno.test("ProfileAccumulator gives per-step means over threads, the busiest thread, wake-up and end", () => {
  const acc = new ProfileAccumulator(2);
  const head = PROFILE_PARTS.indexOf("head");
  for (const scale of [1, 3]) {
    const rec = new Float64Array(2 * PROFILE_STRIDE);
    // thread 0: 100..110 ms, head work 4, wait 1; thread 1: 101..112 ms, head work 6 * scale
    rec.set([100, 110], 0);
    rec[4 + 2 * head] = 4;
    rec[5 + 2 * head] = 1;
    rec.set([101, 112], PROFILE_STRIDE);
    rec[PROFILE_STRIDE + 4 + 2 * head] = 6 * scale;
    acc.add(rec, 99.5, 113);
    assert(rec.every((x) => x === 0), "the record is zeroed for the next step");
  }
  const p = acc.take();
  assertEquals([p.steps, p.threads], [2, 2]);
  assertEquals(p.parts.head, { work: ((4 + 6) / 2 + (4 + 18) / 2) / 2, maxWork: (6 + 18) / 2, wait: 0.5 });
  assertEquals(p.parts.qkv, { work: 0, maxWork: 0, wait: 0 });
  assertEquals([p.wakeMs, p.doneMs, p.stepMs], [0.5, 1, 13.5]);
  assertEquals(acc.take().steps, 0, "take() starts afresh");
});

for (const threads of [1, 3]) {
  Deno.test(`setProfiling() times each part of real steps (${threads} thread(s))`, async () => {
    const { runtime: rt } = await loadModel(await tinyModel(), { threads, nCtx: 32, maxBatch: 8, maxOut: 8 });
    try {
      throws(() => rt.takeProfile(), /profiling is off/);
      const plain = (await rt.forward({ tokens: [1, 2, 3], pos: [0, 1, 2], slot: [0, 0, 0], outIdx: [2] }))
        .slice();
      rt.setProfiling(true);
      const timed = (await rt.forward({ tokens: [1, 2, 3], pos: [0, 1, 2], slot: [0, 0, 0], outIdx: [2] }))
        .slice();
      for (let p = 3; p < 6; p++) await rt.forward({ tokens: [p], pos: [p], slot: [0], outIdx: [0] });
      const prof = rt.takeProfile();
      assertEquals(timed, plain, "profiling does not change the logits");
      assertEquals([prof.steps, prof.threads], [4, threads]);
      for (
        const part of ["embed", "norm", "quant", "qkv", "attention", "wo", "gate_up", "down", "head"] as const
      ) {
        assert(prof.parts[part].work > 0, `${part}: ${JSON.stringify(prof.parts[part])}`);
      }
      const inside = PROFILE_PARTS.reduce((s, part) => s + prof.parts[part].work + prof.parts[part].wait, 0);
      assert(inside <= prof.stepMs, `parts ${inside} ms inside a step of ${prof.stepMs} ms`);
      assert(prof.wakeMs >= 0 && prof.doneMs >= 0, JSON.stringify(prof));
      rt.setProfiling(false);
      await rt.forward({ tokens: [6], pos: [6], slot: [0], outIdx: [0] });
      throws(() => rt.takeProfile(), /profiling is off/);
    } finally {
      await rt.close();
    }
  });
}
