/**
 * Token sampling from a logits row, and OpenAI-style log-probabilities.
 *
 * Order (each step sees the result of the previous one):
 * logit bias and bans -> penalties -> grammar mask -> temperature -> top-k -> typical-p -> top-p -> min-p -> draw.
 *
 * - Logit bias is added; a bias of -100 or less bans the token (OpenAI: "-100 should result in a
 *   ban"), i.e. sets it to -Infinity.
 * - Repetition penalty as llama.cpp over the distinct tokens of the last `penaltyLastN` history
 *   tokens: positive logits are divided by it, others multiplied. Presence / frequency as OpenAI:
 *   `logit -= frequencyPenalty * count + presencePenalty * (count > 0)` over the same window.
 * - Tokens banned for one step (`sample()`'s `banned`: end-of-turn before `min_tokens`) get
 *   -Infinity like a -100 bias.
 * - A grammar mask (bit `i` of word `i >> 5` set: token `i` allowed, XGrammar's layout) sets every
 *   disallowed token to -Infinity, for every sampler including greedy; all-ones words are skipped.
 * - Temperature <= 1e-6 is greedy: argmax, ties to the lowest id (no random number is drawn).
 * - typical-p (llama.cpp's `typical_p`) keeps the tokens whose surprisal is closest to the entropy
 *   until their mass reaches p ({@linkcode typicalFilter}); min-p then compares with the most
 *   likely token it kept.
 * - top-k keeps the k largest, top-p the smallest prefix (by probability) whose mass reaches p
 *   (p = 0 keeps only the most likely token), min-p the tokens with p >= minP * p_max; ties are
 *   ordered by id. Nothing sorts the vocabulary: top-k is a bounded heap (then only its k
 *   survivors are sorted); top-p without top-k finds its cut with a histogram of the scaled logits
 *   and sorts only the histogram bucket the cut falls in.
 * - No finite candidate is an error, never a guess: every token banned (refused when the sampler is
 *   built, if it knows the vocabulary size), or a penalty or bias that pushes a logit to +Infinity,
 *   throws a {@linkcode SamplingError} naming the parameter.
 * - The draw uses xoshiro128** seeded by splitmix32 from the request seed, and a uniform double from
 *   53 random bits, so the same seed and logits give the same token on every machine that runs the
 *   same V8 (`Math.exp` is V8's own fdlibm port, not the C library's).
 *
 * @module
 */
import { SamplingError } from "./errors.ts";

import { typicalFilter, TypicalScratch } from "./_typical.ts";

/** Sampling settings of one request. */
export interface SamplingParams {
  /** 0 (or <= 1e-6) is greedy. */
  temperature: number;
  /** <= 0 or >= vocabulary size: off. */
  topK: number;
  /** >= 1: off. */
  topP: number;
  /** <= 0: off. */
  minP: number;
  /** Locally typical sampling mass; >= 1: off. */
  typicalP: number;
  /** 1: off. */
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** History window of the penalties: 0 off, -1 the whole history. */
  penaltyLastN: number;
  /** Token id -> bias added to its logit (OpenAI `logit_bias`; JSON keys are strings). */
  logitBias?: ReadonlyMap<number, number> | Readonly<Record<string, number>>;
  /** PRNG seed; absent: a random one per sampler (see {@linkcode Sampler.seed}). */
  seed?: number;
}

/** Defaults: OpenAI's (temperature 1, no truncation), llama.cpp's penalty window of 64. */
export const DEFAULT_SAMPLING_PARAMS: Readonly<SamplingParams> = Object.freeze({
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  typicalP: 1,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  penaltyLastN: 64,
});

const GREEDY_T = 1e-6;
const BAN = -100;
const BUCKETS_PER_NAT = 64;
const BUCKETS = 4096; // the last bucket holds everything more than 64 nats below the max

/** Histogram bucket of logit `x` at scaled distance `(m - x) * scale` from the max `m`. */
function bucketOf(m: number, x: number, scale: number): number {
  const d = (m - x) * scale;
  return d < BUCKETS - 1 ? d | 0 : BUCKETS - 1;
}

function lastPositive(e: Float64Array, len: number): number {
  for (let j = len - 1; j > 0; j--) if (e[j] > 0) return j;
  return 0;
}

/**
 * Samples token ids from logits; one instance per request (it owns the PRNG stream).
 *
 * @example
 * ```ts
 * import { Sampler } from "./sampler.ts";
 * const s = new Sampler({ temperature: 0.8, topP: 0.95, seed: 42 });
 * const logits = new Float32Array([0.1, 2.5, -1, 2.4]);
 * const id = s.sample(logits, [1, 3]); // same id for seed 42 on every run
 * ```
 */
export class Sampler {
  readonly params: Readonly<SamplingParams>;
  /** The seed in use (drawn with `crypto.getRandomValues` when none was given). */
  readonly seed: number;
  /** Milliseconds spent applying grammar masks (see {@linkcode applyMask}). */
  maskMs = 0;
  readonly #rng: Xoshiro128;
  readonly #biasIds: Int32Array;
  readonly #biasValues: Float64Array;
  #work = new Float32Array(0);
  #weights = new Float64Array(0);
  #ids = new Int32Array(0);
  #heap = new Int32Array(0);
  #mass = new Float64Array(BUCKETS);
  #typicalScratch = new TypicalScratch();

  constructor(params: Partial<SamplingParams> = {}, vocabSize?: number) {
    const p = { ...DEFAULT_SAMPLING_PARAMS, ...stripUndefined(params) };
    check(p.temperature >= 0 && p.temperature < Infinity, "temperature", p.temperature, "finite and >= 0");
    check(Number.isInteger(p.topK), "topK", p.topK, "an integer");
    check(p.topP >= 0 && p.topP <= 1, "topP", p.topP, "in [0, 1]");
    check(p.minP >= 0 && p.minP <= 1, "minP", p.minP, "in [0, 1]");
    check(p.typicalP > 0 && p.typicalP <= 1, "typicalP", p.typicalP, "in (0, 1]");
    check(
      p.repetitionPenalty > 0 && p.repetitionPenalty < Infinity,
      "repetitionPenalty",
      p.repetitionPenalty,
      "> 0",
    );
    check(Number.isFinite(p.presencePenalty), "presencePenalty", p.presencePenalty, "finite");
    check(Number.isFinite(p.frequencyPenalty), "frequencyPenalty", p.frequencyPenalty, "finite");
    check(Number.isInteger(p.penaltyLastN) && p.penaltyLastN >= -1, "penaltyLastN", p.penaltyLastN, ">= -1");
    const entries = p.logitBias instanceof Map ? [...p.logitBias] : Object.entries(p.logitBias ?? {});
    this.#biasIds = new Int32Array(entries.length);
    this.#biasValues = new Float64Array(entries.length);
    entries.forEach(([key, bias], i) => {
      const id = Number(key);
      const max = vocabSize ?? 2 ** 31;
      check(Number.isInteger(id) && id >= 0 && id < max, "logitBias", key, `a token id in [0, ${max})`);
      const ok = typeof bias === "number" && (Number.isFinite(bias) || bias === -Infinity);
      check(ok, `logitBias[${key}]`, bias, "a finite number or -Infinity");
      this.#biasIds[i] = id;
      this.#biasValues[i] = bias;
    });
    if (vocabSize !== undefined) {
      const banned = new Set<number>();
      for (let i = 0; i < entries.length; i++) if (this.#biasValues[i] <= BAN) banned.add(this.#biasIds[i]);
      if (banned.size >= vocabSize) {
        throw new SamplingError(
          `Cannot sample: logitBias bans every token of the vocabulary (${vocabSize} tokens)`,
          "logitBias",
        );
      }
    }
    if (p.seed === undefined) p.seed = crypto.getRandomValues(new Uint32Array(1))[0];
    check(Number.isSafeInteger(p.seed), "seed", p.seed, "a safe integer");
    this.seed = p.seed;
    this.params = Object.freeze(p);
    this.#rng = new Xoshiro128(p.seed);
  }

  /**
   * Picks the next token. `logits` is not modified; `history` holds the previous tokens (prompt
   * and/or generated, the caller decides) for the penalties; `banned` tokens cannot be picked; `mask`
   * is a grammar's allowed-token bitmask (at least `ceil(logits.length / 32)` words).
   */
  sample(
    logits: Float32Array,
    history: ArrayLike<number> = [],
    banned: readonly number[] = [],
    mask?: Int32Array,
  ): number {
    const n = logits.length;
    if (n === 0) throw new RangeError("Cannot sample from an empty logits row");
    const w = this.#prepare(logits, history);
    for (const id of banned) if (id >= 0 && id < n) w[id] = -Infinity;
    if (mask) {
      const t0 = performance.now();
      applyMask(w, mask);
      this.maskMs += performance.now() - t0;
    }
    let best = -1, m = -Infinity, nan = false;
    for (let i = 0; i < n; i++) {
      const x = w[i];
      if (x > m) {
        m = x;
        best = i;
      } else if (x !== x) nan = true;
    }
    if (nan) { for (let i = 0; i < n; i++) if (w[i] !== w[i]) w[i] = -Infinity; }
    if (best < 0) {
      throw new SamplingError(
        "Cannot sample: every token is banned or has a -Infinity/NaN logit",
        logits.some((x) => x > -Infinity) ? "logitBias" : null,
      );
    }
    if (m === Infinity) throw this.#infinite(logits, best);
    const { temperature: t, topK, minP } = this.params;
    if (t <= GREEDY_T) return best;

    const invT = 1 / t;
    const floor = minP > 0 ? m + t * Math.log(minP) : -Infinity; // min-p as a logit threshold
    if (topK > 0 && topK < n) return this.#sampleTopK(w, topK, m, invT, floor);
    return this.#sampleAll(w, m, invT, floor);
  }

  /** The error for a +Infinity logit after bias and penalties: which parameter put it there. */
  #infinite(logits: Float32Array, id: number): SamplingError {
    if (logits[id] === Infinity) return new SamplingError(`Cannot sample: token ${id} has a +Infinity logit`);
    const p = this.params;
    const [param, value] = p.repetitionPenalty !== 1
      ? ["repetitionPenalty", p.repetitionPenalty]
      : p.frequencyPenalty !== 0
      ? ["frequencyPenalty", p.frequencyPenalty]
      : p.presencePenalty !== 0
      ? ["presencePenalty", p.presencePenalty]
      : ["logitBias", `+${this.#biasValues[this.#biasIds.indexOf(id)]} on token ${id}`];
    return new SamplingError(
      `Cannot sample: ${param} ${value} pushes the logit of token ${id} (${
        logits[id].toPrecision(6)
      }) beyond the ` +
        "float range (+Infinity)",
      param,
    );
  }

  /** top-k by a bounded heap, then top-p and min-p as prefix cuts of the sorted survivors. */
  #sampleTopK(w: Float32Array, k: number, m: number, invT: number, floor: number): number {
    if (this.#heap.length < k) this.#heap = new Int32Array(k);
    const ids = topIds(w, k, this.#heap);
    const e = this.#weightsFor(k);
    let z = 0;
    for (let j = 0; j < k; j++) z += e[j] = Math.exp((w[ids[j]] - m) * invT);
    [z, floor] = this.#typical(e, k, z, m, invT, floor);
    let keep = k;
    if (this.params.topP < 1) {
      const target = this.params.topP * z;
      let cum = 0;
      for (keep = 0; keep < k;) {
        cum += e[keep++];
        if (cum >= target) break;
      }
    }
    while (keep > 1 && w[ids[keep - 1]] < floor) keep--;
    let total = 0;
    for (let j = 0; j < keep; j++) total += e[j];
    let r = this.#rng.nextDouble() * total;
    for (let j = 0; j < keep; j++) {
      r -= e[j];
      if (r < 0) return ids[j];
    }
    return ids[lastPositive(e, keep)];
  }

  /**
   * Whole vocabulary: one exp pass for the weights and their sum; top-p finds its cut with a
   * histogram of the scaled logit distance to the max (buckets 1/64 wide) and sorts only the bucket
   * the cut falls in. Draw order: survivors above that bucket by id, then that bucket sorted.
   */
  #sampleAll(w: Float32Array, m: number, invT: number, floor: number): number {
    const n = w.length;
    const e = this.#weightsFor(n);
    let z = 0;
    for (let i = 0; i < n; i++) z += e[i] = Math.exp((w[i] - m) * invT);
    [z, floor] = this.#typical(e, n, z, m, invT, floor);
    const topP = this.params.topP;
    if (topP >= 1) {
      let total = 0;
      for (let i = 0; i < n; i++) if (w[i] >= floor) total += e[i];
      let r = this.#rng.nextDouble() * total, last = -1;
      for (let i = 0; i < n; i++) {
        if (!(w[i] >= floor) || e[i] === 0) continue;
        last = i;
        r -= e[i];
        if (r < 0) return i;
      }
      return last;
    }
    const mass = this.#mass.fill(0);
    const scale = invT * BUCKETS_PER_NAT;
    for (let i = 0; i < n; i++) if (e[i] > 0) mass[bucketOf(m, w[i], scale)] += e[i];
    const target = topP * z;
    let cut = BUCKETS - 1, cum = 0;
    for (let b = 0; b < BUCKETS; b++) {
      if (cum + mass[b] >= target) {
        cut = b;
        break;
      }
      cum += mass[b];
    }
    if (this.#ids.length < n) this.#ids = new Int32Array(n);
    const ids = this.#ids;
    let above = 0, edge = n; // ids[0, above): buckets before the cut; ids[edge, n): the cut's bucket
    for (let i = 0; i < n; i++) {
      if (!(e[i] > 0)) continue;
      const b = bucketOf(m, w[i], scale);
      if (b < cut) {
        if (w[i] >= floor) ids[above++] = i;
      } else if (b === cut) ids[--edge] = i;
    }
    const boundary = ids.subarray(edge, n).sort((a, b) => w[b] - w[a] || a - b);
    let len = above;
    for (let j = 0; j < boundary.length && w[boundary[j]] >= floor; j++) {
      ids[len++] = boundary[j]; // never overlaps: len <= above + j < edge + j
      cum += e[boundary[j]];
      if (cum >= target) break;
    }
    let total = 0;
    for (let j = 0; j < len; j++) total += e[ids[j]];
    let r = this.#rng.nextDouble() * total;
    for (let j = 0; j < len; j++) {
      r -= e[ids[j]];
      if (r < 0) return ids[j];
    }
    return ids[len - 1];
  }

  /**
   * typical-p over the weights `e[0, len)` (in place); returns the kept sum and the min-p floor
   * (a logit) moved to the most likely kept token.
   */
  #typical(
    e: Float64Array,
    len: number,
    z: number,
    m: number,
    invT: number,
    floor: number,
  ): [number, number] {
    const { typicalP, minP } = this.params;
    if (typicalP >= 1) return [z, floor];
    const kept = typicalFilter(e, len, z, typicalP, this.#typicalScratch);
    return [kept.z, minP > 0 ? m + (Math.log(kept.max) + Math.log(minP)) / invT : floor];
  }

  #weightsFor(n: number): Float64Array {
    if (this.#weights.length < n) this.#weights = new Float64Array(n);
    return this.#weights;
  }

  /** Copies the logits and applies logit bias and penalties. */
  #prepare(logits: Float32Array, history: ArrayLike<number>): Float32Array {
    const n = logits.length;
    if (this.#work.length !== n) this.#work = new Float32Array(n);
    const w = this.#work;
    w.set(logits);
    for (let i = 0; i < this.#biasIds.length; i++) {
      const id = this.#biasIds[i];
      if (id >= n) throw new RangeError(`Cannot apply logitBias: token id ${id} is out of range [0, ${n})`);
      w[id] = this.#biasValues[i] <= BAN ? -Infinity : w[id] + this.#biasValues[i];
    }
    const { repetitionPenalty: rep, presencePenalty: pres, frequencyPenalty: freq, penaltyLastN } =
      this.params;
    if (penaltyLastN === 0 || (rep === 1 && pres === 0 && freq === 0) || history.length === 0) return w;
    const counts = new Map<number, number>();
    const from = penaltyLastN < 0 ? 0 : Math.max(0, history.length - penaltyLastN);
    for (let i = from; i < history.length; i++) counts.set(history[i], (counts.get(history[i]) ?? 0) + 1);
    for (const [id, count] of counts) {
      if (!(id >= 0 && id < n)) continue;
      let x = w[id];
      if (rep !== 1) x = x <= 0 ? x * rep : x / rep;
      w[id] = x - freq * count - pres;
    }
    return w;
  }
}

/**
 * Sets `w[i]` to -Infinity for every token whose bit in `mask` is clear (bit `i & 31` of word
 * `i >> 5`); words of all ones are skipped, all-zero words cleared with one fill.
 *
 * @example
 * ```ts
 * import { applyMask } from "./sampler.ts";
 * const w = new Float32Array([1, 2, 3]);
 * applyMask(w, new Int32Array([0b101]));
 * // w = [1, -Infinity, 3]
 * ```
 */
export function applyMask(w: Float32Array, mask: Int32Array): void {
  const n = w.length, words = (n + 31) >> 5;
  if (mask.length < words) {
    throw new RangeError(`Cannot apply a grammar mask of ${mask.length} words to ${n} logits`);
  }
  for (let k = 0; k < words; k++) {
    const bits = mask[k];
    if (bits === -1) continue;
    const base = k << 5, end = Math.min(base + 32, n);
    if (bits === 0) {
      w.fill(-Infinity, base, end);
      continue;
    }
    for (let i = base; i < end; i++) if (((bits >>> (i - base)) & 1) === 0) w[i] = -Infinity;
  }
}

/** Log-probability of one token, as in OpenAI's `logprobs`. */
export interface TokenLogprob {
  id: number;
  logprob: number;
}

/**
 * Log-softmax of the raw logits: the log-probability of `tokenId` and the `topN` most likely tokens
 * (best first, ties by id). Stable for any finite logits; -Infinity logits give -Infinity.
 *
 * @example
 * ```ts
 * import { logprobs } from "./sampler.ts";
 * const r = logprobs(new Float32Array([0, Math.log(3)]), 1, 2);
 * // r.logprob ≈ Math.log(0.75); r.top = [{ id: 1, logprob: ≈ -0.288 }, { id: 0, logprob: ≈ -1.386 }]
 * ```
 */
export function logprobs(
  logits: Float32Array,
  tokenId: number,
  topN = 0,
): { logprob: number; top: TokenLogprob[] } {
  const n = logits.length;
  if (!(Number.isInteger(tokenId) && tokenId >= 0 && tokenId < n)) {
    throw new RangeError(`Cannot compute logprobs: token id ${tokenId} is out of range [0, ${n})`);
  }
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > m) m = logits[i];
  if (m === -Infinity) throw new RangeError("Cannot compute logprobs: every logit is -Infinity or NaN");
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = logits[i];
    if (x === x) sum += Math.exp(x - m);
  }
  const lse = m + Math.log(sum);
  const lp = (id: number) => (logits[id] === logits[id] ? logits[id] - lse : -Infinity);
  const k = Math.max(0, Math.min(Math.floor(topN), n));
  const top = k === 0
    ? []
    : Array.from(topIds(logits, k, new Int32Array(k)), (id) => ({ id, logprob: lp(id) }));
  return { logprob: lp(tokenId), top };
}

/**
 * Selects the k best ids of `w` (value desc, id asc; NaN is worst) with a min-heap in `heap`
 * (length >= k) and returns them sorted best first (a new array). Most ids are rejected by one
 * comparison with the heap's worst entry.
 */
function topIds(w: Float32Array, k: number, heap: Int32Array): Int32Array {
  // worse(a, b): a ranks below b.
  const worse = (a: number, b: number) => {
    const x = w[a], y = w[b];
    return x < y || (x === y && a > b) || (x !== x && (y === y || a > b));
  };
  const siftDown = (i: number, size: number) => {
    const v = heap[i];
    for (;;) {
      let c = 2 * i + 1;
      if (c >= size) break;
      if (c + 1 < size && worse(heap[c + 1], heap[c])) c++;
      if (!worse(heap[c], v)) break;
      heap[i] = heap[c];
      i = c;
    }
    heap[i] = v;
  };
  for (let j = 0; j < k; j++) heap[j] = j;
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(i, k);
  let worst = w[heap[0]];
  for (let id = k; id < w.length; id++) {
    const x = w[id];
    // ids ascend, so an equal value never beats the heap's worst; NaN fails the comparison
    if (x > worst || (worst !== worst && x === x)) {
      heap[0] = id;
      siftDown(0, k);
      worst = w[heap[0]];
    }
  }
  const out = new Int32Array(k);
  for (let size = k; size > 0; size--) {
    out[size - 1] = heap[0];
    heap[0] = heap[size - 1];
    siftDown(0, size - 1);
  }
  return out;
}

/** xoshiro128** (Blackman & Vigna), state from splitmix32 of the seed's two 32-bit halves. */
class Xoshiro128 {
  #s = new Uint32Array(4);

  constructor(seed: number) {
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 4294967296) >>> 0;
    let x = lo ^ Math.imul(hi, 0x9e3779b9);
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) | 0;
      let z = x ^ (i === 2 ? hi : 0);
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.#s[i] = z ^ (z >>> 16);
    }
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  next(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextDouble(): number {
    return ((this.next() >>> 5) * 67108864 + (this.next() >>> 6)) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function check(ok: boolean, name: string, value: unknown, expected: string): void {
  if (!ok) throw new RangeError(`Invalid sampling parameter ${name}: ${String(value)}, expected ${expected}`);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
