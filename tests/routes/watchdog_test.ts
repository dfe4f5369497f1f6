/**
 * routes/watchdog.ts: a forward step running past the limit turns /health to 503 with the reason
 * (and the bn_healthy gauge to 0), recovers when the step returns, and gives up (onExpire: the
 * server exits 70) at twice the limit; it polls on its own timer.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { Engine } from "../../engine/run/engine.ts";
import { createApp } from "../../routes/app.ts";
import { Metrics } from "../../routes/metrics.ts";
import { ServerState } from "../../routes/state.ts";
import { Watchdog } from "../../routes/watchdog.ts";

function setup(limitSeconds: number) {
  let running = 0;
  const engine = { stats: () => ({ stepRunningSeconds: running, slots: 1, busySlots: 1, queued: 0 }) };
  const state = new ServerState(engine as unknown as Engine);
  const metrics = new Metrics();
  const app = createApp(state, { metrics });
  const events: string[] = [];
  const dog = new Watchdog(state, {
    limitSeconds,
    onTrip: (r) => events.push(`trip: ${r}`),
    onRecover: () => events.push("recover"),
    onExpire: (r) => events.push(`expire: ${r}`),
  });
  const health = async () => {
    const res = await app.request("/health");
    return [res.status, await res.json()];
  };
  return { state, metrics, dog, events, health, set: (s: number) => (running = s) };
}

Deno.test("a step past the limit turns /health to 503 with the reason; it recovers when the step returns", async () => {
  const w = setup(10);
  w.set(3);
  w.dog.check();
  assertEquals(await w.health(), [200, { status: "ok" }]);
  w.set(12.7);
  w.dog.check();
  w.dog.check();
  const reason = "a forward step has been running for 12 s (the limit is 10 s)";
  assertEquals(await w.health(), [503, { status: "wedged", reason }]);
  assert(w.metrics.render(w.state).includes("\nbn_healthy 0\n"));
  assert(w.metrics.render(w.state).includes("\nbn_engine_step_running_seconds 12.7\n"));
  w.set(0);
  w.dog.check();
  assertEquals(await w.health(), [200, { status: "ok" }]);
  assertEquals(w.events, [`trip: ${reason}`, "recover"]);
});

Deno.test("a step past twice the limit calls onExpire once", () => {
  const w = setup(10);
  w.set(20.5);
  w.dog.check();
  w.dog.check();
  assertEquals(w.events.map((e) => e.split(":")[0]), ["trip", "expire"]);
});

Deno.test("start() polls on a timer; a limit of 0 turns it off", async () => {
  const w = setup(0.2);
  w.set(0.5);
  w.dog.start();
  try {
    await new Promise((r) => setTimeout(r, 200));
    assertEquals((await w.health())[0], 503);
  } finally {
    w.dog.stop();
  }
  const off = setup(0);
  off.set(1e6);
  off.dog.start();
  await new Promise((r) => setTimeout(r, 50));
  assertEquals((await off.health())[0], 200);
  off.dog.stop();
});
