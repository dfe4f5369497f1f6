/**
 * The server process: flags and `BN_*` environment variables -> one validated {@linkcode ServerConfig}
 * (zod), bind the port (so `/health` and `/ready` answer while the model loads), load the engine,
 * serve (routes/server/: connection cap and timeouts), watch the scheduler (routes/watchdog.ts), and
 * drain on SIGTERM / SIGINT.
 *
 * ```sh
 * deno task serve                                # the embedded default model, http://127.0.0.1:8080
 * deno task serve --model /path/ggml-model-i2_s.gguf --host 0.0.0.0 --api-key-file /etc/bn/keys
 * ```
 *
 * @module
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { DEFAULT_MODEL_PATH } from "./engine/model/default_model.ts";
import { DEFAULT_PULL, formatHfRef } from "./engine/model/hub.ts";
import { locateModel } from "./engine/model/locate.ts";
import { Engine } from "./engine/run/engine.ts";
import { terminalProgress } from "./engine/model/progress_bar.ts";
import { createApp } from "./routes/app.ts";
import { createLogger, LOG_LEVELS } from "./routes/log.ts";
import { loadPlayground, type Playground } from "./routes/playground.ts";
import { Metrics } from "./routes/metrics.ts";
import { HttpServer, type ServeOptions } from "./routes/server/server.ts";
import { ServerState } from "./routes/state.ts";
import { Watchdog } from "./routes/watchdog.ts";

/** Flag name -> environment variable, type and help. */
const FLAGS = {
  model: ["BN_MODEL", "string", "GGUF model file (default: the embedded model, models/default.gguf)"],
  host: ["BN_HOST", "string", "address to listen on (default 127.0.0.1)"],
  port: ["BN_PORT", "string", "port (default 8080; 0 picks a free one)"],
  threads: ["BN_THREADS", "string", "kernel worker threads (default: all cores)"],
  ctx: ["BN_CTX", "string", "context positions per slot (default: min(model, 4096))"],
  slots: ["BN_SLOTS", "string", "concurrent generations (default 2)"],
  "max-queue": ["BN_MAX_QUEUE", "string", "requests that may wait for a slot; more get 429 (default 16)"],
  kernel: ["BN_KERNEL", "string", "ref, simd128 or relaxed (default: the best this CPU runs)"],
  head: [
    "BN_HEAD",
    "string",
    "LM head of an F16 model: file (exact F16), q8_0, q7, or auto (default: q7 when the head is 64 MiB or more)",
  ],
  batch: ["BN_BATCH", "string", "tokens per forward step (default 128)"],
  "cache-mem": [
    "BN_CACHE_MEM",
    "string",
    "MiB of host memory for prompt KV states evicted from the slots, LRU (default 256; 0: off)",
  ],
  revec: [
    "BN_REVEC",
    "string",
    "on (default): the 256-bit kernels V8 fuses where a start-up probe measures them faster; off: the 128-bit ones",
  ],
  "api-key": ["BN_API_KEY", "string", "Bearer key clients must send; repeat or comma-separate for several"],
  "api-key-file": ["BN_API_KEY_FILE", "string", "file with one key per line"],
  "auth-ready": ["BN_AUTH_READY", "boolean", "require the key on /ready too"],
  "auth-metrics": ["BN_AUTH_METRICS", "boolean", "require the key on /metrics too"],
  "cors-origin": ["BN_CORS_ORIGIN", "string", "allowed browser origin (repeat or comma-separate; * for any)"],
  "max-body": ["BN_MAX_BODY", "string", "largest request body in bytes, k/m suffixes allowed (default 1m)"],
  timeout: ["BN_TIMEOUT", "string", "seconds a request may run (default 600; 0: no limit)"],
  grace: ["BN_GRACE", "string", "seconds in-flight requests get on shutdown (default 30)"],
  "keep-alive": [
    "BN_KEEP_ALIVE",
    "string",
    "seconds between SSE comment lines while a stream waits for its first token or the next (default 15; 0: off)",
  ],
  "header-timeout": [
    "BN_HEADER_TIMEOUT",
    "string",
    "seconds a connection has to send a request head (default 10)",
  ],
  "idle-timeout": [
    "BN_IDLE_TIMEOUT",
    "string",
    "seconds an idle keep-alive connection stays open (default 75)",
  ],
  "body-timeout": [
    "BN_BODY_TIMEOUT",
    "string",
    "seconds a request body may take to arrive, and a response write may stall (default 30)",
  ],
  "max-connections": [
    "BN_MAX_CONNECTIONS",
    "string",
    "open connections before new ones get 503; keep it below the open-file limit (default 1000)",
  ],
  watchdog: [
    "BN_WATCHDOG",
    "string",
    "seconds a forward step may run before /health answers 503; at twice that the process exits 70 (default 120; 0: off)",
  ],
  "log-level": ["BN_LOG_LEVEL", "string", `${LOG_LEVELS.join(", ")} (default info)`],
  playground: [
    "BN_PLAYGROUND",
    "boolean",
    "chat page at GET / (default on; --no-playground or BN_PLAYGROUND=0: off)",
  ],
  help: ["", "boolean", "print this help"],
} as const;

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const list = z.string().transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean));
const flag = z.union([z.boolean(), z.stringbool()]).default(false);
/** on/off switch (the values bin/bitnet-server also reads, scripts/dist.ts) */
const onOff = z.stringbool({ truthy: ["on", "1", "true", "yes"], falsy: ["off", "0", "false", "no"] });
const bytes = z.string().regex(/^\d+[kKmM]?$/, { error: "expected bytes, e.g. 1048576, 512k or 4m" })
  .transform((s) => Number.parseInt(s) * ({ k: 1024, m: 1 << 20 }[s.slice(-1).toLowerCase()] ?? 1))
  .pipe(z.number().int().min(1024).max(1 << 30));

/** The server settings, validated. */
export const ServerConfig = z.object({
  model: z.string().min(1).optional(),
  host: z.string().min(1).default("127.0.0.1"),
  port: int(0, 65535).default(8080),
  threads: int(1, 256).optional(),
  ctx: int(16, 1 << 20).optional(),
  slots: int(1, 256).default(2),
  maxQueue: int(0, 100_000).default(16),
  kernel: z.enum(["ref", "simd128", "relaxed"]).optional(),
  head: z.enum(["auto", "file", "q8_0", "q7"]).default("auto"),
  batch: int(1, 4096).default(128),
  cacheMem: int(0, 1 << 20).default(256),
  revec: onOff.default(true),
  apiKeys: z.array(list).transform((l) => l.flat()).default([]),
  apiKeyFile: z.string().min(1).optional(),
  authReady: flag,
  authMetrics: flag,
  corsOrigins: z.array(list).transform((l) => l.flat()).default([]),
  maxBody: bytes.default(1 << 20),
  timeout: z.coerce.number().min(0).max(86_400).default(600),
  grace: z.coerce.number().min(0).max(3600).default(30),
  keepAlive: z.coerce.number().min(0).max(3600).default(15),
  headerTimeout: z.coerce.number().min(0.05).max(3600).default(10),
  idleTimeout: z.coerce.number().min(0.05).max(3600).default(75),
  bodyTimeout: z.coerce.number().min(0.05).max(3600).default(30),
  maxConnections: int(1, 1 << 20).default(1000),
  watchdog: z.coerce.number().min(0).max(86_400).default(120),
  logLevel: z.enum(LOG_LEVELS).default("info"),
  playground: z.union([z.boolean(), z.stringbool()]).default(true),
  help: flag,
});
export type ServerConfig = z.infer<typeof ServerConfig>;

const camel = (s: string) => s.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
const PLURAL: Record<string, string> = { "api-key": "apiKeys", "cors-origin": "corsOrigins" };

/**
 * Flags override environment variables, which override defaults. Throws a `TypeError` whose
 * message names the flag (and its variable) on any bad value or unknown flag.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./main.ts";
 * parseConfig(["--port", "9000", "--api-key", "a,b"], { BN_SLOTS: "4" }).slots; // 4
 * ```
 */
export function parseConfig(
  args: string[],
  env: Readonly<Record<string, string | undefined>> = {},
): ServerConfig {
  let values: Record<string, unknown>;
  try {
    const options = Object.fromEntries(
      Object.entries(FLAGS).map(([k, [, type]]) => [k, { type, multiple: k in PLURAL }]),
    ) as Record<string, { type: "string" | "boolean"; multiple: boolean }>;
    // allowNegative: `--no-playground` (and `--no-X` for any switch) sets it to false.
    values = parseArgs({ args, options, strict: true, allowPositionals: false, allowNegative: true }).values;
  } catch (e) {
    throw new TypeError(`${(e as Error).message}\nRun with --help for the options.`);
  }
  const raw: Record<string, unknown> = {};
  for (const [k, [envName]] of Object.entries(FLAGS)) {
    const key = PLURAL[k] ?? camel(k);
    const fromEnv = envName ? env[envName] : undefined;
    const v = values[k] ??
      (fromEnv !== undefined && fromEnv !== "" ? (k in PLURAL ? [fromEnv] : fromEnv) : undefined);
    if (v !== undefined) raw[key] = v;
  }
  const result = ServerConfig.safeParse(raw);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const key = String(issue.path[0]);
  const name = Object.keys(FLAGS).find((k) => (PLURAL[k] ?? camel(k)) === key) ?? key;
  throw new TypeError(
    `Invalid --${name} (${FLAGS[name as keyof typeof FLAGS]?.[0] ?? ""}): ${issue.message}`,
  );
}

/** The help text; `program` is how the user started the server (the release's launcher names itself). */
export function usage(program = "deno task serve"): string {
  const width = Math.max(...Object.keys(FLAGS).map((k) => k.length));
  const envWidth = Math.max(...Object.values(FLAGS).map(([env]) => env.length));
  const lines = Object.entries(FLAGS).map(([k, [env, , help]]) =>
    `  --${k.padEnd(width)} ${(env || "").padEnd(envWidth)} ${help}`
  );
  return `Usage: ${program} [options]\n\nOptions (flag, environment variable, meaning):\n${
    lines.join("\n")
  }\n` +
    `\n--model also takes hf:OWNER/REPO/FILE, a file downloaded with \`${pullProgram(program)} pull\` ` +
    `(cache: BN_CACHE, else $XDG_CACHE_HOME/bitnet-server, else ~/.cache/bitnet-server).\n`;
}

/** `deno task` for the serve task, else the launcher itself (`bitnet-server pull`). */
const pullProgram = (program: string) => program === "deno task serve" ? "deno task" : program;

async function readKeys(config: ServerConfig, cwd: string): Promise<string[]> {
  if (!config.apiKeyFile) return config.apiKeys;
  const path = resolve(cwd, config.apiKeyFile);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new TypeError(`Cannot read --api-key-file "${path}": ${(e as Error).message}`);
  }
  const keys = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  if (!keys.length) throw new TypeError(`--api-key-file "${path}" holds no keys`);
  return [...config.apiKeys, ...keys];
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/**
 * Binds the HTTP server, then revokes the process's network permission: the listening socket keeps
 * accepting connections, but nothing in the process (a dependency, the kernel workers started
 * later, a bug) can connect anywhere or listen on anything else. This is how `deno task serve` can
 * grant `--allow-net` and still listen on whatever address `--host` names: the permission lasts
 * from start-up to the bind (module loading, flag parsing), and the server holds only its socket.
 */
export async function listenThenRevokeNet(
  options: ServeOptions,
  handler: (request: Request) => Response | Promise<Response>,
): Promise<HttpServer> {
  const server = HttpServer.listen(options, handler);
  const { state } = await Deno.permissions.revoke({ name: "net" });
  if (state === "granted") {
    await server.shutdown();
    throw new Error("the network permission could not be revoked after binding");
  }
  return server;
}

/** A second SIGINT/SIGTERM this soon after the first is the same request (Ctrl-C reaches `deno task` and us). */
export const SAME_SIGNAL_MS = 1000;

/** Exit status when the watchdog gives up on a stuck step (EX_SOFTWARE): supervisors restart on it. */
export const WEDGED_EXIT = 70;

/** A message safe for the terminal: control characters but newline and tab escaped, cut at 4000. */
function printable(message: string): string {
  let out = "";
  for (const ch of message.slice(0, 4000)) {
    const c = ch.charCodeAt(0);
    const control = (c < 0x20 && ch !== "\n" && ch !== "\t") || (c >= 0x7f && c <= 0x9f);
    out += control ? `\\x${c.toString(16).padStart(2, "0")}` : ch;
  }
  return message.length > 4000 ? `${out}... (${message.length} characters)` : out;
}

/** Runs the server until a signal drains it; resolves with the exit code. */
export async function main(
  args: string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<number> {
  const say = (msg: string) => console.error(printable(msg));
  let config: ServerConfig, modelPath: string, apiKeys: string[], playground: Playground | undefined;
  try {
    config = parseConfig(args, env);
  } catch (e) {
    say(`error: ${(e as Error).message}`);
    return 2;
  }
  const program = env.BN_PROG || "deno task serve";
  if (config.help) {
    console.log(usage(program));
    return 0;
  }
  // Relative paths start where the user ran the command: deno tasks run in the project root and
  // pass the user's directory as INIT_CWD.
  const cwd = env.INIT_CWD || Deno.cwd();
  try {
    apiKeys = await readKeys(config, cwd);
    modelPath = await locateModel(config.model, { cwd, env, program: pullProgram(program) });
    playground = config.playground ? await loadPlayground() : undefined;
  } catch (e) {
    say(`error: ${(e as Error).message}`);
    return 1;
  }
  const state = new ServerState();
  const log = createLogger(config.logLevel);
  const metrics = new Metrics();
  const app = createApp(state, {
    apiKeys,
    authReady: config.authReady,
    authMetrics: config.authMetrics,
    corsOrigins: config.corsOrigins,
    maxBodyBytes: config.maxBody,
    timeoutSeconds: config.timeout,
    keepAliveSeconds: config.keepAlive,
    playground,
    log,
    metrics,
  });
  const host = config.host.replace(/^\[(.*)\]$/, "$1");
  let server: HttpServer;
  try {
    server = await listenThenRevokeNet({
      hostname: host,
      port: config.port,
      headerTimeout: config.headerTimeout,
      idleTimeout: config.idleTimeout,
      bodyTimeout: config.bodyTimeout,
      maxConnections: config.maxConnections,
      warn: (fields) => log("warn", fields),
      onEvent: (event) => metrics.connectionEvents.inc({ event }),
    }, app.fetch);
  } catch (e) {
    const hint = e instanceof Deno.errors.NotCapable
      ? " (run it with --allow-net, as deno task serve does: the server gives the permission up once it listens)"
      : "";
    say(`error: cannot listen on ${config.host}:${config.port}: ${(e as Error).message}${hint}`);
    return 1;
  }
  metrics.connections = () => server.stats;
  const { port } = server.addr;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const watchdog = new Watchdog(state, {
    limitSeconds: config.watchdog,
    onTrip: (reason) => log("error", { msg: "watchdog: the engine is stuck; /health answers 503", reason }),
    onRecover: () => log("warn", { msg: "watchdog: the stuck step returned; /health answers 200 again" }),
    onExpire: (reason) => {
      say(
        `error: watchdog: ${reason}; exiting with status ${WEDGED_EXIT} so that the supervisor restarts it`,
      );
      Deno.exit(WEDGED_EXIT);
    },
  });
  let stopping: Promise<number> | null = null;
  let firstSignalAt = 0;
  const stop = (signal: string) => {
    if (stopping) {
      if (performance.now() - firstSignalAt < SAME_SIGNAL_MS) {
        say(
          `${signal} again within ${SAME_SIGNAL_MS} ms: the same request, still draining (send it again to exit now)`,
        );
        return;
      }
      say(`${signal} again: exiting now`);
      Deno.exit(1);
    }
    firstSignalAt = performance.now();
    say(`${signal}: draining (up to ${config.grace} s), /ready answers 503`);
    stopping = (async () => {
      await state.shutdown(config.grace * 1000);
      watchdog.stop();
      await server.shutdown(2000);
      say("stopped");
      return 0;
    })();
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, () => stop(signal));
    } catch { /* SIGTERM does not exist on Windows */ }
  }
  say(`loading ${modelPath} ...`);
  try {
    const engine = await Engine.load(modelPath, {
      threads: config.threads,
      nCtx: config.ctx,
      nSlots: config.slots,
      maxQueue: config.maxQueue,
      kernel: config.kernel,
      head: config.head,
      revec: config.revec,
      maxBatch: config.batch,
      cacheMemBytes: config.cacheMem * 2 ** 20,
      onProgress: terminalProgress("loading model"),
    });
    if (stopping) {
      await engine.close();
      return await stopping;
    }
    state.ready(engine);
    watchdog.start();
  } catch (e) {
    say(`error: ${(e as Error).message}`);
    await server.shutdown();
    return 1;
  }
  const info = state.engine!.info;
  say(`model: ${state.engine!.describe()}`);
  if (modelPath === DEFAULT_MODEL_PATH) {
    const pull = pullProgram(program);
    say(
      `note: this is the embedded demo model, a small model trained on 1961 American English with a ` +
        `${info.nCtxTrain}-token context: it writes English, not answers. For the real model (BitNet b1.58 ` +
        `2B4T, a 1.2 GB download):\n  ${pull} pull\n  ${program} --model ${formatHfRef(DEFAULT_PULL)}`,
    );
  }
  if (info.nCtx > info.nCtxTrain) {
    say(
      `warning: the context (${info.nCtx} positions per slot) is longer than the model was trained on ` +
        `(${info.nCtxTrain}): positions past ${info.nCtxTrain} are ones it never saw, expect degraded output`,
    );
  }
  const auth = apiKeys.length ? `${apiKeys.length} API key(s)` : "no API key";
  const cors = config.corsOrigins.length ? `CORS ${config.corsOrigins.join(",")}` : "CORS off";
  say(
    `serving on ${url} (${auth}, ${cors}, queue ${config.maxQueue}, timeout ${config.timeout || "none"} s, ` +
      `playground ${playground ? "on" : "off"}, ${config.maxConnections} connections)`,
  );
  if (!apiKeys.length && !LOOPBACK.has(config.host)) {
    say(`warning: listening on ${config.host} without an API key: anyone who can reach it can use it`);
  }
  await server.finished;
  return await (stopping ?? Promise.resolve(0));
}

/**
 * Variables the server reads besides the flags' `BN_*`: where `deno task pull` caches models
 * (`BN_CACHE`, `XDG_CACHE_HOME`, `HOME`), the user's directory under `deno task` (`INIT_CWD`), and the
 * launcher's name for itself (`BN_PROG`). The serve task allows exactly these.
 */
export const OTHER_ENV = ["BN_CACHE", "BN_PROG", "XDG_CACHE_HOME", "HOME", "INIT_CWD"] as const;

/** The environment variables the server reads (nothing else: `--allow-env=BN_*,XDG_CACHE_HOME,HOME,INIT_CWD`). */
export function readEnv(): Record<string, string | undefined> {
  const names = [...Object.values(FLAGS).map(([name]) => name).filter(Boolean), ...OTHER_ENV];
  return Object.fromEntries(names.map((name) => [name, Deno.env.get(name)]));
}

if (import.meta.main) Deno.exit(await main(Deno.args, readEnv()));
