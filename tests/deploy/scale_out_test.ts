/**
 * scripts/scale_out.ts at CI scale: nginx from Debian's packages in front of three replicas on
 * 127.0.0.1. Streams spread over every replica; a rolling restart (SIGTERM, exit 0, start, ready)
 * under load loses nothing; a SIGKILL loses only the streams that replica held. Skipped, with a
 * message, where nginx is not installed (CI installs it).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { findNginx, freePort, Nginx, renderNginx } from "../../scripts/deploy/cluster.ts";
import { figuresTable, FULL, scaleOut } from "../../scripts/scale_out.ts";

const nginx = findNginx();
if (!nginx) {
  console.warn(
    "tests/deploy/scale_out_test.ts: nginx is not installed (apt-get install nginx-light): skipped",
  );
}

Deno.test("renderNginx() puts this run's ports into the committed configuration", () => {
  const template = Deno.readTextFileSync(new URL("../../deploy/nginx/bitnet-server.conf", import.meta.url));
  const { site, full } = renderNginx(template, 9000, [9001, 9002, 9003, 9004], "/tmp/x");
  assertEquals(
    [...site.matchAll(/server (127\.0\.0\.1:\d+) max_fails=1 fail_timeout=\d+s;/g)].map((m) => m[1]),
    ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003", "127.0.0.1:9004"],
  );
  assert(site.includes("listen 127.0.0.1:9000;"));
  for (const directive of ["least_conn;", "proxy_buffering off;", "proxy_read_timeout 3600s;", "http_503"]) {
    assert(site.includes(directive), directive);
  }
  assert(full.includes("daemon off;") && full.includes("pid /tmp/x/nginx.pid;"));
  assert(!/listen (?!127\.0\.0\.1)/.test(full), "binds loopback only");
});

Deno.test({
  name: "Nginx passes a request body larger than its in-memory buffer (its workers can write the temp path)",
  ignore: !nginx,
  async fn() {
    const upstream = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      async (req) => new Response(String((await req.arrayBuffer()).byteLength)),
    );
    const dir = await Deno.makeTempDir({ prefix: "bn-nginx-body-" });
    const proxy = new Nginx(dir, freePort(), [upstream.addr.port]);
    try {
      await proxy.start(nginx!);
      // 100 KB: over client_body_buffer_size, so nginx buffers it to client_body_temp_path
      const res = await fetch(`${proxy.url}/v1/completions`, { method: "POST", body: "x".repeat(100_000) });
      assertEquals([res.status, await res.text()], [200, "100000"]);
    } finally {
      await proxy.stop();
      await upstream.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "scale-out behind nginx: spread, rolling restart without loss, SIGKILL loses only its streams",
  ignore: !nginx,
  async fn() {
    // 8 clients against 3 x 2 slots and no queue: some meet 429 and retry after Retry-After.
    const [slots, queue] = [2, 0];
    const report = await scaleOut({
      ...FULL,
      concurrency: 8,
      spread: 12,
      killRequests: 9,
      maxTokens: 160,
      serverArgs: [
        "--threads",
        "1",
        "--slots",
        `${slots}`,
        "--max-queue",
        `${queue}`,
        "--grace",
        "20",
        "--log-level",
        "warn",
      ],
      timeoutS: 150,
      log: () => {},
    });
    console.log(figuresTable(report));
    const { spread, rolling, kill, killed } = report;

    assertEquals([spread.failed, spread.truncated, spread.ok], [0, 0, 12]);
    assert(spread.share.every((s) => s > 0), `every replica served: ${spread.share}`);
    assert(report.peakBusy.every((b) => b >= 1), `every replica streamed concurrently: ${report.peakBusy}`);

    assertEquals(report.drainExits, [0, 0, 0], "each replica drained and exited 0 after SIGTERM");
    assertEquals(
      [rolling.failed, rolling.truncated],
      [0, 0],
      "no request failed or was cut during the restart",
    );
    assert(rolling.sent >= 12 && rolling.ok === rolling.sent, `rolling: ${rolling.ok}/${rolling.sent}`);
    assert(rolling.share.every((s) => s > 0), `every replica served during the restart: ${rolling.share}`);
    assert(spread.retries + rolling.retries + kill.retries > 0, "clients met 429 and retried");

    assertEquals(kill.failed, 0, "requests after the kill went to the other replicas");
    assertEquals(killed.truncatedOnOthers, 0, "only the killed replica's streams were lost");
    assert(killed.truncatedOnKilled <= slots + queue, `lost ${killed.truncatedOnKilled}: more than it held`);
    assertEquals(killed.servedAfterKill, 0);
    assert(kill.ok >= 9, `completed after the kill: ${kill.ok}`);
  },
});
