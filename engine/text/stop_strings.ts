/**
 * Stop strings over a stream of text deltas.
 *
 * The matcher emits text as soon as it cannot be part of a stop string: it holds back the longest
 * suffix of the pending text that is a prefix of some stop string, and only while it can still
 * match. When a stop string occurs, everything before it is emitted and nothing of it (or after it)
 * ever is. If several stop strings occur in the pending text, the one that starts first wins; as in
 * llama.cpp and vLLM the stream stops at the first delta that completes any stop string (a longer
 * stop that would have started earlier but is not complete yet does not delay it). Empty stop
 * strings are ignored. Deltas are expected to be complete code points (see `detokenizer.ts`); a
 * surrogate pair is never split between emitted and held text.
 *
 * @module
 */

/** Result of {@linkcode StopStringMatcher.push}. */
export interface StopResult {
  /** Text that is safe to send now. */
  emit: string;
  /** True once a stop string matched; later pushes emit nothing. */
  stopped: boolean;
}

/**
 * Finds stop strings across streamed text deltas without leaking any part of them.
 *
 * @example
 * ```ts
 * import { StopStringMatcher } from "./stop_strings.ts";
 * const m = new StopStringMatcher(["\nUser:"]);
 * m.push("Sure.\nUs"); // { emit: "Sure.", stopped: false }
 * m.push("er: hi"); // { emit: "", stopped: true }
 * ```
 */
export class StopStringMatcher {
  readonly #stops: readonly string[];
  readonly #maxLen: number;
  #pending = "";
  #stopped = false;

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
    this.#maxLen = Math.max(0, ...this.#stops.map((s) => s.length));
  }

  /** True once a stop string has matched. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Feeds one delta; returns the text that can be emitted and whether a stop string matched. */
  push(delta: string): StopResult {
    if (this.#stopped) return { emit: "", stopped: true };
    if (this.#stops.length === 0) return { emit: delta, stopped: false };
    const text = this.#pending + delta;
    let at = -1;
    for (const stop of this.#stops) {
      const i = text.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      this.#stopped = true;
      this.#pending = "";
      return { emit: text.slice(0, at), stopped: true };
    }
    const hold = this.#heldLength(text);
    this.#pending = text.slice(text.length - hold);
    return { emit: text.slice(0, text.length - hold), stopped: false };
  }

  /** Ends the stream: returns the held-back text (nothing after a stop). */
  flush(): string {
    const rest = this.#pending;
    this.#pending = "";
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of a stop string. */
  #heldLength(text: string): number {
    for (let k = Math.min(text.length, this.#maxLen - 1); k > 0; k--) {
      const start = text.length - k;
      const c = text.charCodeAt(start);
      if (c >= 0xdc00 && c <= 0xdfff) continue; // never split a surrogate pair
      for (const stop of this.#stops) {
        if (stop.length > k && stop.startsWith(text.slice(start))) return k;
      }
    }
    return 0;
  }
}
