/**
 * main.ts: flags and environment -> ServerConfig, and the real process started exactly as
 * `deno task serve` starts it (its permissions included): start-up lines, a streamed chat over
 * HTTP, drain on SIGTERM, exit 0; and the message when the model file cannot be read.
 */
import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { parseConfig, usage } from "../main.ts";
import { tinyModel } from "./_models.ts";
import { running, serve, waitFor } from "./_serve.ts";
import { serveFlags } from "../scripts/dist.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
import { rewriteGguf } from "./_gguf_edit.ts";

Deno.test("parseConfig() gives safe defaults", () => {
  const c = parseConfig([]);
  assertEquals(
    [c.model, c.host, c.port, c.slots, c.maxQueue, c.timeout, c.grace, c.logLevel, c.maxBody],
    [undefined, "127.0.0.1", 8080, 2, 16, 600, 30, "info", 1 << 20],
  );
  assertEquals([c.apiKeys, c.corsOrigins, c.authReady, c.authMetrics], [[], [], false, false]);
  assertEquals([c.headerTimeout, c.idleTimeout, c.bodyTimeout, c.maxConnections, c.watchdog], [
    10,
    75,
    30,
    1000,
    120,
  ]);
  const env = { BN_HEADER_TIMEOUT: "2.5", BN_IDLE_TIMEOUT: "5", BN_MAX_CONNECTIONS: "64", BN_WATCHDOG: "0" };
  const d = parseConfig(["--body-timeout", "9", "--idle-timeout", "6"], env);
  assertEquals([d.headerTimeout, d.idleTimeout, d.bodyTimeout, d.maxConnections, d.watchdog], [
    2.5,
    6,
    9,
    64,
    0,
  ]);
});

Deno.test("parseConfig() reads BN_* variables and lets flags override them", () => {
  const env = {
    BN_PORT: "9000",
    BN_SLOTS: "4",
    BN_API_KEY: "a, b",
    BN_AUTH_READY: "true",
    BN_CORS_ORIGIN: "https://x.example",
  };
  const c = parseConfig(["--port", "9001", "--api-key", "c", "--api-key=d,e", "--max-body", "512k"], env);
  assertEquals([c.port, c.slots, c.authReady, c.maxBody], [9001, 4, true, 512 * 1024]);
  assertEquals(c.apiKeys, ["c", "d", "e"]);
  assertEquals(c.corsOrigins, ["https://x.example"]);
  assertEquals(parseConfig([], { BN_API_KEY: "a, b" }).apiKeys, ["a", "b"]);
  assertEquals(parseConfig(["--auth-metrics", "--max-body", "4m", "--timeout", "0"]).timeout, 0);
  assertEquals(parseConfig(["--kernel", "simd128", "--threads", "3", "--ctx", "512"]).threads, 3);
});

Deno.test("parseConfig(): the playground is on unless --no-playground or BN_PLAYGROUND=0", () => {
  assertEquals(parseConfig([]).playground, true);
  assertEquals(parseConfig(["--no-playground"]).playground, false);
  assertEquals(parseConfig([], { BN_PLAYGROUND: "0" }).playground, false);
  assertEquals(parseConfig([], { BN_PLAYGROUND: "false" }).playground, false);
  assertEquals(parseConfig(["--playground"], { BN_PLAYGROUND: "0" }).playground, true);
  throws(() => parseConfig([], { BN_PLAYGROUND: "maybe" }), /--playground \(BN_PLAYGROUND\)/);
  assert(usage().includes("--no-playground"));
});

Deno.test("parseConfig() reads --revec on|off and BN_REVEC (on by default, the flag over the variable)", () => {
  assertEquals(parseConfig([]).revec, true);
  assertEquals(parseConfig(["--revec", "off"]).revec, false);
  assertEquals(parseConfig(["--revec=0"]).revec, false);
  assertEquals(parseConfig([], { BN_REVEC: "0" }).revec, false);
  assertEquals(parseConfig([], { BN_REVEC: "False" }).revec, false);
  assertEquals(parseConfig(["--revec", "on"], { BN_REVEC: "off" }).revec, true);
  throws(() => parseConfig(["--revec", "auto"]), (e: Error) => /--revec \(BN_REVEC\)/.test(e.message));
});

Deno.test("parseConfig() names the flag and its variable on bad values", () => {
  const bad: [string[], Record<string, string>, RegExp][] = [
    [["--port", "http"], {}, /--port \(BN_PORT\)/],
    [[], { BN_PORT: "70000" }, /--port \(BN_PORT\)/],
    [["--slots", "0"], {}, /--slots/],
    [["--log-level", "loud"], {}, /--log-level/],
    [["--kernel", "avx512"], {}, /--kernel/],
    [["--max-body", "lots"], {}, /--max-body/],
    [[], { BN_AUTH_READY: "maybe" }, /--auth-ready/],
    [["--nope"], {}, /nope/],
    [["--header-timeout", "0"], {}, /--header-timeout \(BN_HEADER_TIMEOUT\)/],
    [[], { BN_IDLE_TIMEOUT: "-1" }, /--idle-timeout/],
    [["--body-timeout", "soon"], {}, /--body-timeout/],
    [["--max-connections", "0"], {}, /--max-connections/],
    [["--watchdog", "-5"], {}, /--watchdog/],
    [["stray"], {}, /stray/],
  ];
  for (const [args, env, re] of bad) {
    throws(() => parseConfig(args, env), (e: Error) => e instanceof TypeError && re.test(e.message));
  }
});

Deno.test("usage() lists every flag with its variable", () => {
  const text = usage();
  for (
    const f of [
      "--model",
      "--host",
      "--port",
      "--threads",
      "--ctx",
      "--slots",
      "--max-queue",
      "--api-key",
      "--api-key-file",
      "--cors-origin",
      "--max-body",
      "--timeout",
      "--log-level",
      "--header-timeout",
      "--idle-timeout",
      "--body-timeout",
      "--max-connections",
      "--watchdog",
    ]
  ) {
    assert(text.includes(f), f);
  }
  assert(text.includes("BN_MAX_QUEUE"));
});

Deno.test("the server exits non-zero naming a model file it cannot read", async () => {
  const missing = "/tmp/does-not-exist/model.gguf";
  const out = await serve(["--model", missing, "--port", "0"]).output();
  const err = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 1);
  assert(err.includes(`Cannot load model "${missing}"`), err);
  assert(!err.includes("    at "), `no stack trace: ${err}`);
});

Deno.test("deno task serve --revec off runs the 128-bit kernels without a probe", async () => {
  const child = serve(["--model", await tinyModel(), "--port", "0", "--threads", "1", "--revec", "off"]);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const banner = await waitFor(stderr, /serving on/);
    assert(banner.includes("ternary rows in 4s (the 128-bit kernels; no probe)"), banner);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel();
    await stderr.cancel();
  }
});

Deno.test("deno task serve starts with least privilege, streams a chat, and drains to exit 0 on SIGTERM", async () => {
  const model = await tinyModel();
  const child = serve(["--model", model, "--port", "0", "--threads", "2", "--slots", "2"]);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const stdout = new Response(child.stdout).text();
  try {
    const banner = await waitFor(stderr, /serving on (http:\/\/127\.0\.0\.1:\d+)/);
    const url = banner.match(/serving on (http:\/\/127\.0\.0\.1:\d+)/)![1];
    for (const s of ["model: synthetic-tiny", "kernel ", "x 2 threads", "memory ", "2 slot(s)"]) {
      assert(banner.includes(s), banner);
    }
    // which ternary path runs, chosen by the start-up probe (its figures in the banner)
    assert(/ternary rows in (16s|4s) \(.*; probe \d+ vs \d+ G MAC\/s a thread\)/.test(banner), banner);
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 5, stream: true }),
    });
    assertEquals(res.status, 200);
    const text = await res.text();
    assert(text.startsWith("data: {") && text.endsWith("data: [DONE]\n\n"), text);
    child.kill("SIGTERM");
    const rest = await waitFor(stderr, /stopped/, banner);
    assert(rest.includes("SIGTERM: draining"));
    assertEquals((await child.status).code, 0);
    const log = JSON.parse((await stdout).trim().split("\n")[0]);
    assertEquals([log.msg, log.route, log.status, log.stream], [
      "request",
      "/v1/chat/completions",
      200,
      true,
    ]);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await stderr.cancel();
    await child.status;
    await stdout;
  }
});

Deno.test({
  name: "--host takes any address of the machine (127.0.0.2), not only the loopback names",
  ignore: Deno.build.os !== "linux", // 127.0.0.0/8 is all loopback on Linux only
  async fn() {
    const child = serve([
      "--model",
      await tinyModel(),
      "--host",
      "127.0.0.2",
      "--port",
      "0",
      "--threads",
      "1",
    ]);
    const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const stdout = new Response(child.stdout).text();
    try {
      const banner = await waitFor(stderr, /serving on (http:\/\/127\.0\.0\.2:\d+)/);
      const url = banner.match(/serving on (http:\/\/127\.0\.0\.2:\d+)/)![1];
      // From another process: this test's own permissions cover 127.0.0.1 and localhost only.
      const get = await new Deno.Command(Deno.execPath(), {
        args: ["eval", `const r = await fetch("${url}/health"); console.log(r.status, await r.text())`],
        stdout: "piped",
      }).output();
      assertEquals(new TextDecoder().decode(get.stdout).trim(), '200 {"status":"ok"}');
      // the warning is the line after the banner (it may come in a later read)
      let timer: ReturnType<typeof setTimeout> | undefined;
      const warned = await Promise.race([
        waitFor(stderr, /without an API key/, banner),
        new Promise<string>((r) => (timer = setTimeout(() => r(banner), 10_000))),
      ]);
      clearTimeout(timer);
      assert(warned.includes("without an API key"), "a non-loopback address without a key is warned about");
    } finally {
      child.kill("SIGTERM");
      await stderr.cancel();
      await child.status;
      await stdout;
    }
  },
});

Deno.test("with the serve task's permissions, the process has no network left after it binds", async () => {
  const outside = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("reached"),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...serveFlags(), "tests/_net_probe.ts", `http://127.0.0.1:${outside.addr.port}/`],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = new Response(child.stderr).text();
  try {
    assert(serveFlags().includes("--allow-net"), "the serve task grants the network for the bind");
    let line = "";
    while (!line.includes("\n")) {
      const r = await stdout.read();
      if (r.done) throw new Error(`probe ended: ${line} ${await stderr}`);
      line += r.value;
    }
    const result = JSON.parse(line);
    assertEquals(
      [result.fetch, result.connect, result.listen, result.serveAgain, result.worker],
      ["NotCapable", "NotCapable", "NotCapable", "NotCapable", "NotCapable"],
    );
    const res = await fetch(`http://127.0.0.1:${result.port}/`);
    assertEquals(await res.text(), "still serving");
  } finally {
    await child.stdin.close();
    await stdout.cancel();
    await child.status;
    await stderr;
    await outside.shutdown();
  }
});

/** Runs `deno task serve ARGS` from `cwd` (a directory inside the repository) until `re` shows. */
async function taskUntil(cwd: string, args: string[], re: RegExp): Promise<{ log: string; code: number }> {
  // Without the INIT_CWD of the `deno task test` running this (a deno task keeps an inherited one).
  const { INIT_CWD: _, ...env } = Deno.env.toObject();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "serve", ...args],
    cwd,
    clearEnv: true,
    env: { ...env, NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  try {
    log = await waitFor(stderr, re);
    child.kill("SIGTERM");
  } catch (e) {
    if (!/process ended/.test((e as Error).message)) throw e;
    log = (e as Error).message;
  } finally {
    await stderr.cancel();
  }
  return { log, code: (await child.status).code };
}

Deno.test("deno task serve from a subdirectory: --model paths start there, errors show the absolute path", async () => {
  const routes = `${ROOT}routes`;
  const missing = await taskUntil(routes, ["--model", "nope.gguf", "--port", "0"], /serving on/);
  assertEquals(missing.code, 1);
  assert(
    missing.log.includes(`Cannot load model "${routes}/nope.gguf" (--model nope.gguf from ${routes})`),
    missing.log,
  );

  const ok = await taskUntil(
    routes,
    ["--model", "../models/default.gguf", "--port", "0", "--threads", "1"],
    /serving on/,
  );
  assert(ok.log.includes(`loading ${ROOT}models/default.gguf`), ok.log);
  // The embedded model says what it is and how to get the real one.
  assert(ok.log.includes("embedded demo model") && ok.log.includes("256-token context"), ok.log);
  assert(ok.log.includes("deno task pull\n"), ok.log);
  assert(
    ok.log.includes("deno task serve --model hf:microsoft/bitnet-b1.58-2B-4T-gguf/ggml-model-i2_s.gguf"),
  );
  assertEquals(ok.code, 0);
});

Deno.test("--ctx above the model's trained context is served with a warning in the banner", async () => {
  const model = await tinyModel(); // trained context 256
  const child = serve(["--model", model, "--port", "0", "--threads", "1", "--slots", "1", "--ctx", "512"]);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const stdout = new Response(child.stdout).text();
  try {
    const banner = await waitFor(stderr, /serving on/);
    assert(banner.includes("1 slot(s) x 512 ctx"), banner);
    assert(
      /warning: the context \(512 positions per slot\) is longer than the model was trained on \(256\)/.test(
        banner,
      ),
    );
    assert(!banner.includes("embedded demo model"), "a --model file is not the demo model");
  } finally {
    child.kill("SIGTERM");
    await stderr.cancel();
    await child.status;
    await stdout;
  }
});

Deno.test("the server refuses a model whose norm weight is NaN, naming the tensor, and exits 1", async () => {
  const out = rewriteGguf(await tinyModel(), Deno.makeTempFileSync({ suffix: ".gguf" }), (tensors) => {
    const t = tensors.find((x) => x.name === "output_norm.weight")!;
    new DataView(t.data.buffer, t.data.byteOffset).setFloat32(0, NaN, true);
    return tensors;
  });
  const child = serve(["--model", out, "--port", "0", "--threads", "1"]);
  // a server that loads the model and serves it never exits: give it 30 s
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    const res = await child.output();
    const err = new TextDecoder().decode(res.stderr);
    assertEquals(res.code, 1, err);
    assert(
      /error: Cannot load model ".*": tensor "output_norm\.weight" holds NaN at element 0/.test(err),
      err,
    );
  } finally {
    clearTimeout(timer);
    Deno.removeSync(out);
  }
});

Deno.test("under `ulimit -n 64` the server survives a connection flood past the limit and answers afterwards", async () => {
  const model = await tinyModel();
  const server = await running(
    ["--model", model, "--port", "0", "--threads", "1", "--slots", "1", "--header-timeout", "1.5"],
    { openFiles: 64 },
  );
  const port = Number(new URL(server.url).port);
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 150; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    // each is answered in time: 503 over the cap, or closed (408) at the header timeout
    const answers = await Promise.all(held.map(async (c) => {
      const buf = new Uint8Array(512);
      const timeout = new Promise<"none">((r) => setTimeout(() => r("none"), 12_000));
      const n = await Promise.race([c.read(buf).catch(() => null), timeout]);
      return n === "none"
        ? "none"
        : n
        ? new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0]
        : "closed";
    }));
    const count = (s: string) => answers.filter((a) => a === s).length;
    assert(count("HTTP/1.1 503 Service Unavailable") > 0, `no 503: ${[...new Set(answers)]}`);
    assertEquals(count("none"), 0, "every connection was answered or closed");
    for (const c of held.splice(0)) c.close();
    const res = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "hi", max_tokens: 3 }),
      signal: AbortSignal.timeout(10_000),
    });
    assertEquals([res.status, (await res.json()).usage.completion_tokens], [200, 3]);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    for (const event of ["refused", "accept_error", "header_timeout"]) {
      assert(new RegExp(`bn_http_connection_events_total\\{event="${event}"\\} [1-9]`).test(metrics), event);
    }
    const cap = Number(/^bn_http_connections_max (\d+)$/m.exec(metrics)?.[1]);
    assert(cap > 0 && cap < 64, `the cap learned below the file limit: ${cap}`);
  } finally {
    for (const c of held) c.close();
    const stdout = await server.stop();
    assert(stdout.includes("the open-file limit was reached"), stdout.slice(-2000));
  }
});

Deno.test("Ctrl-C to `deno task serve` (SIGINT to its process group, delivered twice) drains every stream", async () => {
  // the embedded default model: its streams run long enough for the task runner's forwarded copy of
  // the signal to arrive while they drain
  const child = new Deno.Command("setsid", {
    args: [Deno.execPath(), "task", "serve", "--port", "0", "--threads", "1", "--slots", "2"],
    cwd: new URL("../", import.meta.url),
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const banner = await waitFor(stderr, /serving on (http:\/\/127\.0\.0\.1:\d+)/);
    const url = banner.match(/serving on (http:\/\/127\.0\.0\.1:\d+)/)![1];
    const stops = await (await fetch(`${url}/tokenize`, {
      method: "POST",
      body: JSON.stringify({ content: "<|eot_id|><|end_of_text|>", parse_special: true, add_special: false }),
    })).json();
    const noStop = Object.fromEntries(stops.tokens.map((id: number) => [String(id), -100]));
    const streams = await Promise.all([0, 1].map(() =>
      fetch(`${url}/v1/completions`, {
        method: "POST",
        body: JSON.stringify({ prompt: "The", max_tokens: 240, stream: true, logit_bias: noStop }),
      })
    ));
    const readers = streams.map((r) => r.body!.pipeThrough(new TextDecoderStream()).getReader());
    const texts = await Promise.all(readers.map(async (r) => (await r.read()).value ?? ""));
    Deno.kill(-child.pid, "SIGINT"); // the terminal's Ctrl-C: deno task and the server both get it
    for (let i = 0; i < 2; i++) {
      for (let r = await readers[i].read(); !r.done; r = await readers[i].read()) texts[i] += r.value;
    }
    for (const text of texts) {
      assert(text.endsWith('"finish_reason":"length"}]}\n\ndata: [DONE]\n\n'), text.slice(-300));
    }
    const rest = await waitFor(stderr, /stopped/, banner);
    assert(rest.includes("SIGINT: draining"), rest);
    assert(!rest.includes("exiting now"), rest);
    assertEquals((await child.status).code, 0);
  } finally {
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch { /* exited */ }
    await stderr.cancel().catch(() => {});
    await child.status;
  }
});
