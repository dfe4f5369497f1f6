/**
 * Private: token string -> id lookup that hashes UTF-16 code units in place, so looking up a slice
 * of a merge string, the concatenation of its two halves, or the byte-level form of a UTF-8 buffer
 * allocates no string. The hash is polynomial (h = h*M + c mod 2^32), so the hash of A+B follows
 * from the hashes of A and B; it is mixed before indexing an open-addressing table.
 *
 * @module
 */

import { BYTE_TO_CHAR } from "./byte_unicode.ts";

const M = 0x01000193;
const BYTE_CODE = Int32Array.from(BYTE_TO_CHAR, (c) => c.charCodeAt(0));

function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Polynomial hash of `s[start, end)`. */
export function hashRange(s: string, start: number, end: number): number {
  let h = 0;
  for (let i = start; i < end; i++) h = (Math.imul(h, M) + s.charCodeAt(i)) | 0;
  return h;
}

/** Maps vocabulary strings to ids; for equal strings the later id wins (as llama.cpp). */
export class VocabIndex {
  readonly #tokens: readonly string[];
  readonly #slots: Int32Array;
  readonly #mask: number;
  readonly #pow: Int32Array;
  /** Length in UTF-16 units of the longest token. */
  readonly maxLength: number;

  constructor(tokens: readonly string[]) {
    this.#tokens = tokens;
    let cap = 16;
    while (cap < tokens.length * 2) cap *= 2;
    this.#mask = cap - 1;
    this.#slots = new Int32Array(cap).fill(-1);
    let maxLength = 0;
    for (let id = 0; id < tokens.length; id++) {
      const t = tokens[id];
      if (t.length > maxLength) maxLength = t.length;
      this.#insert(t, id);
    }
    this.maxLength = maxLength;
    this.#pow = new Int32Array(maxLength + 1);
    this.#pow[0] = 1;
    for (let i = 1; i <= maxLength; i++) this.#pow[i] = Math.imul(this.#pow[i - 1], M);
  }

  #insert(t: string, id: number): void {
    const slots = this.#slots;
    let i = mix(hashRange(t, 0, t.length)) & this.#mask;
    for (; slots[i] !== -1; i = (i + 1) & this.#mask) {
      if (this.#tokens[slots[i]] === t) break;
    }
    slots[i] = id;
  }

  /** Id of the token equal to `s[start, end)` (whole string by default), or -1; `h`: its hash if known. */
  find(s: string, start = 0, end = s.length, h = hashRange(s, start, end)): number {
    const len = end - start;
    if (len > this.maxLength) return -1;
    const slots = this.#slots;
    for (let i = mix(h) & this.#mask; slots[i] !== -1; i = (i + 1) & this.#mask) {
      const t = this.#tokens[slots[i]];
      if (t.length === len && sameRange(t, 0, s, start, len)) return slots[i];
    }
    return -1;
  }

  /** Id of the token equal to `s[a0, a1) + s[b0, b1)`, or -1. `ha`, `hb`: hashes of the two ranges. */
  findConcat(s: string, a0: number, a1: number, b0: number, b1: number, ha: number, hb: number): number {
    const la = a1 - a0, lb = b1 - b0;
    if (la + lb > this.maxLength) return -1;
    const h = (Math.imul(ha, this.#pow[lb]) + hb) | 0;
    const slots = this.#slots;
    for (let i = mix(h) & this.#mask; slots[i] !== -1; i = (i + 1) & this.#mask) {
      const t = this.#tokens[slots[i]];
      if (t.length === la + lb && sameRange(t, 0, s, a0, la) && sameRange(t, la, s, b0, lb)) return slots[i];
    }
    return -1;
  }

  /** Id of the token whose byte-level string is the GPT-2 mapping of `bytes[0, n)`, or -1. */
  findBytes(bytes: Uint8Array, n: number): number {
    if (n > this.maxLength) return -1;
    let h = 0;
    for (let i = 0; i < n; i++) h = (Math.imul(h, M) + BYTE_CODE[bytes[i]]) | 0;
    const slots = this.#slots;
    outer: for (let i = mix(h) & this.#mask; slots[i] !== -1; i = (i + 1) & this.#mask) {
      const t = this.#tokens[slots[i]];
      if (t.length !== n) continue;
      for (let k = 0; k < n; k++) if (t.charCodeAt(k) !== BYTE_CODE[bytes[k]]) continue outer;
      return slots[i];
    }
    return -1;
  }
}

function sameRange(t: string, t0: number, s: string, s0: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (t.charCodeAt(t0 + k) !== s.charCodeAt(s0 + k)) return false;
  return true;
}
