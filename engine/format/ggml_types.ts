/**
 * ggml tensor type ids, names and byte sizes, in bitnet.cpp's numbering (TQ1_0 34, TQ2_0 35,
 * I2_S 36; mainline llama.cpp reuses 36.. for other types, which is why it cannot open I2_S files).
 *
 * Sizes follow `ggml_nbytes`: a block type stores `ne0 / blockSize` blocks of `typeSize` bytes per
 * row; I2_S (bitnet.cpp's override) stores `n / 4` bytes of 2-bit codes, then a 32-byte tail whose
 * first 4 bytes are the f32 scale.
 *
 * @example
 * ```ts
 * import { GGML_TYPE, ggmlTypeName, tensorNbytes } from "./ggml_types.ts";
 * tensorNbytes(GGML_TYPE.I2_S, [2560, 2560]); // 1638432
 * ggmlTypeName(12); // "Q4_K"
 * ```
 */

/** The tensor types this project reads and writes, by name. */
export const GGML_TYPE = Object.freeze(
  {
    F32: 0,
    F16: 1,
    Q8_0: 8,
    TQ1_0: 34,
    TQ2_0: 35,
    I2_S: 36,
  } as const,
);

/** One of the ids in {@linkcode GGML_TYPE}. */
export type GgmlType = (typeof GGML_TYPE)[keyof typeof GGML_TYPE];

/** Layout facts of one ggml type: `blockSize` elements take `typeSize` bytes. */
export interface GgmlTypeInfo {
  readonly id: number;
  readonly name: string;
  readonly blockSize: number;
  readonly typeSize: number;
}

/** Bytes of the I2_S tail after the packed codes: the f32 scale and 28 unused bytes. */
export const I2S_TAIL_BYTES = 32;

// [id, name, blockSize, typeSize]; typeSize 0 = named for messages only, size unknown here.
const TABLE: ReadonlyArray<readonly [number, string, number, number]> = [
  [0, "F32", 1, 4],
  [1, "F16", 1, 2],
  [2, "Q4_0", 32, 18],
  [3, "Q4_1", 32, 20],
  [6, "Q5_0", 32, 22],
  [7, "Q5_1", 32, 24],
  [8, "Q8_0", 32, 34],
  [9, "Q8_1", 32, 36],
  [10, "Q2_K", 256, 84],
  [11, "Q3_K", 256, 110],
  [12, "Q4_K", 256, 144],
  [13, "Q5_K", 256, 176],
  [14, "Q6_K", 256, 210],
  [15, "Q8_K", 256, 292],
  [16, "IQ2_XXS", 256, 66],
  [17, "IQ2_XS", 256, 74],
  [18, "IQ3_XXS", 256, 98],
  [19, "IQ1_S", 256, 50],
  [20, "IQ4_NL", 32, 18],
  [21, "IQ3_S", 256, 110],
  [22, "IQ2_S", 256, 82],
  [23, "IQ4_XS", 256, 136],
  [24, "I8", 1, 1],
  [25, "I16", 1, 2],
  [26, "I32", 1, 4],
  [27, "I64", 1, 8],
  [28, "F64", 1, 8],
  [29, "IQ1_M", 256, 56],
  [30, "BF16", 1, 2],
  [34, "TQ1_0", 256, 54],
  [35, "TQ2_0", 256, 66],
  [36, "I2_S", 1, 1],
  [37, "I8_S", 1, 0],
  [38, "TL1", 1, 0],
  [39, "TL2", 1, 0],
];

/** Every type id with a known size (the reader can place such tensors), by id. */
export const GGML_TYPE_INFO: ReadonlyMap<number, GgmlTypeInfo> = new Map(
  TABLE.filter(([, , , size]) => size > 0).map(([id, name, blockSize, typeSize]) => [
    id,
    Object.freeze({ id, name, blockSize, typeSize }),
  ]),
);

const NAMES: ReadonlyMap<number, string> = new Map(TABLE.map(([id, name]) => [id, name]));

/**
 * The ggml name of a type id, e.g. `"I2_S"`, or `"unknown"` for ids this table does not know.
 *
 * @example
 * ```ts
 * import { ggmlTypeName } from "./ggml_types.ts";
 * ggmlTypeName(36); // "I2_S"
 * ```
 */
export function ggmlTypeName(type: number): string {
  return NAMES.get(type) ?? "unknown";
}

/**
 * `"12 (Q4_K)"`: a type id with its name, for error messages.
 *
 * @example
 * ```ts
 * import { describeGgmlType } from "./ggml_types.ts";
 * describeGgmlType(1); // "1 (F16)"
 * ```
 */
export function describeGgmlType(type: number): string {
  return `${type} (${ggmlTypeName(type)})`;
}

/**
 * Byte size of a tensor exactly as bitnet.cpp's `ggml_nbytes` computes it.
 *
 * @param type ggml type id
 * @param dims element counts, ne0 (the contiguous row length) first
 * @throws {RangeError} for a type of unknown size, a negative or non-integer dim, a row length that
 * is not a multiple of the block size, or a size beyond `Number.MAX_SAFE_INTEGER`
 *
 * @example
 * ```ts
 * import { GGML_TYPE, tensorNbytes } from "./ggml_types.ts";
 * tensorNbytes(GGML_TYPE.TQ2_0, [2560, 640]); // 422400
 * tensorNbytes(GGML_TYPE.I2_S, [2560, 640]); // 409632
 * ```
 */
export function tensorNbytes(type: number, dims: readonly number[]): number {
  const info = GGML_TYPE_INFO.get(type);
  if (info === undefined) {
    throw new RangeError(`Cannot size a tensor of type ${describeGgmlType(type)}: its size is unknown`);
  }
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`Cannot size a tensor with dim ${d}`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new RangeError(`Cannot size a tensor of ${dims.join("x")} elements`);
  }
  if (type === GGML_TYPE.I2_S) return Math.floor(n / 4) + I2S_TAIL_BYTES;
  const ne0 = dims.length > 0 ? dims[0] : 1;
  if (ne0 % info.blockSize !== 0) {
    throw new RangeError(
      `Cannot size a ${info.name} tensor with row length ${ne0}: expected a multiple of ${info.blockSize}`,
    );
  }
  const bytes = (n / info.blockSize) * info.typeSize;
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`Cannot size a tensor of ${dims.join("x")} elements`);
  }
  return bytes;
}
