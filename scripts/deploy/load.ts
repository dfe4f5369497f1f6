/**
 * The scale-out test's client: streamed chat completions through the load balancer, retried on 429
 * and 503 after the `Retry-After` the answer names, each one classified as complete (a finish
 * reason and `data: [DONE]`), truncated (the stream broke or carried an error) or failed.
 *
 * @module
 */

/** What happened to one request. */
export interface StreamResult {
  readonly outcome: "ok" | "truncated" | "failed";
  /** HTTP status of the last attempt (0: no response). */
  readonly status: number;
  /** Attempts after the first (429/503 answers the client waited out). */
  readonly retries: number;
  /** `X-Upstream` of the last attempt: the replica(s) nginx tried, the last one answered. */
  readonly upstream: string | null;
  /** Content chunks received. */
  readonly chunks: number;
  readonly startedMs: number;
  readonly endedMs: number;
  readonly error?: string;
}

/** Options of {@linkcode streamChat}. */
export interface StreamOptions {
  readonly maxTokens: number;
  /** Token ids that must not be sampled (the stop tokens), so every stream runs `maxTokens` long. */
  readonly banned?: readonly number[];
  /** Most attempts after the first (default 120; the deadline bounds them too). */
  readonly maxRetries?: number;
  /** Whole-request limit in ms. */
  readonly timeoutMs?: number;
  /** Called with the response status once headers arrive (before the body). */
  readonly onHeaders?: (upstream: string | null) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One streamed chat completion against `baseUrl`, retried on 429/503 honouring `Retry-After`. */
export async function streamChat(
  baseUrl: string,
  prompt: string,
  options: StreamOptions,
): Promise<StreamResult> {
  const startedMs = Date.now();
  const deadline = startedMs + (options.timeoutMs ?? 120_000);
  const body = JSON.stringify({
    model: "any",
    messages: [{ role: "user", content: prompt }],
    max_tokens: options.maxTokens,
    temperature: 0.8,
    stream: true,
    logit_bias: Object.fromEntries((options.banned ?? []).map((id) => [String(id), -100])),
  });
  let retries = 0;
  const result = (r: Omit<StreamResult, "retries" | "startedMs" | "endedMs">): StreamResult => ({
    ...r,
    retries,
    startedMs,
    endedMs: Date.now(),
  });
  for (;;) {
    let res: Response;
    try {
      res = await fetch(`${baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body,
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
    } catch (e) {
      return result({ outcome: "failed", status: 0, upstream: null, chunks: 0, error: String(e) });
    }
    const upstream = res.headers.get("x-upstream");
    if (res.status === 429 || res.status === 503) {
      await res.body?.cancel();
      const wait = Number(res.headers.get("retry-after") ?? "1") * 1000;
      if (retries >= (options.maxRetries ?? 120) || Date.now() + wait > deadline) {
        return result({
          outcome: "failed",
          status: res.status,
          upstream,
          chunks: 0,
          error: "gave up retrying",
        });
      }
      retries++;
      await sleep(wait);
      continue;
    }
    if (res.status !== 200) {
      const text = await res.text().catch(() => "");
      return result({
        outcome: "failed",
        status: res.status,
        upstream,
        chunks: 0,
        error: text.slice(0, 200),
      });
    }
    options.onHeaders?.(upstream);
    let chunks = 0, finished = false, done = false, error: string | undefined;
    let buf = "";
    try {
      for await (const text of res.body!.pipeThrough(new TextDecoderStream())) {
        buf += text;
        const events = buf.split("\n\n");
        buf = events.pop()!;
        for (const ev of events) {
          const data = ev.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join(
            "",
          );
          if (!data) continue;
          if (data === "[DONE]") {
            done = true;
            continue;
          }
          const json = JSON.parse(data);
          if (json.error) error = `error event: ${json.error.message}`;
          const choice = json.choices?.[0];
          if (choice?.delta?.content) chunks++;
          if (choice?.finish_reason) finished = true;
        }
      }
    } catch (e) {
      error ??= `stream broke: ${(e as Error).message}`;
    }
    const ok = done && finished && !error;
    return result({
      outcome: ok ? "ok" : "truncated",
      status: 200,
      upstream,
      chunks,
      error: ok ? undefined : error ?? "no [DONE]",
    });
  }
}

/** Runs `next()`-made requests with `concurrency` workers until `next` returns null. */
export async function runPool<T>(
  concurrency: number,
  next: () => (() => Promise<T>) | null,
): Promise<T[]> {
  const out: T[] = [];
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let job = next(); job; job = next()) out.push(await job());
  }));
  return out;
}

/** The stop-token ids of the served model (`/tokenize` with special tokens parsed). */
export async function stopTokenIds(baseUrl: string): Promise<number[]> {
  const res = await fetch(`${baseUrl}/tokenize`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ content: "<|eot_id|><|end_of_text|>", parse_special: true }),
  });
  if (!res.ok) throw new Error(`/tokenize answered ${res.status}: ${await res.text()}`);
  const { tokens } = await res.json() as { tokens: number[] };
  return tokens;
}
