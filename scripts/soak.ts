/**
 * A bounded load-and-fault run against a server on 127.0.0.1: N clients for T minutes send chat
 * and completion requests, streamed or not, and drop a share of them at a random moment (before
 * the answer, mid-stream); a side loop checks that `/health` keeps answering. It reports requests
 * by outcome, 5xx, hangs (no final event in time, or a stream cut without one), the server's RSS at
 * 1 minute and at the end, and how the server drained on SIGTERM.
 *
 * ```sh
 * deno task soak --clients 64 --slots 8 --minutes 10 --disconnect 0.3     # spawns the server
 * deno task soak --url http://127.0.0.1:8080 --pid 1234 --minutes 2        # an already running one
 * ```
 *
 * Only localhost: the URL must be on 127.0.0.1 or localhost. Prints one JSON report on stdout and
 * a summary on stderr. Runs with -A: reading another process's RSS in /proc needs it.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { mulberry32 } from "./_prng.ts";
import { serveFlags } from "./bench/cold_start.ts";

/** Settings of {@linkcode soak}. */
export interface SoakOptions {
  readonly clients: number;
  readonly minutes: number;
  /** Share of requests the client drops at a random moment. */
  readonly disconnect: number;
  /** A request with no final event after this many seconds is a hang. */
  readonly hangAfter: number;
  readonly seed: number;
  /** Server to use; absent: spawn one with `model`, `slots`, `threads`. */
  readonly url?: string;
  readonly pid?: number;
  readonly model?: string;
  readonly slots: number;
  readonly threads?: number;
}

/** How one request ended. */
export type Outcome = "ok" | "client_error" | "busy" | "server_error" | "aborted" | "hang" | "network_error";

/** What {@linkcode soak} measured. */
export interface SoakReport {
  readonly options: SoakOptions;
  readonly seconds: number;
  readonly requests: number;
  readonly outcomes: Record<Outcome, number>;
  readonly statuses: Record<string, number>;
  /** Responses with status >= 500 plus streams that ended with a server_error event. */
  readonly serverErrors: number;
  readonly hangs: number;
  readonly streamedTokens: number;
  readonly rssMiB: {
    readonly at1min: number | null;
    readonly end: number | null;
    readonly max: number | null;
    /** At the end of each minute. */
    readonly perMinute: readonly (number | null)[];
  };
  readonly health: { readonly checks: number; readonly failures: number; readonly maxMs: number };
  /** Gauges from /metrics at the end, before the drain (prompt cache bytes, open connections, ...). */
  readonly gauges: Record<string, number>;
  readonly server: {
    readonly exitCode: number | null;
    readonly drainMs: number | null;
    readonly errorLines: number;
  } | null;
}

const PROMPTS = ["Tell me about the jury.", "The city of Atlanta", "Write one sentence about rain.", "Hello"];

/** Reads VmRSS of `pid` in MiB (null where /proc is not readable). */
function rssMiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** One random request of the mix, and when (ms after sending) the client drops it, if it does. */
function pick(rand: () => number, disconnect: number) {
  const chat = rand() < 0.5, stream = rand() < 0.6;
  const body: Record<string, unknown> = {
    max_tokens: 1 + Math.floor(rand() * 48),
    temperature: rand() < 0.3 ? 0 : 0.8,
    stream,
    ...(rand() < 0.1 ? { n: 2 } : {}),
    ...(rand() < 0.1 ? { stop: ["."] } : {}),
  };
  const prompt = PROMPTS[Math.floor(rand() * PROMPTS.length)];
  if (chat) body.messages = [{ role: "user", content: prompt }];
  else body.prompt = prompt;
  const dropAt = rand() < disconnect ? (rand() < 0.2 ? 0 : rand() * 1500) : -1;
  return { path: chat ? "/v1/chat/completions" : "/v1/completions", body, dropAt };
}

/** Sends one request and classifies its end. */
async function one(
  url: string,
  req: ReturnType<typeof pick>,
  hangAfterMs: number,
  count: (status: number, tokens: number) => void,
): Promise<Outcome> {
  const ac = new AbortController();
  let dropped = false, hung = false;
  const drop = req.dropAt >= 0
    ? setTimeout(() => {
      dropped = true;
      ac.abort();
    }, req.dropAt)
    : undefined;
  const hang = setTimeout(() => {
    hung = true;
    ac.abort();
  }, hangAfterMs);
  try {
    const res = await fetch(`${url}${req.path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(req.body),
      signal: ac.signal,
    });
    if (!req.body.stream || res.status !== 200) {
      const text = await res.text();
      count(res.status, 0);
      if (res.status >= 500) return "server_error";
      if (res.status === 429 || res.status === 503) return "busy";
      if (res.status >= 400) return "client_error";
      return JSON.parse(text).choices ? "ok" : "server_error";
    }
    let text = "", tokens = 0;
    for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      tokens += chunk.split('"finish_reason":null').length - 1;
    }
    count(200, tokens);
    if (!text.endsWith("data: [DONE]\n\n")) return "hang"; // cut without a final event
    const last = text.slice(0, -"data: [DONE]\n\n".length).trimEnd().split("\n\n").at(-1) ?? "";
    if (last.includes('"error"')) return last.includes('"server_error"') ? "server_error" : "busy";
    return last.includes('"finish_reason":"') ? "ok" : "hang";
  } catch {
    return dropped ? "aborted" : hung ? "hang" : "network_error";
  } finally {
    clearTimeout(drop);
    clearTimeout(hang);
  }
}

const GAUGES = [
  "bn_prompt_cache_bytes",
  "bn_http_connections_open",
  "bn_slots_busy",
  "bn_queue_depth",
  "bn_requests_inflight",
];

/** The server's {@linkcode GAUGES} now (empty where /metrics does not answer). */
async function endGauges(url: string): Promise<Record<string, number>> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    return Object.fromEntries(GAUGES.flatMap((g) => {
      const m = new RegExp(`^${g} (\\S+)$`, "m").exec(text);
      return m ? [[g, Number(m[1])]] : [];
    }));
  } catch {
    return {};
  }
}

/** Spawns the server as `deno task serve` would and waits for its URL. */
async function spawnServer(o: SoakOptions) {
  const args = [
    ...serveFlags(),
    "main.ts",
    "--port",
    "0",
    "--slots",
    String(o.slots),
    "--max-queue",
    String(Math.max(16, o.clients)),
    ...(o.model ? ["--model", o.model] : []),
    ...(o.threads ? ["--threads", String(o.threads)] : []),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...args],
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let errorLines = 0;
  const logs = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const l of lines) if (/"level":"error"/.test(l) || /"status":5\d\d/.test(l)) errorLines++;
    }
  })();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/serving on (http:\/\/\S+)/.test(seen)) {
    const r = await stderr.read();
    if (r.done) throw new Error(`the server exited before serving: ${seen}`);
    seen += r.value;
  }
  const drainStderr = (async () => {
    for (let r = await stderr.read(); !r.done; r = await stderr.read()) { /* keep the pipe flowing */ }
  })();
  return {
    url: seen.match(/serving on (http:\/\/\S+)/)![1],
    pid: child.pid,
    async stop() {
      const t0 = performance.now();
      child.kill("SIGTERM");
      const { code } = await child.status;
      await Promise.all([logs, drainStderr]);
      return { exitCode: code, drainMs: Math.round(performance.now() - t0), errorLines };
    },
  };
}

/** Runs the soak; see the module doc. */
export async function soak(o: SoakOptions): Promise<SoakReport> {
  if (o.url && !/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(o.url)) {
    throw new TypeError(`--url must be http://127.0.0.1:PORT or http://localhost:PORT, got ${o.url}`);
  }
  const server = o.url ? null : await spawnServer(o);
  const url = o.url ?? server!.url, pid = o.pid ?? server?.pid;
  const t0 = performance.now(), end = t0 + o.minutes * 60_000;
  const outcomes: Record<Outcome, number> = {
    ok: 0,
    client_error: 0,
    busy: 0,
    server_error: 0,
    aborted: 0,
    hang: 0,
    network_error: 0,
  };
  const statuses: Record<string, number> = {};
  let requests = 0, tokens = 0, at1min: number | null = null, max: number | null = null;
  const perMinute: (number | null)[] = [];
  const health = { checks: 0, failures: 0, maxMs: 0 };
  const count = (status: number, n: number) => {
    statuses[status] = (statuses[status] ?? 0) + 1;
    tokens += n;
  };
  const sampler = setInterval(() => {
    if (pid === undefined) return;
    const rss = rssMiB(pid);
    if (rss !== null) max = Math.max(max ?? 0, rss);
    if (performance.now() - t0 >= 60_000 * (perMinute.length + 1)) perMinute.push(rss);
    at1min = perMinute[0] ?? null;
  }, 1000);
  let running = true;
  const healthLoop = (async () => {
    while (running) {
      const h0 = performance.now();
      try {
        const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
        await res.body?.cancel();
        if (res.status !== 200) health.failures++;
      } catch {
        health.failures++;
      }
      health.checks++;
      health.maxMs = Math.max(health.maxMs, Math.round(performance.now() - h0));
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  await Promise.all(Array.from({ length: o.clients }, async (_, c) => {
    const rand = mulberry32(o.seed * 1000 + c);
    while (performance.now() < end) {
      requests++;
      outcomes[await one(url, pick(rand, o.disconnect), o.hangAfter * 1000, count)]++;
    }
  }));
  running = false;
  await healthLoop;
  clearInterval(sampler);
  const gauges = await endGauges(url);
  const rssEnd = pid === undefined ? null : rssMiB(pid);
  if (rssEnd !== null) max = Math.max(max ?? 0, rssEnd);
  const stopped = server ? await server.stop() : null;
  return {
    options: o,
    seconds: Math.round((performance.now() - t0) / 1000),
    requests,
    outcomes,
    statuses,
    serverErrors: outcomes.server_error,
    hangs: outcomes.hang,
    streamedTokens: tokens,
    rssMiB: { at1min, end: rssEnd, max, perMinute },
    health,
    gauges,
    server: stopped,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      clients: { type: "string", default: "64" },
      minutes: { type: "string", default: "10" },
      disconnect: { type: "string", default: "0.3" },
      "hang-after": { type: "string", default: "120" },
      seed: { type: "string", default: "1" },
      url: { type: "string" },
      pid: { type: "string" },
      model: { type: "string" },
      slots: { type: "string", default: "8" },
      threads: { type: "string" },
    },
  });
  const report = await soak({
    clients: Number(values.clients),
    minutes: Number(values.minutes),
    disconnect: Number(values.disconnect),
    hangAfter: Number(values["hang-after"]),
    seed: Number(values.seed),
    url: values.url,
    pid: values.pid ? Number(values.pid) : undefined,
    model: values.model,
    slots: Number(values.slots),
    threads: values.threads ? Number(values.threads) : undefined,
  });
  console.log(JSON.stringify(report));
  const r = report;
  console.error(
    `soak: ${r.requests} requests in ${r.seconds} s (${r.options.clients} clients, ${r.options.slots} slots, ` +
      `${r.options.disconnect * 100}% dropped): ${JSON.stringify(r.outcomes)}\n` +
      `5xx ${r.serverErrors}, hangs ${r.hangs}, RSS ${r.rssMiB.at1min} MiB at 1 min, ${r.rssMiB.end} MiB at the end ` +
      `(max ${r.rssMiB.max}; per minute ${
        r.rssMiB.perMinute.join(", ")
      }), /health ${r.health.checks} checks, ${r.health.failures} failed, max ${r.health.maxMs} ms` +
      (r.server
        ? `, drain: exit ${r.server.exitCode} in ${r.server.drainMs} ms, ${r.server.errorLines} error log lines`
        : ""),
  );
  Deno.exit(r.serverErrors || r.hangs || (r.server && r.server.exitCode !== 0) ? 1 : 0);
}
