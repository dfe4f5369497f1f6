/**
 * Byte-level BPE for the embedded model: training (most frequent adjacent pair first, counts kept
 * incrementally) and the standard encoder (LLaMA-3 pre-tokens; a pre-token that is itself a token is
 * emitted directly, otherwise the lowest-rank adjacent pair is merged until none is left).
 *
 * Tokens are stored in GPT-2's byte-level form (`Ġthe`), ids 0..255 are the 256 byte characters in
 * code point order (GPT-2 / LLaMA-3 order: `!` is 0), merges are `"A B"` strings, rank = index.
 *
 * @example
 * ```ts
 * import { BpeEncoder, countPretokens, trainBpe } from "./bpe.ts";
 * const bpe = trainBpe(countPretokens(["the cat the hat the"]), 260);
 * new BpeEncoder(bpe).encode(" the"); // one id
 * ```
 */
import { BYTE_TO_CHAR, bytesToSymbols } from "../../engine/text/byte_unicode.ts";
import { pretokenize } from "../../engine/text/pretokenize.ts";

/** A trained vocabulary: `tokens[id]` in byte-level form, `merges[rank]` as `"A B"`. */
export interface Bpe {
  readonly tokens: readonly string[];
  readonly merges: readonly string[];
}

/** The 256 byte characters in id order (sorted by code point, as in GPT-2 and LLaMA-3). */
export const BYTE_TOKENS: readonly string[] = [...BYTE_TO_CHAR].sort((a, b) =>
  a.codePointAt(0)! - b.codePointAt(0)!
);

const utf8 = new TextEncoder();

/** Counts the byte-level symbol strings of the LLaMA-3 pre-tokens of `texts`. */
export function countPretokens(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const p of pretokenize(text)) {
      const s = bytesToSymbols(utf8.encode(p));
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
  }
  return counts;
}

const pairKey = (a: number, b: number) => a * 65536 + b;

/**
 * Trains merges until the vocabulary has `vocabSize` tokens (or no pair occurs twice). The most
 * frequent pair wins; ties go to the pair with the smaller (left id, right id).
 */
export function trainBpe(counts: ReadonlyMap<string, number>, vocabSize: number): Bpe {
  if (vocabSize > 65536) throw new RangeError(`vocabSize ${vocabSize} exceeds 65536`);
  const tokens = [...BYTE_TOKENS];
  const ids = new Map(tokens.map((t, i) => [t, i]));
  const merges: string[] = [];
  // Sorted so that the result never depends on Map insertion order.
  const entries = [...counts.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const words: number[][] = entries.map(([s]) => [...s].map((c) => ids.get(c)!));
  const freq = entries.map(([, n]) => n);
  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const addPairs = (w: number, sign: number) => {
    const sym = words[w];
    for (let i = 0; i + 1 < sym.length; i++) {
      const k = pairKey(sym[i], sym[i + 1]);
      const n = (pairCount.get(k) ?? 0) + sign * freq[w];
      if (n === 0) pairCount.delete(k);
      else pairCount.set(k, n);
      if (sign > 0) {
        let set = where.get(k);
        if (set === undefined) where.set(k, set = new Set());
        set.add(w);
      }
    }
  };
  for (let w = 0; w < words.length; w++) addPairs(w, 1);

  while (tokens.length < vocabSize) {
    let best = -1;
    let bestN = 1;
    for (const [k, n] of pairCount) {
      if (n > bestN || (n === bestN && best >= 0 && k < best)) {
        best = k;
        bestN = n;
      }
    }
    if (best < 0) break; // no pair occurs twice
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const merged = tokens[a] + tokens[b];
    let c = ids.get(merged);
    if (c === undefined) {
      c = tokens.length;
      tokens.push(merged);
      ids.set(merged, c);
    }
    merges.push(`${tokens[a]} ${tokens[b]}`);
    for (const w of where.get(best) ?? []) {
      const sym = words[w];
      let has = false;
      for (let i = 0; i + 1 < sym.length; i++) if (sym[i] === a && sym[i + 1] === b) has = true;
      if (!has) continue; // stale entry
      addPairs(w, -1);
      words[w] = mergePair(sym, a, b, c);
      addPairs(w, 1);
    }
    where.delete(best);
    pairCount.delete(best);
  }
  return { tokens, merges };
}

/** Replaces every (a, b) in `sym`, left to right, by `c`. */
function mergePair(sym: readonly number[], a: number, b: number, c: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < sym.length; i++) {
    if (i + 1 < sym.length && sym[i] === a && sym[i + 1] === b) {
      out.push(c);
      i++;
    } else {
      out.push(sym[i]);
    }
  }
  return out;
}

/** Encodes text with a trained {@linkcode Bpe} (no special tokens: callers insert those ids). */
export class BpeEncoder {
  readonly #ids: Map<string, number>;
  readonly #rank = new Map<number, { rank: number; id: number }>();
  readonly #cache = new Map<string, number[]>();

  constructor(bpe: Bpe) {
    this.#ids = new Map(bpe.tokens.map((t, i) => [t, i]));
    bpe.merges.forEach((m, rank) => {
      const sp = m.indexOf(" ", 1);
      const a = this.#ids.get(m.slice(0, sp));
      const b = this.#ids.get(m.slice(sp + 1));
      const id = this.#ids.get(m.slice(0, sp) + m.slice(sp + 1));
      if (a === undefined || b === undefined || id === undefined) throw new SyntaxError(`Bad merge "${m}"`);
      const k = pairKey(a, b);
      if (!this.#rank.has(k)) this.#rank.set(k, { rank, id });
    });
  }

  /** Token ids of `text`. */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const p of pretokenize(text)) {
      const s = bytesToSymbols(utf8.encode(p));
      let ids = this.#cache.get(s);
      if (ids === undefined) {
        ids = this.#encodeWord(s);
        this.#cache.set(s, ids);
      }
      for (const id of ids) out.push(id);
    }
    return out;
  }

  #encodeWord(s: string): number[] {
    const whole = this.#ids.get(s);
    if (whole !== undefined) return [whole];
    let sym = [...s].map((ch) => this.#ids.get(ch)!);
    for (;;) {
      let best: { rank: number; id: number } | undefined;
      let at = -1;
      for (let i = 0; i + 1 < sym.length; i++) {
        const r = this.#rank.get(pairKey(sym[i], sym[i + 1]));
        if (r !== undefined && (best === undefined || r.rank < best.rank)) {
          best = r;
          at = i;
        }
      }
      if (best === undefined) return sym;
      sym = mergePair(sym, sym[at], sym[at + 1], best.id);
    }
  }
}
