/**
 * Scheduler fault scenarios over a fake runtime, run in a Worker by scheduler_faults_test.ts (so a
 * scheduler that spins fails the test instead of hanging it). Each returns plain data.
 */
import { Scheduler } from "../../../engine/run/scheduler.ts";
import { type ForwardBatch, type ModelRuntime } from "../../../engine/run/runtime.ts";
import { type GenerateRequest, Sequence } from "../../../engine/run/sequence.ts";
import { PoolBrokenError } from "../../../engine/run/thread_pool.ts";
import { Tokenizer } from "../../../engine/text/tokenizer.ts";
import { BYTE_TO_CHAR } from "../../../engine/text/byte_unicode.ts";

/** A row whose fed token is POISON gets NaN logits (a model fault on that sequence only). */
export const POISON = 250;
const V = 258;

const tokenizer = new Tokenizer({
  tokens: [...Array.from({ length: 256 }, (_, b) => BYTE_TO_CHAR[b]), "<bos>", "<eos>"],
  merges: [],
  bosId: 256,
  eosId: 257,
  addBos: false,
});

/** Logits rows from the batch alone: greedy picks 32 + (pos % 64); POISON rows are NaN. */
class FakeRuntime {
  readonly config = { nVocab: V };
  readonly sizes = { nCtx: 128, nSlots: 2, maxBatch: 16, maxOut: 4, threads: 1 };
  /** KV moves of prefix reuse: nothing to move in a fake. */
  readonly kv = { copy() {}, read: () => new Uint8Array(0), write() {} };
  steps = 0;
  /** Throws this from the given step number (1-based), once. */
  failAt: { step: number; error: Error } | null = null;

  async forward(batch: ForwardBatch, signal?: AbortSignal): Promise<Float32Array> {
    await new Promise((r) => setTimeout(r, 1)); // a step takes time, as the kernels' do
    this.steps++;
    if (this.failAt?.step === this.steps) throw this.failAt.error;
    if (signal?.aborted) throw new Error("aborted");
    const out = new Float32Array(batch.outIdx.length * V);
    for (let j = 0; j < batch.outIdx.length; j++) {
      const i = batch.outIdx[j], row = out.subarray(j * V, (j + 1) * V);
      if (batch.tokens[i] === POISON) row.fill(NaN);
      else {
        for (let t = 0; t < V; t++) row[t] = 1 + (t % 7) / 10;
        row[32 + (batch.pos[i] % 64)] = 5;
      }
    }
    return out;
  }

  async close(): Promise<void> {}
}

function setup() {
  const rt = new FakeRuntime();
  const sched = new Scheduler(rt as unknown as ModelRuntime, { maxQueue: 4, prefillChunk: 8 });
  return { rt, sched };
}

const request = (prompt: number[], extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  prompt,
  maxTokens: 20,
  sampling: { temperature: 0 },
  stopTokens: [],
  ...extra,
});

/** How one sequence ended: its tokens, finish reason or error. */
interface Outcome {
  ids: number[];
  finish?: string;
  error?: string;
  errorName?: string;
}

async function run(seq: Sequence): Promise<Outcome> {
  const ids: number[] = [];
  try {
    for await (const ev of seq.events) {
      if (ev.type === "token") ids.push(ev.id);
      if (ev.type === "done") return { ids, finish: ev.finishReason };
    }
    return { ids };
  } catch (e) {
    return { ids, error: (e as Error).message, errorName: (e as Error).name };
  }
}

/** The longest gap between 2 ms timer ticks while `work` runs: how long the event loop was blocked. */
async function lagDuring<T>(work: Promise<T>): Promise<{ value: T; maxLagMs: number }> {
  let last = performance.now(), maxLagMs = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - last);
    last = now;
  }, 2);
  try {
    return { value: await work, maxLagMs };
  } finally {
    clearInterval(tick);
  }
}

const submit = (sched: Scheduler, req: GenerateRequest) => {
  const seq = new Sequence(req, tokenizer, [257]);
  sched.submit(seq);
  return seq;
};

/** A sequence whose logits are NaN fails alone; the other one, in the same steps, finishes. */
export async function nanLogits() {
  const { sched } = setup();
  const bad = submit(sched, request([1, 2, POISON]));
  const good = submit(sched, request([1, 2, 3]));
  const { value, maxLagMs } = await lagDuring(Promise.all([run(bad), run(good)]));
  const after = await run(submit(sched, request([4, 5])));
  return { bad: value[0], good: value[1], after, maxLagMs, stats: sched.stats };
}

/** A request whose penalty makes sampling impossible fails alone with SamplingError. */
export async function samplingImpossible() {
  const { sched } = setup();
  const sampling = { temperature: 1, topP: 0.9, repetitionPenalty: 1e-300, seed: 1 };
  const bad = submit(sched, request([40, 40, 40, 40], { sampling }));
  const good = submit(sched, request([1, 2, 3]));
  const { value, maxLagMs } = await lagDuring(Promise.all([run(bad), run(good)]));
  return { bad: value[0], good: value[1], maxLagMs, stats: sched.stats };
}

/** A step that throws (the workers alive) ends its sequences; the next request runs. */
export async function stepThrows() {
  const { rt, sched } = setup();
  rt.failAt = { step: 3, error: new Error("forward step failed with kernel status 3") };
  const [a, b] = await Promise.all([
    run(submit(sched, request([1, 2]))),
    run(submit(sched, request([3, 4]))),
  ]);
  const after = await run(submit(sched, request([5, 6])));
  return { a, b, after, steps: rt.steps };
}

/** A dead worker makes the engine unavailable: running and later requests say so. */
export async function poolBroken() {
  const { rt, sched } = setup();
  rt.failAt = { step: 2, error: new PoolBrokenError("kernel worker 0 failed: out of memory") };
  const a = await run(submit(sched, request([1, 2])));
  let later = "";
  try {
    submit(sched, request([3]));
  } catch (e) {
    later = `${(e as Error).name}: ${(e as Error).message}`;
  }
  return { a, later };
}

/** The scheduler reports how long the running step has taken (the watchdog's input). */
export async function stepClock() {
  const { rt, sched } = setup();
  let release = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const forward = rt.forward.bind(rt);
  rt.forward = async (batch, signal) => {
    await gate;
    return await forward(batch, signal);
  };
  const seq = submit(sched, request([1, 2], { maxTokens: 1 }));
  await new Promise((r) => setTimeout(r, 150));
  const during = sched.stats.stepRunningSeconds;
  release();
  const outcome = await run(seq);
  return { during, after: sched.stats.stepRunningSeconds, outcome };
}
