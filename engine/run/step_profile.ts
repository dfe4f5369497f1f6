/**
 * The step profile: where the time of forward steps goes, part by part (kernels/prof.c times each
 * part on every worker with a clock the host also reads), plus what the host sees around the
 * kernels: the workers waking up and the host noticing the end.
 *
 * @module
 */
import { PROFILE_PARTS, PROFILE_STRIDE, type ProfilePart } from "../../wasm/loader.ts";

/** One part's time, ms per step. */
export interface PartTime {
  /** Work, mean over the threads. */
  readonly work: number;
  /** Work of the busiest thread. */
  readonly maxWork: number;
  /** Waiting in the barrier after the part, mean over the threads (load imbalance + barrier cost). */
  readonly wait: number;
}

/** Mean ms per step of the steps profiled since the last `take`. */
export interface StepProfile {
  readonly steps: number;
  readonly threads: number;
  readonly parts: Readonly<Record<ProfilePart, PartTime>>;
  /** Host posts the command -> the first worker starts the step. */
  readonly wakeMs: number;
  /** The last worker ends the step -> the host has the result (final barrier, notify, promise). */
  readonly doneMs: number;
  /** Host posts the command -> the host has the result. */
  readonly stepMs: number;
}

/** Sums profiled steps; `add` reads (and zeroes) the kernels' per-thread records. */
export class ProfileAccumulator {
  readonly #threads: number;
  readonly #work: Float64Array;
  readonly #maxWork: Float64Array;
  readonly #wait: Float64Array;
  #steps = 0;
  #wake = 0;
  #done = 0;
  #step = 0;

  constructor(threads: number) {
    this.#threads = threads;
    this.#work = new Float64Array(PROFILE_PARTS.length);
    this.#maxWork = new Float64Array(PROFILE_PARTS.length);
    this.#wait = new Float64Array(PROFILE_PARTS.length);
  }

  /** Adds one step: `rec` is the kernels' [threads][PROFILE_STRIDE] record, `submit`/`done` host clock readings. */
  add(rec: Float64Array, submit: number, done: number): void {
    const T = this.#threads;
    let first = Infinity, last = -Infinity;
    for (let p = 0; p < PROFILE_PARTS.length; p++) {
      let max = 0;
      for (let t = 0; t < T; t++) {
        const w = rec[t * PROFILE_STRIDE + 4 + 2 * p];
        this.#work[p] += w / T;
        this.#wait[p] += rec[t * PROFILE_STRIDE + 5 + 2 * p] / T;
        max = Math.max(max, w);
      }
      this.#maxWork[p] += max;
    }
    for (let t = 0; t < T; t++) {
      first = Math.min(first, rec[t * PROFILE_STRIDE]);
      last = Math.max(last, rec[t * PROFILE_STRIDE + 1]);
    }
    rec.fill(0);
    this.#steps++;
    this.#wake += first - submit;
    this.#done += done - last;
    this.#step += done - submit;
  }

  /** The mean per step since the last call, and a fresh start. */
  take(): StepProfile {
    const n = Math.max(this.#steps, 1);
    const parts = Object.fromEntries(PROFILE_PARTS.map((name, p) => [name, {
      work: this.#work[p] / n,
      maxWork: this.#maxWork[p] / n,
      wait: this.#wait[p] / n,
    }])) as Record<ProfilePart, PartTime>;
    const out: StepProfile = {
      steps: this.#steps,
      threads: this.#threads,
      parts,
      wakeMs: this.#wake / n,
      doneMs: this.#done / n,
      stepMs: this.#step / n,
    };
    this.#work.fill(0);
    this.#maxWork.fill(0);
    this.#wait.fill(0);
    this.#steps =
      this.#wake =
      this.#done =
      this.#step =
        0;
    return out;
  }
}
