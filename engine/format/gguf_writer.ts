/**
 * GGUF writer: explicit value types (so files round-trip exactly through `openGguf`) and tensor
 * data streamed to disk one tensor (or one chunk) at a time, so a 1.2 GB file never sits in memory.
 *
 * @example
 * ```ts ignore
 * import { writeGguf } from "./gguf_writer.ts";
 * import { GGML_TYPE } from "./ggml_types.ts";
 * writeGguf("/tmp/x.gguf", {
 *   metadata: [["general.architecture", { type: "string", value: "bitnet-b1.58" }]],
 *   tensors: [{ name: "output_norm.weight", type: GGML_TYPE.F32, dims: [4], data: new Uint8Array(16) }],
 * });
 * ```
 *
 * @module
 */
import { GGUF_VALUE_TYPES, type GgufValueType } from "./gguf.ts";
import { tensorNbytes } from "./ggml_types.ts";

/** Every value type except `array`. */
export type GgufScalarType = Exclude<GgufValueType, "array">;

/** An array value: elements of one scalar type, or arrays (each with its own element type). */
export type GgufArrayValue =
  | {
    readonly type: "array";
    readonly elem: GgufScalarType;
    readonly value: ArrayLike<number | bigint | boolean | string>;
  }
  | { readonly type: "array"; readonly elem: "array"; readonly value: readonly GgufArrayValue[] };

/** A metadata value with its GGUF type spelled out, e.g. `{ type: "u32", value: 5 }`. */
export type GgufTypedValue =
  | { readonly type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64"; readonly value: number }
  | { readonly type: "u64" | "i64"; readonly value: number | bigint }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | GgufArrayValue;

/** A tensor to write; `data` is its bytes, or a function yielding them in chunks when it is written. */
export interface GgufTensorSpec {
  readonly name: string;
  readonly type: number;
  /** Element counts, ne0 first. */
  readonly dims: readonly number[];
  readonly data: Uint8Array | (() => Iterable<Uint8Array>);
}

/** A tensor info as stored in the header: `offset` is relative to the data section. */
export interface GgufTensorHeader {
  readonly name: string;
  readonly type: number;
  readonly dims: readonly number[];
  readonly offset: number;
}

/** What {@linkcode writeGguf} writes. */
export interface WriteGgufOptions {
  readonly metadata: readonly (readonly [string, GgufTypedValue])[];
  readonly tensors: readonly GgufTensorSpec[];
  /** Data alignment; when set and `general.alignment` is not in `metadata`, that key is appended. */
  readonly alignment?: number;
  /** GGUF version, 3 by default (2 has the same layout). */
  readonly version?: 2 | 3;
}

/** What was written. */
export interface WriteGgufResult {
  readonly bytes: number;
  readonly dataOffset: number;
}

/**
 * Writes a GGUF file: header, zero padding, then each tensor's data padded to the alignment.
 * A partly written file is removed when writing fails.
 *
 * @throws {TypeError} for duplicate keys or tensor names, a wrongly typed value, or tensor data
 * whose length differs from the size its type and dims imply
 * @throws {RangeError} for a value out of its type's range or an alignment that is not a power of 2
 *
 * @example
 * ```ts ignore
 * import { writeGguf } from "./gguf_writer.ts";
 * writeGguf("/tmp/empty.gguf", { metadata: [["general.name", { type: "string", value: "x" }]], tensors: [] });
 * ```
 */
export function writeGguf(path: string, options: WriteGgufOptions): WriteGgufResult {
  const metadata = [...options.metadata];
  const keys = new Set<string>();
  for (const [key] of metadata) {
    if (keys.has(key)) throw new TypeError(`Cannot write GGUF "${path}": key "${key}" appears twice`);
    keys.add(key);
  }
  let alignment = 32;
  const given = metadata.find(([key]) => key === "general.alignment")?.[1];
  if (given !== undefined) {
    if (given.type !== "u32") {
      throw new TypeError(`Cannot write GGUF "${path}": general.alignment must be u32`);
    }
    alignment = given.value;
    if (options.alignment !== undefined && options.alignment !== alignment) {
      throw new TypeError(
        `Cannot write GGUF "${path}": alignment ${options.alignment} differs from general.alignment ${alignment}`,
      );
    }
  } else if (options.alignment !== undefined) {
    alignment = options.alignment;
    metadata.push(["general.alignment", { type: "u32", value: alignment }]);
  }
  const headers: GgufTensorHeader[] = [];
  const sizes: number[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of options.tensors) {
    if (names.has(t.name)) {
      throw new TypeError(`Cannot write GGUF "${path}": tensor "${t.name}" appears twice`);
    }
    names.add(t.name);
    const nbytes = tensorNbytes(t.type, t.dims);
    headers.push({ name: t.name, type: t.type, dims: t.dims, offset });
    sizes.push(nbytes);
    offset += align(nbytes, alignment);
  }
  const header = encodeGgufHeader(metadata, headers, { alignment, version: options.version });
  const dataOffset = align(header.length, alignment);
  const file = Deno.openSync(path, { write: true, create: true, truncate: true });
  try {
    writeAll(file, header);
    writeAll(file, new Uint8Array(dataOffset - header.length));
    options.tensors.forEach((t, i) => {
      let written = 0;
      for (const chunk of typeof t.data === "function" ? t.data() : [t.data]) {
        written += chunk.length;
        if (written > sizes[i]) break;
        writeAll(file, chunk);
      }
      if (written !== sizes[i]) {
        throw new TypeError(
          `Cannot write GGUF "${path}": tensor "${t.name}" data is not ${
            sizes[i]
          } bytes, as its type and dims imply`,
        );
      }
      writeAll(file, new Uint8Array(align(sizes[i], alignment) - sizes[i]));
    });
  } catch (e) {
    file.close();
    Deno.removeSync(path);
    throw e;
  }
  file.close();
  return { bytes: dataOffset + offset, dataOffset };
}

/**
 * Encodes a GGUF header (magic, version, counts, metadata, tensor infos), unpadded. Low level: it
 * checks value types and ranges but not duplicates or offsets, so tests can build broken files.
 *
 * @example
 * ```ts
 * import { encodeGgufHeader } from "./gguf_writer.ts";
 * encodeGgufHeader([["a", { type: "u8", value: 1 }]], []).length; // 24 + 8 + 1 + 4 + 1 = 38
 * ```
 */
export function encodeGgufHeader(
  metadata: readonly (readonly [string, GgufTypedValue])[],
  tensors: readonly GgufTensorHeader[],
  options: { alignment?: number; version?: number } = {},
): Uint8Array {
  const alignment = options.alignment ?? 32;
  if (
    !Number.isInteger(alignment) || alignment < 1 || alignment > 2 ** 31 ||
    (alignment & (alignment - 1)) !== 0
  ) {
    throw new RangeError(`Cannot write GGUF: alignment ${alignment} is not a power of 2`);
  }
  const out = new ByteWriter();
  out.u32(0x46554747);
  out.u32(options.version ?? 3);
  out.u64(tensors.length);
  out.u64(metadata.length);
  for (const [key, value] of metadata) {
    out.string(key);
    out.u32(typeId(value.type));
    writeValue(out, value, key);
  }
  for (const t of tensors) {
    out.string(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(t.type);
    out.u64(t.offset);
  }
  return out.bytes();
}

function align(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
}

function typeId(type: string): number {
  const id = (GGUF_VALUE_TYPES as readonly string[]).indexOf(type);
  if (id < 0) throw new TypeError(`Cannot write GGUF: unknown value type "${type}"`);
  return id;
}

const INT_RANGE: Record<string, readonly [number, number]> = {
  u8: [0, 255],
  i8: [-128, 127],
  u16: [0, 65535],
  i16: [-32768, 32767],
  u32: [0, 4294967295],
  i32: [-2147483648, 2147483647],
};

function writeValue(out: ByteWriter, v: GgufTypedValue, key: string): void {
  if (v.type === "array") {
    out.u32(typeId(v.elem));
    out.u64(v.value.length);
    if (v.elem === "array") {
      for (const inner of v.value as readonly GgufArrayValue[]) {
        if (inner?.type !== "array") {
          throw new TypeError(`Cannot write GGUF: key "${key}" has a non-array element`);
        }
        writeValue(out, inner, key);
      }
    } else {
      const elems = v.value as ArrayLike<number | bigint | boolean | string>;
      for (let i = 0; i < elems.length; i++) writeScalar(out, v.elem, elems[i], key);
    }
    return;
  }
  writeScalar(out, v.type, v.value, key);
}

function writeScalar(out: ByteWriter, type: GgufScalarType, value: unknown, key: string): void {
  const bad = (): never => {
    throw new TypeError(`Cannot write GGUF: key "${key}" has ${type} value ${String(value)}`);
  };
  switch (type) {
    case "string":
      return typeof value === "string" ? out.string(value) : bad();
    case "bool":
      return typeof value === "boolean" ? out.u8(value ? 1 : 0) : bad();
    case "f32":
      return typeof value === "number" ? out.f32(value) : bad();
    case "f64":
      return typeof value === "number" ? out.f64(value) : bad();
    case "u64":
    case "i64": {
      if (typeof value !== "bigint" && !Number.isSafeInteger(value)) bad();
      const big = BigInt(value as number | bigint);
      const [lo, hi] = type === "u64" ? [0n, 2n ** 64n - 1n] : [-(2n ** 63n), 2n ** 63n - 1n];
      if (big < lo || big > hi) {
        throw new RangeError(`Cannot write GGUF: key "${key}" ${type} value ${big} is out of range`);
      }
      return out.big(big);
    }
    default: {
      if (!Number.isInteger(value)) bad();
      const [lo, hi] = INT_RANGE[type];
      const n = value as number;
      if (n < lo || n > hi) {
        throw new RangeError(`Cannot write GGUF: key "${key}" ${type} value ${n} is out of range`);
      }
      return out.int(type, n);
    }
  }
}

/** A growable little-endian byte buffer. */
class ByteWriter {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  #len = 0;
  readonly #encoder = new TextEncoder();

  #reserve(n: number): number {
    if (this.#len + n > this.#buf.length) {
      const grown = new Uint8Array(Math.max(2 * this.#buf.length, this.#len + n));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    }
    const at = this.#len;
    this.#len += n;
    return at;
  }
  u8(n: number): void {
    this.#view.setUint8(this.#reserve(1), n);
  }
  u32(n: number): void {
    this.#view.setUint32(this.#reserve(4), n, true);
  }
  u64(n: number): void {
    this.#view.setBigUint64(this.#reserve(8), BigInt(n), true);
  }
  big(n: bigint): void {
    this.#view.setBigUint64(this.#reserve(8), BigInt.asUintN(64, n), true);
  }
  f32(n: number): void {
    this.#view.setFloat32(this.#reserve(4), n, true);
  }
  f64(n: number): void {
    this.#view.setFloat64(this.#reserve(8), n, true);
  }
  int(type: string, n: number): void {
    const size = type === "u8" || type === "i8" ? 1 : type === "u16" || type === "i16" ? 2 : 4;
    const at = this.#reserve(size);
    if (size === 1) this.#view.setUint8(at, n & 255);
    else if (size === 2) this.#view.setUint16(at, n & 0xffff, true);
    else this.#view.setUint32(at, n >>> 0, true);
  }
  string(s: string): void {
    const at = this.#reserve(8 + 3 * s.length);
    const { written } = this.#encoder.encodeInto(s, this.#buf.subarray(at + 8));
    this.#view.setBigUint64(at, BigInt(written), true);
    this.#len = at + 8 + written;
  }
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}
