/**
 * Private core of the byte-level BPE tokenizer: the merge table and the merge loop.
 *
 * The merge table is an open-addressing hash from a pair of token ids to the merge's rank (its index
 * in the merge list); the result of a merge is `mergeResult[rank]`. The merge loop applies, until
 * none is left, the valid merge with the lowest rank, leftmost first, which is what Hugging Face
 * `tokenizers` (`Word::merge_all`) and llama.cpp (`llm_tokenizer_bpe_session`) do. It runs in
 * O(n log n) with a binary heap over (rank, position) so that pathological pieces (a 100 kB word)
 * stay fast.
 *
 * @module
 */

const EMPTY = -1;

/** Pair -> rank lookup built once from a merge list. */
export class MergeTable {
  /** Per slot: left id, right id, rank; left = -1 marks an empty slot. */
  readonly #slots: Int32Array;
  readonly #mask: number;
  /** Token id produced by the merge of each rank. */
  readonly mergeResult: Int32Array;
  readonly mergeLeft: Int32Array;
  readonly mergeRight: Int32Array;
  /** Number of merges kept (duplicates of an earlier pair are dropped, as llama.cpp does). */
  readonly size: number;

  constructor(left: Int32Array, right: Int32Array, result: Int32Array) {
    const n = left.length;
    let cap = 16;
    while (cap < n * 2) cap *= 2;
    this.#mask = cap - 1;
    this.#slots = new Int32Array(cap * 3).fill(EMPTY);
    this.mergeLeft = left;
    this.mergeRight = right;
    this.mergeResult = result;
    let kept = 0;
    for (let rank = 0; rank < n; rank++) {
      if (this.#insert(left[rank], right[rank], rank)) kept++;
    }
    this.size = kept;
  }

  #insert(a: number, b: number, rank: number): boolean {
    const slots = this.#slots;
    let i = hashPair(a, b) & this.#mask;
    while (slots[i * 3] !== EMPTY) {
      if (slots[i * 3] === a && slots[i * 3 + 1] === b) return false; // keep the first (lowest) rank
      i = (i + 1) & this.#mask;
    }
    slots[i * 3] = a;
    slots[i * 3 + 1] = b;
    slots[i * 3 + 2] = rank;
    return true;
  }

  /** Rank of merging `a` then `b`, or -1 when the pair does not merge. */
  rank(a: number, b: number): number {
    const slots = this.#slots;
    let i = hashPair(a, b) & this.#mask;
    for (;;) {
      const s = slots[i * 3];
      if (s === EMPTY) return -1;
      if (s === a && slots[i * 3 + 1] === b) return slots[i * 3 + 2];
      i = (i + 1) & this.#mask;
    }
  }
}

function hashPair(a: number, b: number): number {
  let h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return h ^ (h >>> 13);
}

/** Pieces longer than this many symbols are refused (the heap key packs the position in 26 bits). */
export const MAX_PIECE_SYMBOLS = 1 << 26;
const POS_SCALE = 2 ** 26;

/** Reusable scratch buffers for {@linkcode bpeMerge}; grows on demand. */
export class BpeScratch {
  ids = new Int32Array(256);
  prev = new Int32Array(256);
  next = new Int32Array(256);
  heap = new Float64Array(512);

  ensure(n: number): void {
    if (this.ids.length >= n) return;
    let cap = this.ids.length;
    while (cap < n) cap *= 2;
    this.ids = new Int32Array(cap);
    this.prev = new Int32Array(cap);
    this.next = new Int32Array(cap);
    this.heap = new Float64Array(cap * 2);
  }
}

/**
 * Merges the symbols `scratch.ids[0..n)` in place and appends the resulting token ids to `out`.
 * Heap keys are `rank * 2^26 + position`, so popping the minimum gives the lowest rank, leftmost.
 */
export function bpeMerge(table: MergeTable, scratch: BpeScratch, n: number, out: number[]): void {
  const { ids, prev, next } = scratch;
  if (n === 1) {
    out.push(ids[0]);
    return;
  }
  if (n > MAX_PIECE_SYMBOLS) {
    throw new RangeError(`Cannot tokenize a piece of ${n} bytes: the limit is ${MAX_PIECE_SYMBOLS}`);
  }
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  let heap = scratch.heap;
  let size = 0;
  const push = (key: number) => {
    if (size === heap.length) {
      const grown = new Float64Array(heap.length * 2);
      grown.set(heap);
      heap = scratch.heap = grown;
    }
    let i = size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p] <= key) break;
      heap[i] = heap[p];
      i = p;
    }
    heap[i] = key;
  };
  const pop = (): number => {
    const top = heap[0];
    const last = heap[--size];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= size) break;
      if (c + 1 < size && heap[c + 1] < heap[c]) c++;
      if (heap[c] >= last) break;
      heap[i] = heap[c];
      i = c;
    }
    heap[i] = last;
    return top;
  };
  const consider = (pos: number) => {
    const r = table.rank(ids[pos], ids[next[pos]]);
    if (r >= 0) push(r * POS_SCALE + pos);
  };
  for (let i = 0; i + 1 < n; i++) consider(i);

  const { mergeLeft, mergeRight, mergeResult } = table;
  while (size > 0) {
    const key = pop();
    const rank = Math.floor(key / POS_SCALE);
    const pos = key - rank * POS_SCALE;
    const right = next[pos];
    // Stale entries: the left symbol was merged away (ids[pos] = -1), or either side changed.
    if (right < 0 || ids[pos] !== mergeLeft[rank] || ids[right] !== mergeRight[rank]) continue;
    ids[pos] = mergeResult[rank];
    ids[right] = -1;
    const after = next[right];
    next[pos] = after;
    next[right] = -1;
    if (after >= 0) prev[after] = pos;
    if (prev[pos] >= 0) consider(prev[pos]);
    if (after >= 0) consider(pos);
  }
  for (let i = 0; i >= 0; i = next[i]) out.push(ids[i]);
}
