/**
 * Writes `bn_ctx` fields by name at the offsets the kernel module reports (see
 * `AbiLayout`), so a struct change on either side fails loudly instead of corrupting memory.
 *
 * @module
 */
import type { AbiLayout } from "../../wasm/loader.ts";

/** Field writer for one bn_ctx in shared memory. */
export class CtxWriter {
  readonly #memory: WebAssembly.Memory;
  readonly #abi: AbiLayout;
  readonly ctx: number;

  constructor(memory: WebAssembly.Memory, abi: AbiLayout, ctx: number) {
    this.#memory = memory;
    this.#abi = abi;
    this.ctx = ctx;
  }

  /** Byte address of a field, e.g. `"config.dim"`. */
  addr(field: string): number {
    const off = this.#abi.offsets.get(field);
    if (off === undefined) throw new Error(`kernel ABI has no field "${field}"`);
    return this.ctx + off;
  }

  /** Writes a u32 / pointer field. */
  u32(field: string, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new RangeError(`bn_ctx.${field}: ${value} is not a u32`);
    }
    new Uint32Array(this.#memory.buffer, this.addr(field), 1)[0] = value;
  }

  /** Writes an f32 field. */
  f32(field: string, value: number): void {
    new Float32Array(this.#memory.buffer, this.addr(field), 1)[0] = value;
  }

  /** Reads a u32 field. */
  read(field: string): number {
    return new Uint32Array(this.#memory.buffer, this.addr(field), 1)[0];
  }
}
