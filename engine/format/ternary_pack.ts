/**
 * Exact packers and unpackers between ternary weights and their GGUF layouts, plus the F16 and
 * Q8_0 codecs used for embeddings.
 *
 * Trits are an `Int8Array` of -1/0/+1 in row-major order (rows of `ne0` weights, one row per
 * output); the layouts (bitnet-spec §3.3, §3.4):
 * - I2_S: the whole matrix flattened, 128 trits -> 32 bytes, trit j of a block in byte j % 32 at
 *   bits `6 - 2 * (j / 32)` as code trit+1 (MSB first); then the f32 scale and 28 zero bytes.
 * - TQ2_0: 256 trits -> `qs[64]` + fp16 d; trit `h*128 + l*32 + m` is `(qs[h*32 + m] >> 2l) & 3`.
 * - TQ1_0: 256 trits -> `qs[48]` + `qh[4]` + fp16 d; 5 (or 4) base-3 digits per byte, stored as
 *   `ceil(q * 256 / 243)` so that digit n is `((uint8)(byte * 3^n) * 3) >> 8`.
 *
 * @example
 * ```ts
 * import { packI2S, unpackI2S } from "./ternary_pack.ts";
 * const trits = new Int8Array(128).fill(1);
 * const bytes = packI2S(trits, 1.5); // 64 bytes: 32 x 0xaa, the f32 1.5, 28 zeros
 * unpackI2S(bytes, 128).scale; // 1.5
 * ```
 *
 * @module
 */

/** Unpacked ternary weights with one scale per 256-block (TQ layouts). */
export interface UnpackedBlocks {
  readonly trits: Int8Array;
  readonly scales: Float32Array;
}

/**
 * Packs trits into I2_S: `n / 4` bytes of codes, the little-endian f32 `scale`, 28 zero bytes.
 *
 * @throws {RangeError} when `trits.length` is not a multiple of 128 or a value is not -1, 0 or 1
 *
 * @example
 * ```ts
 * import { packI2S } from "./ternary_pack.ts";
 * packI2S(new Int8Array(128), 1).length; // 64
 * ```
 */
export function packI2S(trits: Int8Array, scale: number): Uint8Array {
  const n = trits.length;
  checkLength("I2_S", n, 128);
  const out = new Uint8Array(n / 4 + 32);
  let acc = 0;
  for (let b = 0, o = 0; b < n; b += 128, o += 32) {
    for (let i = 0; i < 32; i++) {
      const c0 = trits[b + i] + 1, c1 = trits[b + 32 + i] + 1;
      const c2 = trits[b + 64 + i] + 1, c3 = trits[b + 96 + i] + 1;
      acc |= c0 | (2 - c0) | c1 | (2 - c1) | c2 | (2 - c2) | c3 | (2 - c3);
      out[o + i] = (c0 << 6) | (c1 << 4) | (c2 << 2) | c3;
    }
  }
  checkTrits(acc);
  new DataView(out.buffer).setFloat32(n / 4, scale, true);
  return out;
}

/**
 * Unpacks `n` trits and the f32 scale from I2_S bytes (the 28 bytes after the scale are ignored).
 *
 * @throws {RangeError} for a short buffer, `n` not a multiple of 128, or a code 3 (not ternary)
 *
 * @example
 * ```ts
 * import { packI2S, unpackI2S } from "./ternary_pack.ts";
 * unpackI2S(packI2S(new Int8Array(128).fill(-1), 2), 128).trits[0]; // -1
 * ```
 */
export function unpackI2S(data: Uint8Array, n: number): { trits: Int8Array; scale: number } {
  checkLength("I2_S", n, 128);
  checkBytes("I2_S", data, n / 4 + 4);
  const trits = new Int8Array(n);
  for (let b = 0, o = 0; b < n; b += 128, o += 32) {
    for (let i = 0; i < 32; i++) {
      const byte = data[o + i];
      trits[b + i] = code(byte >> 6, "I2_S", b + i);
      trits[b + 32 + i] = code((byte >> 4) & 3, "I2_S", b + 32 + i);
      trits[b + 64 + i] = code((byte >> 2) & 3, "I2_S", b + 64 + i);
      trits[b + 96 + i] = code(byte & 3, "I2_S", b + 96 + i);
    }
  }
  const scale = new DataView(data.buffer, data.byteOffset, data.length).getFloat32(n / 4, true);
  return { trits, scale };
}

/**
 * Packs trits into TQ2_0 blocks of 66 bytes; `scale` is every block's d, or one d per block.
 *
 * @throws {RangeError} when `trits.length` is not a multiple of 256 or a value is not ternary
 *
 * @example
 * ```ts
 * import { packTQ2 } from "./ternary_pack.ts";
 * packTQ2(new Int8Array(512), 1).length; // 132
 * ```
 */
export function packTQ2(trits: Int8Array, scale: number | ArrayLike<number>): Uint8Array {
  const n = trits.length;
  checkLength("TQ2_0", n, 256);
  const out = new Uint8Array((n / 256) * 66);
  const view = new DataView(out.buffer);
  let acc = 0;
  for (let b = 0, o = 0, k = 0; b < n; b += 256, o += 66, k++) {
    for (let h = 0; h < 256; h += 128) {
      const ob = o + h / 4;
      for (let m = 0; m < 32; m++) {
        const c0 = trits[b + h + m] + 1, c1 = trits[b + h + 32 + m] + 1;
        const c2 = trits[b + h + 64 + m] + 1, c3 = trits[b + h + 96 + m] + 1;
        acc |= c0 | (2 - c0) | c1 | (2 - c1) | c2 | (2 - c2) | c3 | (2 - c3);
        out[ob + m] = c0 | (c1 << 2) | (c2 << 4) | (c3 << 6);
      }
    }
    view.setFloat16(o + 64, blockScale(scale, k), true);
  }
  checkTrits(acc);
  return out;
}

/**
 * Unpacks `n` trits and each block's d from TQ2_0 bytes.
 *
 * @throws {RangeError} for a short buffer, `n` not a multiple of 256, or a code 3 (not ternary)
 *
 * @example
 * ```ts
 * import { packTQ2, unpackTQ2 } from "./ternary_pack.ts";
 * unpackTQ2(packTQ2(new Int8Array(256), 0.5), 256).scales[0]; // 0.5
 * ```
 */
export function unpackTQ2(data: Uint8Array, n: number): UnpackedBlocks {
  checkLength("TQ2_0", n, 256);
  checkBytes("TQ2_0", data, (n / 256) * 66);
  const trits = new Int8Array(n);
  const scales = new Float32Array(n / 256);
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  for (let b = 0, o = 0, k = 0; b < n; b += 256, o += 66, k++) {
    for (let h = 0; h < 256; h += 128) {
      for (let m = 0; m < 32; m++) {
        const byte = data[o + h / 4 + m];
        for (let l = 0; l < 4; l++) {
          const e = b + h + l * 32 + m;
          trits[e] = code((byte >> (2 * l)) & 3, "TQ2_0", e);
        }
      }
    }
    scales[k] = view.getFloat16(o + 64, true);
  }
  return { trits, scales };
}

/**
 * Packs trits into TQ1_0 blocks of 54 bytes; `scale` is every block's d, or one d per block.
 *
 * @throws {RangeError} when `trits.length` is not a multiple of 256 or a value is not ternary
 *
 * @example
 * ```ts
 * import { packTQ1 } from "./ternary_pack.ts";
 * packTQ1(new Int8Array(256), 1)[0]; // 128: five 0 trits, q = 121, ceil(121 * 256 / 243)
 * ```
 */
export function packTQ1(trits: Int8Array, scale: number | ArrayLike<number>): Uint8Array {
  const n = trits.length;
  checkLength("TQ1_0", n, 256);
  const out = new Uint8Array((n / 256) * 54);
  const view = new DataView(out.buffer);
  let acc = 0;
  for (let b = 0, o = 0, k = 0; b < n; b += 256, o += 54, k++) {
    // qs[0..31]: trits m + 32i; qs[32..47]: trits 160 + m + 16i; qh[0..3]: trits 240 + j + 4i.
    for (const [first, bytes, stride, digits, at] of TQ1_GROUPS) {
      for (let m = 0; m < bytes; m++) {
        let q = 0;
        for (let i = 0; i < digits; i++) {
          const c = trits[b + first + m + i * stride] + 1;
          acc |= c | (2 - c);
          q = q * 3 + c;
        }
        if (digits === 4) q *= 3;
        out[o + at + m] = Math.floor((q * 256 + 242) / 243);
      }
    }
    view.setFloat16(o + 52, blockScale(scale, k), true);
  }
  checkTrits(acc);
  return out;
}

/**
 * Unpacks `n` trits and each block's d from TQ1_0 bytes (ggml's `dequantize_row_tq1_0` digits).
 *
 * @throws {RangeError} for a short buffer or `n` not a multiple of 256
 *
 * @example
 * ```ts
 * import { packTQ1, unpackTQ1 } from "./ternary_pack.ts";
 * unpackTQ1(packTQ1(new Int8Array(256).fill(1), 1), 256).trits[255]; // 1
 * ```
 */
export function unpackTQ1(data: Uint8Array, n: number): UnpackedBlocks {
  checkLength("TQ1_0", n, 256);
  checkBytes("TQ1_0", data, (n / 256) * 54);
  const trits = new Int8Array(n);
  const scales = new Float32Array(n / 256);
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  for (let b = 0, o = 0, k = 0; b < n; b += 256, o += 54, k++) {
    for (const [first, bytes, stride, digits, at] of TQ1_GROUPS) {
      for (let m = 0; m < bytes; m++) {
        const byte = data[o + at + m];
        for (let i = 0, pow = 1; i < digits; i++, pow *= 3) {
          const q = (byte * pow) & 255;
          trits[b + first + m + i * stride] = ((q * 3) >> 8) - 1;
        }
      }
    }
    scales[k] = view.getFloat16(o + 52, true);
  }
  return { trits, scales };
}

// [first trit, bytes, trit stride, digits per byte, byte offset in block]
const TQ1_GROUPS = [[0, 32, 32, 5, 0], [160, 16, 16, 5, 32], [240, 4, 4, 4, 48]] as const;

/**
 * IEEE half-precision little-endian bytes of `values` (round to nearest even).
 *
 * @example
 * ```ts
 * import { encodeF16 } from "./ternary_pack.ts";
 * encodeF16([1]); // Uint8Array [0x00, 0x3c]
 * ```
 */
export function encodeF16(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float16Array.from(values).buffer);
}

/**
 * The values of little-endian half-precision `bytes`.
 *
 * @throws {RangeError} for an odd byte count
 *
 * @example
 * ```ts
 * import { decodeF16 } from "./ternary_pack.ts";
 * decodeF16(new Uint8Array([0x00, 0x3c]))[0]; // 1
 * ```
 */
export function decodeF16(bytes: Uint8Array): Float32Array {
  if (bytes.length % 2 !== 0) {
    throw new RangeError(`Cannot decode F16 from ${bytes.length} bytes: expected an even count`);
  }
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  return Float32Array.from(new Float16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2));
}

/**
 * Quantizes to Q8_0 exactly as ggml's `quantize_row_q8_0_ref`: per 32 values, f32
 * `d = absmax / 127`, `q = roundf(x / d)` (half away from zero), stored as fp16 d then 32 int8.
 *
 * @throws {RangeError} when `values.length` is not a multiple of 32
 *
 * @example
 * ```ts
 * import { quantizeQ8_0 } from "./ternary_pack.ts";
 * quantizeQ8_0(new Float32Array(32).fill(1)).length; // 34
 * ```
 */
export function quantizeQ8_0(values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  checkLength("Q8_0", n, 32);
  const out = new Uint8Array((n / 32) * 34);
  const view = new DataView(out.buffer);
  const f = Math.fround;
  for (let b = 0, o = 0; b < n; b += 32, o += 34) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(values[b + i]));
    const d = f(f(amax) / 127);
    const id = d !== 0 ? f(1 / d) : 0;
    view.setFloat16(o, d, true);
    for (let i = 0; i < 32; i++) {
      const x = f(f(values[b + i]) * id);
      view.setInt8(o + 2 + i, x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5));
    }
  }
  return out;
}

/**
 * The `n` values of Q8_0 bytes (`d * q`, d widened from fp16).
 *
 * @throws {RangeError} for a short buffer or `n` not a multiple of 32
 *
 * @example
 * ```ts
 * import { dequantizeQ8_0, quantizeQ8_0 } from "./ternary_pack.ts";
 * dequantizeQ8_0(quantizeQ8_0(new Float32Array(32).fill(2)), 32)[0]; // 2
 * ```
 */
export function dequantizeQ8_0(data: Uint8Array, n: number): Float32Array {
  checkLength("Q8_0", n, 32);
  checkBytes("Q8_0", data, (n / 32) * 34);
  const out = new Float32Array(n);
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  for (let b = 0, o = 0; b < n; b += 32, o += 34) {
    const d = view.getFloat16(o, true);
    for (let i = 0; i < 32; i++) out[b + i] = d * view.getInt8(o + 2 + i);
  }
  return out;
}

function blockScale(scale: number | ArrayLike<number>, k: number): number {
  if (typeof scale === "number") return scale;
  if (k >= scale.length) throw new RangeError(`Cannot pack block ${k}: only ${scale.length} scales given`);
  return scale[k];
}

function checkLength(layout: string, n: number, block: number): void {
  if (!Number.isInteger(n) || n < 0 || n % block !== 0) {
    throw new RangeError(`Cannot use ${layout} for ${n} values: expected a multiple of ${block}`);
  }
}

function checkBytes(layout: string, data: Uint8Array, need: number): void {
  if (data.length < need) {
    throw new RangeError(`Cannot unpack ${layout}: ${data.length} bytes, expected ${need}`);
  }
}

function checkTrits(acc: number): void {
  if (acc < 0) throw new RangeError("Cannot pack trits: found a value other than -1, 0 and 1");
}

function code(c: number, layout: string, index: number): number {
  if (c === 3) throw new RangeError(`Cannot unpack ${layout}: code 3 (not ternary) at element ${index}`);
  return c - 1;
}
