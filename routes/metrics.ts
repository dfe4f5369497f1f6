/**
 * Prometheus metrics in the text exposition format (version 0.0.4): counters and histograms the
 * request path updates, plus gauges read from the engine when scraped. No dependency, no global:
 * each app owns one {@linkcode Metrics}.
 *
 * @module
 */
import type { ServerState } from "./state.ts";

type Labels = Readonly<Record<string, string>>;

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const fmtLabels = (l: Labels) => {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};
const num = (x: number) => Number.isFinite(x) ? String(x) : x > 0 ? "+Inf" : x < 0 ? "-Inf" : "NaN";

/** A counter family keyed by its label set. */
class Counter {
  readonly #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = fmtLabels(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.#values) lines.push(`${this.name}${k} ${num(v)}`);
    return lines.join("\n");
  }
}

/** A histogram without labels, cumulative buckets as Prometheus expects. */
class Histogram {
  readonly #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.#counts = buckets.map(() => 0);
  }

  observe(x: number): void {
    if (!Number.isFinite(x)) return;
    this.#sum += x;
    this.#count++;
    for (let i = 0; i < this.buckets.length; i++) if (x <= this.buckets[i]) this.#counts[i]++;
  }

  render(): string {
    const n = this.name;
    const lines = [`# HELP ${n} ${this.help}`, `# TYPE ${n} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${n}_bucket{le="${b}"} ${this.#counts[i]}`));
    lines.push(
      `${n}_bucket{le="+Inf"} ${this.#count}`,
      `${n}_sum ${num(this.#sum)}`,
      `${n}_count ${this.#count}`,
    );
    return lines.join("\n");
  }
}

const single = (type: "gauge" | "counter", name: string, help: string, value: number) =>
  `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${num(value)}`;
const gauge = (name: string, help: string, value: number) => single("gauge", name, help, value);

/**
 * The server's metrics.
 *
 * @example
 * ```ts ignore
 * const m = new Metrics();
 * m.requests.inc({ route: "/v1/chat/completions", status: "200" });
 * m.render(state); // "# HELP bn_http_requests_total ..."
 * ```
 */
export class Metrics {
  readonly requests = new Counter("bn_http_requests_total", "HTTP requests by route and status.");
  readonly errors = new Counter(
    "bn_errors_total",
    "Error responses (and in-stream errors) by type and code.",
  );
  readonly promptTokens = new Counter("bn_prompt_tokens_total", "Prompt tokens of finished generations.");
  readonly cachedTokens = new Counter(
    "bn_prompt_tokens_cached_total",
    "Prompt tokens reused from the KV cache.",
  );
  readonly generatedTokens = new Counter(
    "bn_generated_tokens_total",
    "Tokens generated, for finished and cancelled, timed-out or failed generations alike.",
  );
  readonly finished = new Counter(
    "bn_generations_total",
    "Generations by how they ended: stop, length, cancelled (client gone), timeout, shutdown, error.",
  );
  readonly ttft = new Histogram(
    "bn_time_to_first_token_seconds",
    "Time from submission to the first generated token.",
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  );
  readonly tokenLatency = new Histogram(
    "bn_time_per_output_token_seconds",
    "Time between consecutive generated tokens of one sequence.",
    [0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5],
  );
  readonly connectionEvents = new Counter(
    "bn_http_connection_events_total",
    "Connections closed by a timeout, refused at the connection cap, failed accepts and unreadable requests.",
  );
  /** Open connections and their cap, when a listener serves this app (main.ts sets it). */
  connections?: () => { readonly open: number; readonly maxConnections: number };
  readonly duration = new Histogram(
    "bn_request_duration_seconds",
    "Time from request to the end of the response (streams: the last chunk).",
    [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
  );

  /** The exposition text; gauges come from the state and engine now. */
  render(state: ServerState): string {
    const s = state.engine?.stats();
    const conns = this.connections?.();
    return [
      this.requests.render(),
      this.errors.render(),
      this.promptTokens.render(),
      this.cachedTokens.render(),
      this.generatedTokens.render(),
      this.finished.render(),
      this.ttft.render(),
      this.tokenLatency.render(),
      this.duration.render(),
      this.connectionEvents.render(),
      ...(conns
        ? [
          gauge("bn_http_connections_open", "Open client connections.", conns.open),
          gauge(
            "bn_http_connections_max",
            "Most open connections before new ones get 503.",
            conns.maxConnections,
          ),
        ]
        : []),
      gauge("bn_ready", "1 when the server takes requests.", state.phase === "ready" ? 1 : 0),
      gauge("bn_queue_depth", "Requests waiting for a slot.", s?.queued ?? 0),
      gauge("bn_queue_capacity", "Most requests that may wait for a slot.", s?.maxQueue ?? 0),
      gauge("bn_slots", "Sequence slots (concurrent generations).", s?.slots ?? 0),
      gauge("bn_slots_busy", "Slots holding a running generation.", s?.busySlots ?? 0),
      gauge("bn_requests_inflight", "Generation requests in flight.", state.inflight),
      gauge(
        "bn_engine_step_running_seconds",
        "Seconds the forward step now running has taken (0 between steps; the watchdog's input).",
        s?.stepRunningSeconds ?? 0,
      ),
      gauge("bn_healthy", "0 while the watchdog reports a stuck forward step.", state.problem ? 0 : 1),
      single("counter", "bn_engine_steps_total", "Forward steps (batches) run.", s?.steps ?? 0),
      single(
        "counter",
        "bn_engine_step_seconds_total",
        "Seconds spent in forward steps.",
        s?.stepSeconds ?? 0,
      ),
      gauge("bn_prompt_cache_bytes", "Bytes of prompt KV kept in host memory.", s?.promptCache?.bytes ?? 0),
      gauge(
        "bn_prompt_cache_capacity_bytes",
        "Most bytes of prompt KV kept in host memory (--cache-mem).",
        s?.promptCache?.capacityBytes ?? 0,
      ),
      single(
        "counter",
        "bn_prompt_cache_restored_tokens_total",
        "Prompt positions restored from the host-memory prompt cache.",
        s?.promptCache?.hitTokens ?? 0,
      ),
    ].join("\n") + "\n";
  }
}
