/**
 * Host-side access to the KV cache in the shared WebAssembly memory: read a slot's positions out
 * (to keep them in host memory), write them back, or copy them from one slot to another. The
 * cache is f16, `[n_layers][n_slots][n_kv_heads][n_ctx][head_dim]` for K and the same for V
 * (kernels/bn.h), so one (layer, slot, head) holds a contiguous run of positions.
 *
 * A saved range is laid out `[n_layers][K, V][n_kv_heads][positions][head_dim]` f16: the KV of a
 * position depends only on the tokens up to it, so bytes saved from one slot and written at the
 * same positions of any slot give bit-identical attention to recomputing them.
 *
 * Call these only between forward steps (the workers must not be running): the scheduler does.
 *
 * @module
 */
import type { Region } from "../model/memory_plan.ts";

/** The dimensions the layout needs. */
export interface KvShape {
  readonly nLayers: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly nSlots: number;
  readonly nCtx: number;
}

/**
 * Reads, writes and copies position ranges of KV slots.
 *
 * @example
 * ```ts ignore
 * const saved = runtime.kv.read(0, 0, 96);  // slot 0, positions [0, 96)
 * runtime.kv.write(1, 0, saved, 96);        // the same positions of slot 1
 * runtime.kv.copy(0, 1, 96, 128);           // positions [96, 128) from slot 0 to slot 1
 * ```
 */
export class SlotKv {
  /** Bytes one position takes in every layer, K and V. */
  readonly bytesPerToken: number;
  readonly #memory: WebAssembly.Memory;
  readonly #k: number;
  readonly #v: number;
  readonly #shape: KvShape;
  /** Bytes of one position of one head. */
  readonly #row: number;

  constructor(memory: WebAssembly.Memory, cache: { kCache: Region; vCache: Region }, shape: KvShape) {
    this.#memory = memory;
    this.#k = cache.kCache.offset;
    this.#v = cache.vCache.offset;
    this.#shape = shape;
    this.#row = shape.headDim * 2;
    this.bytesPerToken = 2 * shape.nLayers * shape.nKvHeads * this.#row;
  }

  /** Byte address of `pos` in the run of (layer, slot, head) of the K (0) or V (1) cache. */
  #at(kv: number, layer: number, slot: number, head: number, pos: number): number {
    const s = this.#shape;
    const run = ((layer * s.nSlots + slot) * s.nKvHeads + head) * s.nCtx + pos;
    return (kv ? this.#v : this.#k) + run * this.#row;
  }

  #check(slot: number, from: number, to: number): void {
    const { nSlots, nCtx } = this.#shape;
    if (!(Number.isInteger(slot) && slot >= 0 && slot < nSlots)) {
      throw new RangeError(`KV slot ${slot} outside 0..${nSlots - 1}`);
    }
    if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from <= to && to <= nCtx)) {
      throw new RangeError(`KV positions [${from}, ${to}) outside [0, ${nCtx})`);
    }
  }

  /** Positions [from, to) of `slot`, in the saved layout (module doc). */
  read(slot: number, from: number, to: number): Uint8Array {
    this.#check(slot, from, to);
    const n = to - from, len = n * this.#row;
    const out = new Uint8Array(n * this.bytesPerToken);
    const mem = new Uint8Array(this.#memory.buffer);
    let o = 0;
    for (let l = 0; l < this.#shape.nLayers; l++) {
      for (let kv = 0; kv < 2; kv++) {
        for (let h = 0; h < this.#shape.nKvHeads; h++) {
          const a = this.#at(kv, l, slot, h, from);
          out.set(mem.subarray(a, a + len), o);
          o += len;
        }
      }
    }
    return out;
  }

  /**
   * Writes saved positions back: `data` holds `n` positions starting at position `at` (as
   * {@linkcode SlotKv.read} returned them); positions `[at + first, at + first + count)` of
   * `slot` are written.
   */
  write(slot: number, at: number, data: Uint8Array, n: number, first = 0, count = n - first): void {
    this.#check(slot, at + first, at + first + count);
    if (data.length !== n * this.bytesPerToken) {
      throw new RangeError(`KV data of ${data.length} bytes does not hold ${n} positions`);
    }
    if (first < 0 || first + count > n) {
      throw new RangeError(`KV write [${first}, ${first + count}) outside [0, ${n})`);
    }
    const mem = new Uint8Array(this.#memory.buffer);
    const run = n * this.#row, skip = first * this.#row, len = count * this.#row;
    let o = 0;
    for (let l = 0; l < this.#shape.nLayers; l++) {
      for (let kv = 0; kv < 2; kv++) {
        for (let h = 0; h < this.#shape.nKvHeads; h++) {
          mem.set(data.subarray(o + skip, o + skip + len), this.#at(kv, l, slot, h, at + first));
          o += run;
        }
      }
    }
  }

  /** Copies positions [from, to) of slot `src` to the same positions of slot `dst`. */
  copy(src: number, dst: number, from: number, to: number): void {
    this.#check(src, from, to);
    this.#check(dst, from, to);
    if (src === dst || from === to) return;
    const mem = new Uint8Array(this.#memory.buffer);
    const len = (to - from) * this.#row;
    for (let l = 0; l < this.#shape.nLayers; l++) {
      for (let kv = 0; kv < 2; kv++) {
        for (let h = 0; h < this.#shape.nKvHeads; h++) {
          const a = this.#at(kv, l, src, h, from);
          mem.copyWithin(this.#at(kv, l, dst, h, from), a, a + len);
        }
      }
    }
  }
}
