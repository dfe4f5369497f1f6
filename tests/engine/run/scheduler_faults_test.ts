/**
 * Scheduler fault containment over a fake runtime (each scenario in a Worker, see
 * _scheduler_faults.ts): NaN logits and impossible sampling end one sequence and leave the others
 * and the event loop running; a failed step ends only its sequences; a dead worker makes the
 * engine unavailable; the running step's age is reported for the watchdog.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { inWorker } from "../../_isolate.ts";

const FAULTS = new URL("./_scheduler_faults.ts", import.meta.url);
// deno-lint-ignore no-explicit-any
type Json = any;
const greedyIds = (n: number, from: number) => Array.from({ length: n }, (_, k) => 32 + ((from + k) % 64));

Deno.test("NaN logits end that sequence with ModelOutputError; the batch's other sequence finishes", async () => {
  const r: Json = await inWorker(FAULTS, "nanLogits");
  assertEquals(r.bad.errorName, "ModelOutputError");
  assert(/non-finite logits at position 2: 258 NaN/.test(r.bad.error), r.bad.error);
  assertEquals([r.good.finish, r.good.ids], ["length", greedyIds(20, 2)]);
  assertEquals([r.after.finish, r.after.ids.length], ["length", 20]);
  assertEquals([r.stats.busySlots, r.stats.queued], [0, 0]);
  assert(r.maxLagMs < 250, `event loop blocked for ${r.maxLagMs} ms`);
});

Deno.test("a penalty that makes sampling impossible ends that sequence with SamplingError only", async () => {
  const r: Json = await inWorker(FAULTS, "samplingImpossible");
  assertEquals(r.bad.errorName, "SamplingError");
  assert(/repetitionPenalty 1e-300/.test(r.bad.error), r.bad.error);
  assertEquals([r.good.finish, r.good.ids.length], ["length", 20]);
  assertEquals(r.stats.busySlots, 0);
  assert(r.maxLagMs < 250, `event loop blocked for ${r.maxLagMs} ms`);
});

Deno.test("a step that throws ends only that step's sequences; the engine keeps running", async () => {
  const r: Json = await inWorker(FAULTS, "stepThrows");
  for (const s of [r.a, r.b]) assert(/kernel status 3/.test(s.error), JSON.stringify(s));
  assertEquals([r.after.finish, r.after.ids.length], ["length", 20]);
});

Deno.test("a dead worker makes the engine unavailable for running and later requests", async () => {
  const r: Json = await inWorker(FAULTS, "poolBroken");
  assertEquals(r.a.errorName, "EngineUnavailableError");
  assert(/kernel worker 0 failed/.test(r.a.error));
  assert(r.later.startsWith("EngineUnavailableError"), r.later);
});

Deno.test("stats.stepRunningSeconds is the running step's age, 0 between steps", async () => {
  const r: Json = await inWorker(FAULTS, "stepClock");
  assert(r.during >= 0.1 && r.during < 5, String(r.during));
  assertEquals([r.after, r.outcome.finish], [0, "length"]);
});
