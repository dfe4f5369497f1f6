/**
 * Scale-out over loopback: nginx (`deploy/nginx/bitnet-server.conf`: least connections, passive
 * health checks, no buffering) in front of three server replicas on 127.0.0.1, and three phases:
 *
 * 1. spread: concurrent streams land on every replica (peak busy slots sampled from `/metrics`);
 * 2. rolling restart under load: SIGTERM one replica at a time, wait for it to exit, start it
 *    again, wait for `/ready` and for nginx's `fail_timeout` to let traffic back, then the next
 *    one; clients retry 429/503 after `Retry-After`; no request may fail and no stream be cut;
 * 3. SIGKILL one replica under load: only the streams it held are lost; later requests go to the
 *    others.
 *
 * It prints the figures of each phase and the nginx configuration used. Everything binds to
 * 127.0.0.1, runs a bounded number of requests within a time limit, and stops every process it
 * started.
 *
 * ```sh
 * deno run --allow-read --allow-write=/tmp --allow-run --allow-net=127.0.0.1 --allow-env scripts/scale_out.ts
 * deno run ... scripts/scale_out.ts --concurrency 8 --spread 12 --kill-requests 9   # about the CI scale
 * deno run ... scripts/scale_out.ts --launcher dist/bitnet-server-0.1.0-linux-x64/bin/bitnet-server
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { synthModel } from "./synth_model.ts";
import { type Cluster, findNginx, NGINX_TEMPLATE, sleep, startCluster } from "./deploy/cluster.ts";
import { runPool, stopTokenIds, streamChat, type StreamResult } from "./deploy/load.ts";

/** Options of {@linkcode scaleOut}. */
export interface ScaleOutOptions {
  readonly replicas: number;
  /** Concurrent client streams in every phase. */
  readonly concurrency: number;
  /** Requests of the spread phase. */
  readonly spread: number;
  /** Requests started after the SIGKILL in the kill phase. */
  readonly killRequests: number;
  readonly maxTokens: number;
  /** Server flags of every replica. */
  readonly serverArgs: readonly string[];
  /** Model file; default: a synthetic one generated into `dir`. */
  readonly model?: string;
  /** A release's `bin/bitnet-server` to run the replicas from. */
  readonly launcher?: string;
  /** Scratch directory (nginx files, the model); created, and removed at the end. */
  readonly dir?: string;
  /** Whole-run limit in seconds. */
  readonly timeoutS: number;
  readonly log?: (line: string) => void;
}

/**
 * The full run's defaults; CI passes smaller numbers. 24 concurrent streams exceed what three
 * replicas hold (2 slots + 4 queued each = 18), so clients also meet 429 and retry after
 * `Retry-After`.
 */
export const FULL: ScaleOutOptions = {
  replicas: 3,
  concurrency: 24,
  spread: 60,
  killRequests: 60,
  maxTokens: 200,
  serverArgs: ["--threads", "1", "--slots", "2", "--max-queue", "4", "--grace", "20", "--log-level", "warn"],
  timeoutS: 300,
};

/** Figures of one phase. */
export interface PhaseFigures {
  readonly name: string;
  readonly sent: number;
  readonly ok: number;
  readonly failed: number;
  readonly truncated: number;
  /** Requests the client had to retry (429/503), and the retries in all. */
  readonly retried: number;
  readonly retries: number;
  /** Requests nginx passed on to another replica (X-Upstream lists several). */
  readonly failovers: number;
  /** Completed streams per replica. */
  readonly share: readonly number[];
  readonly seconds: number;
  /** The results, for checks. */
  readonly results: readonly StreamResult[];
}

/** What a run shows. */
export interface ScaleOutReport {
  readonly spread: PhaseFigures;
  readonly rolling: PhaseFigures;
  readonly kill: PhaseFigures;
  /** Highest busy slots seen on each replica during the spread phase. */
  readonly peakBusy: readonly number[];
  /** Exit code of each replica after its SIGTERM in the rolling restart. */
  readonly drainExits: readonly (number | string)[];
  readonly killed: {
    readonly replica: number;
    /** Streams the killed replica was answering when it died. */
    readonly heldAtKill: number;
    /** Truncated streams that came from the killed replica / from any other. */
    readonly truncatedOnKilled: number;
    readonly truncatedOnOthers: number;
    /** Requests started after the kill that the killed replica answered (must be 0). */
    readonly servedAfterKill: number;
  };
  /** The nginx site configuration used (the committed file with this run's ports). */
  readonly nginxSite: string;
  readonly replicaPorts: readonly number[];
  readonly seconds: number;
}

function figures(name: string, results: StreamResult[], cluster: Cluster, t0: number): PhaseFigures {
  const share = cluster.replicas.map(() => 0);
  for (const r of results) {
    const i = cluster.replicaOf(r.upstream);
    if (r.outcome === "ok" && i >= 0) share[i]++;
  }
  return {
    name,
    sent: results.length,
    ok: results.filter((r) => r.outcome === "ok").length,
    failed: results.filter((r) => r.outcome === "failed").length,
    truncated: results.filter((r) => r.outcome === "truncated").length,
    retried: results.filter((r) => r.retries > 0).length,
    retries: results.reduce((s, r) => s + r.retries, 0),
    failovers: results.filter((r) => (r.upstream ?? "").includes(",")).length,
    share,
    seconds: (Date.now() - t0) / 1000,
    results,
  };
}

/** Runs the three phases and returns their figures; stops every process it started. */
export async function scaleOut(options: ScaleOutOptions): Promise<ScaleOutReport> {
  const log = options.log ?? ((l: string) => console.error(l));
  const nginxBin = findNginx();
  if (!nginxBin) throw new Error("nginx is not installed (Debian: apt-get install nginx-light)");
  const dir = options.dir ?? Deno.makeTempDirSync({ prefix: "bn-scale-out-" });
  Deno.mkdirSync(dir, { recursive: true });
  const tStart = Date.now();
  const deadline = tStart + options.timeoutS * 1000;
  const timeLeft = () => Math.max(1000, deadline - Date.now());
  let model = options.model;
  if (!model) {
    model = `${dir}/scale-out.gguf`;
    // Small enough to load in well under a second, slow enough that a stream lasts a while.
    await synthModel({
      preset: "tiny",
      dim: 512,
      layers: 4,
      heads: 8,
      kvHeads: 4,
      ffn: 1536,
      ctx: 512,
      out: model,
    });
  }
  const failTimeoutMs =
    Number(Deno.readTextFileSync(NGINX_TEMPLATE).match(/fail_timeout=(\d+)s/)?.[1] ?? 10) *
    1000;
  log(`starting ${options.replicas} replicas and nginx ...`);
  const cluster = await startCluster({
    replicas: options.replicas,
    dir,
    nginx: nginxBin,
    model,
    launcher: options.launcher,
    args: options.serverArgs,
  });
  const base = cluster.nginx.url;
  try {
    const banned = await stopTokenIds(base);
    let n = 0;
    const request = () =>
      streamChat(base, `Request ${n++}: tell me a story.`, {
        maxTokens: options.maxTokens,
        banned,
        timeoutMs: timeLeft(),
      });

    // 1. spread
    log(`phase 1: ${options.spread} streams, ${options.concurrency} at a time`);
    let t0 = Date.now();
    const peakBusy = cluster.replicas.map(() => 0);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await Promise.all(cluster.replicas.map(async (r) => {
          const busy = (await r.metrics())?.get("bn_slots_busy") ?? 0;
          peakBusy[r.index] = Math.max(peakBusy[r.index], busy);
        }));
        await sleep(20);
      }
    })();
    let left = options.spread;
    const spreadResults = await runPool(options.concurrency, () => left-- > 0 ? request : null);
    sampling = false;
    await sampler;
    const spread = figures("spread", spreadResults, cluster, t0);

    // 2. rolling restart under load
    log(`phase 2: rolling restart under load (${options.concurrency} concurrent streams)`);
    t0 = Date.now();
    let rolling = true;
    const load = runPool(options.concurrency, () => rolling && Date.now() < deadline ? request : null);
    const drainExits: (number | string)[] = [];
    try {
      for (const r of cluster.replicas) {
        await sleep(Math.min(1000, failTimeoutMs / 2));
        const code = await r.stop("SIGTERM", timeLeft());
        drainExits.push(code);
        log(`  replica ${r.index} (port ${r.port}) drained and exited with ${code}; starting it again`);
        r.start();
        await r.waitReady(timeLeft());
        // nginx skips a replica for fail_timeout after it refused or answered 503: let it come back.
        await sleep(failTimeoutMs + 500);
      }
    } finally {
      rolling = false;
    }
    const rollingFigures = figures("rolling restart", await load, cluster, t0);

    // 3. SIGKILL one replica under load
    const victim = cluster.replicas[cluster.replicas.length - 1];
    log(`phase 3: SIGKILL replica ${victim.index} under load, then ${options.killRequests} more streams`);
    t0 = Date.now();
    let killedAt = Infinity;
    let afterKill = 0;
    const open = new Map<number, number>(); // request id -> replica index, while its body streams
    let id = 0;
    const tracked = () => {
      const me = id++;
      return streamChat(base, `Request ${n++}: tell me a story.`, {
        maxTokens: options.maxTokens,
        banned,
        timeoutMs: timeLeft(),
        onHeaders: (u) => open.set(me, cluster.replicaOf(u)),
      }).finally(() => open.delete(me));
    };
    const killLoad = runPool(options.concurrency, () => {
      if (Date.now() > deadline) return null;
      if (killedAt === Infinity) return tracked;
      return afterKill++ < options.killRequests ? tracked : null;
    });
    for (let i = 0; i < 500 && Date.now() < deadline; i++) {
      const held = [...open.values()].filter((x) => x === victim.index).length;
      if (held >= 1 && i >= 10) break;
      await sleep(20);
    }
    const heldAtKill = [...open.values()].filter((x) => x === victim.index).length;
    killedAt = Date.now();
    await victim.stop("SIGKILL", 5000);
    log(`  killed replica ${victim.index} holding ${heldAtKill} stream(s)`);
    const killResults = await killLoad;
    const kill = figures("SIGKILL one replica", killResults, cluster, t0);
    const truncated = killResults.filter((r) => r.outcome === "truncated");
    const report: ScaleOutReport = {
      spread,
      rolling: rollingFigures,
      kill,
      peakBusy,
      drainExits,
      killed: {
        replica: victim.index,
        heldAtKill,
        truncatedOnKilled: truncated.filter((r) => cluster.replicaOf(r.upstream) === victim.index).length,
        truncatedOnOthers: truncated.filter((r) => cluster.replicaOf(r.upstream) !== victim.index).length,
        servedAfterKill: killResults.filter((r) =>
          r.startedMs > killedAt + 50 && cluster.replicaOf(r.upstream) === victim.index
        ).length,
      },
      nginxSite: cluster.nginx.site,
      replicaPorts: cluster.replicas.map((r) =>
        r.port
      ),
      seconds: (Date.now() - tStart) / 1000,
    };
    return report;
  } catch (e) {
    const logs = cluster.replicas.map((r) => `--- replica ${r.index}\n${r.logs(10)}`).join("\n");
    throw new Error(
      `${(e as Error).message}\n${logs}\n--- nginx error.log\n${cluster.nginx.errorLog().slice(-2000)}`,
    );
  } finally {
    await cluster.close();
    if (!options.dir) Deno.removeSync(dir, { recursive: true });
  }
}

/** The figures as a markdown table. */
export function figuresTable(report: ScaleOutReport): string {
  const rows = [report.spread, report.rolling, report.kill].map((p) => {
    const total = p.share.reduce((a, b) => a + b, 0) || 1;
    const share = p.share.map((s) => `${s} (${Math.round((100 * s) / total)}%)`).join(" / ");
    return `| ${p.name} | ${p.sent} | ${p.ok} | ${p.failed} | ${p.retried} (${p.retries}) | ${p.failovers} | ${p.truncated} | ${share} | ${
      p.seconds.toFixed(1)
    } |`;
  });
  return [
    "| phase | requests sent | completed | failed | client-retried (retries) | nginx failovers | streams truncated | per-replica share | s |",
    "|---|---|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      replicas: { type: "string" },
      concurrency: { type: "string" },
      spread: { type: "string" },
      "kill-requests": { type: "string" },
      "max-tokens": { type: "string" },
      model: { type: "string" },
      launcher: { type: "string" },
      timeout: { type: "string" },
      json: { type: "string" },
    },
  });
  const num = (v: string | undefined, d: number) => v === undefined ? d : Number(v);
  const report = await scaleOut({
    ...FULL,
    replicas: num(values.replicas, FULL.replicas),
    concurrency: num(values.concurrency, FULL.concurrency),
    spread: num(values.spread, FULL.spread),
    killRequests: num(values["kill-requests"], FULL.killRequests),
    maxTokens: num(values["max-tokens"], FULL.maxTokens),
    timeoutS: num(values.timeout, FULL.timeoutS),
    model: values.model,
    launcher: values.launcher,
  });
  const k = report.killed;
  console.log(figuresTable(report));
  console.log(
    `\nreplica ports ${report.replicaPorts.join(", ")}; peak busy slots per replica (spread): ${
      report.peakBusy.join(" / ")
    }; exit codes after SIGTERM: ${report.drainExits.join(", ")}`,
  );
  console.log(
    `SIGKILL of replica ${k.replica}: it held ${k.heldAtKill} stream(s); truncated ${k.truncatedOnKilled} of its own, ` +
      `${k.truncatedOnOthers} on others; requests it answered after the kill: ${k.servedAfterKill}`,
  );
  console.log(`total ${report.seconds.toFixed(1)} s\n\nnginx configuration used:\n${report.nginxSite}`);
  if (values.json) {
    const strip = (p: PhaseFigures) => ({ ...p, results: undefined });
    Deno.writeTextFileSync(
      values.json,
      JSON.stringify(
        { ...report, spread: strip(report.spread), rolling: strip(report.rolling), kill: strip(report.kill) },
        null,
        2,
      ),
    );
  }
}
