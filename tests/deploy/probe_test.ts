/**
 * deploy/container/probe.ts, the container's health check and the systemd health timer's probe:
 * exit 0 on a 200 from /health, 1 on a 503 (the watchdog's "wedged") or no answer, and with
 * --tries only when every try failed.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";

const PROBE = new URL("../../deploy/container/probe.ts", import.meta.url).pathname;

async function probe(port: number, ...args: string[]): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--allow-net=127.0.0.1", "--allow-env=BN_PORT", PROBE, ...args],
    env: { BN_PORT: String(port) },
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code;
}

Deno.test("probe.ts passes on 200, fails on 503 or silence, and retries with --tries", async () => {
  const statuses: number[] = [];
  let next = 200;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    statuses.push(next);
    const status = next;
    next = 200;
    return Response.json({ status: status === 200 ? "ok" : "wedged" }, { status });
  });
  try {
    const port = server.addr.port;
    assertEquals(await probe(port), 0);
    next = 503;
    assertEquals(await probe(port), 1);
    next = 503; // fails once, then answers 200
    assertEquals(await probe(port, "--tries", "3", "--interval", "0.1"), 0);
    assertEquals(statuses, [200, 503, 503, 200]);
  } finally {
    await server.shutdown();
  }
  // nothing listening on the port any more
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const free = (l.addr as Deno.NetAddr).port;
  l.close();
  assertEquals(await probe(free, "--tries", "2", "--interval", "0.1"), 1);
});
