/**
 * scripts/soak.ts, run as `deno task soak` runs it, briefly on the tiny model: it spawns the server,
 * keeps clients busy with a mix of requests that it partly drops, and reports requests by outcome,
 * no 5xx and no hang, the server's RSS, /health answering throughout, and a clean drain.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { tinyModel } from "../_models.ts";

Deno.test("deno task soak reports requests, 5xx, hangs, RSS and the drain", async () => {
  const task: string =
    JSON.parse(Deno.readTextFileSync(new URL("../../deno.json", import.meta.url))).tasks.soak;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      ...task.split(/\s+/).slice(1),
      "--model",
      await tinyModel(),
      "--clients",
      "6",
      "--slots",
      "2",
      "--threads",
      "1",
      "--minutes",
      "0.1",
      "--disconnect",
      "0.4",
    ],
    cwd: new URL("../../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  assert(r.requests >= 10, JSON.stringify(r));
  assert(r.outcomes.ok > 0 && r.outcomes.aborted > 0, JSON.stringify(r.outcomes));
  assertEquals([r.serverErrors, r.hangs, r.outcomes.network_error], [0, 0, 0]);
  assert(r.rssMiB.end > 10 && r.rssMiB.max >= r.rssMiB.end, JSON.stringify(r.rssMiB));
  assert(r.health.checks >= 3 && r.health.failures === 0, JSON.stringify(r.health));
  assertEquals([r.gauges.bn_slots_busy, r.gauges.bn_queue_depth], [0, 0], "idle after the clients stopped");
  assert(
    r.gauges.bn_http_connections_open >= 0 && r.gauges.bn_prompt_cache_bytes >= 0,
    JSON.stringify(r.gauges),
  );
  assertEquals([r.server.exitCode, r.server.errorLines], [0, 0]);
  assert(/soak: \d+ requests in \d+ s \(6 clients, 2 slots, 40% dropped\)/.test(stderr), stderr);
});

Deno.test("soak refuses a server that is not on localhost", async () => {
  const { soak } = await import("../../scripts/soak.ts");
  const o = {
    clients: 1,
    minutes: 0.01,
    disconnect: 0,
    hangAfter: 1,
    seed: 1,
    slots: 1,
    url: "http://10.0.0.1:8080",
  };
  await soak(o).then(() => assert(false, "accepted"), (e: Error) => assert(/127\.0\.0\.1/.test(e.message)));
});
