/**
 * GGUF reader: the header (metadata and tensor infos) of a GGUF v2/v3 file, validated against the
 * file's length before anything sized by the file is allocated. Tensor data is never read here:
 * each tensor's absolute file offset and byte size are returned for the loader's positioned reads.
 *
 * @example
 * ```ts ignore
 * import { openGguf } from "./gguf.ts";
 * const gguf = openGguf("models/ggml-model-i2_s.gguf");
 * gguf.metadata.get("general.architecture"); // "bitnet-b1.58"
 * gguf.tensorsByName.get("blk.0.attn_q.weight"); // { name, dims: [2560, 2560], type: 36, offset, nbytes }
 * ```
 *
 * @module
 */
import { describeGgmlType, GGML_TYPE_INFO, tensorNbytes } from "./ggml_types.ts";
import { quote } from "./printable.ts";

/** GGUF metadata value type names, indexed by their type id in the file. */
export const GGUF_VALUE_TYPES = [
  "u8",
  "i8",
  "u16",
  "i16",
  "u32",
  "i32",
  "f32",
  "bool",
  "string",
  "array",
  "u64",
  "i64",
  "f64",
] as const;

/** A GGUF metadata value type name, e.g. `"u32"` or `"array"`. */
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];

/**
 * A metadata value as read: numbers as `number` (64-bit integers as `bigint` only when beyond
 * `Number.MAX_SAFE_INTEGER`), arrays of strings/bools as JS arrays, numeric arrays as the typed
 * array of their element type, arrays of arrays as JS arrays.
 */
export type GgufValue =
  | number
  | bigint
  | boolean
  | string
  | string[]
  | boolean[]
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | GgufValue[];

/** One tensor of the file: `offset` is ABSOLUTE (from the start of the file). */
export interface GgufTensorInfo {
  readonly name: string;
  /** Element counts, ne0 (the contiguous row length) first. */
  readonly dims: readonly number[];
  /** ggml type id (see `ggml_types.ts`). */
  readonly type: number;
  readonly offset: number;
  readonly nbytes: number;
}

/** The parsed header of a GGUF file. */
export interface GgufFile {
  readonly path: string;
  readonly version: number;
  readonly alignment: number;
  readonly fileSize: number;
  /** Absolute offset of the tensor data section. */
  readonly dataOffset: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Each key's value type as stored: `"u32"`, `"array<string>"`, `"array<array>"`, ... */
  readonly metadataTypes: ReadonlyMap<string, string>;
  /** Tensor infos in file order. */
  readonly tensors: readonly GgufTensorInfo[];
  readonly tensorsByName: ReadonlyMap<string, GgufTensorInfo>;
}

/**
 * A malformed or unsupported GGUF file. The message names the file, the key or tensor, and what
 * was expected vs found.
 *
 * @example
 * ```ts
 * import { GgufError } from "./gguf.ts";
 * new GgufError("m.gguf", "bad magic").message; // 'Cannot load model "m.gguf": bad magic'
 * ```
 */
export class GgufError extends SyntaxError {
  /** The file that failed to load. */
  readonly path: string;
  constructor(path: string, detail: string) {
    super(`Cannot load model ${quote(path, 1024)}: ${detail}`);
    this.name = "GgufError";
    this.path = path;
  }
}

const MAGIC = 0x46554747; // "GGUF" little-endian
const CHUNK = 4 << 20;
const MAX_DIMS = 4;
const MAX_ARRAY_DEPTH = 8;
// Fewest bytes one element of each value type can take in the file (string: its u64 length;
// array: u32 element type + u64 count).
const MIN_SIZE = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

/**
 * Reads and validates the header of the GGUF file at `path` (positioned reads, header only).
 *
 * @throws {GgufError} for a malformed, truncated or unsupported file
 * @throws {Deno.errors.NotFound} and other I/O errors as `Deno.openSync` raises them
 *
 * @example
 * ```ts ignore
 * import { openGguf } from "./gguf.ts";
 * const { tensors, dataOffset } = openGguf("/tmp/tiny.gguf");
 * ```
 */
export function openGguf(path: string): GgufFile {
  using file = Deno.openSync(path, { read: true });
  const fileSize = file.statSync().size;
  return new Parser(path, file, fileSize).parse();
}

class Parser {
  #buf = new Uint8Array(0);
  #view = new DataView(this.#buf.buffer);
  #base = 0; // file offset of #buf[0]
  #len = 0; // valid bytes in #buf
  #pos = 0; // file offset of the next byte to parse
  #ctx = "header";
  readonly #decoder = new TextDecoder("utf-8", { ignoreBOM: true });

  constructor(readonly path: string, readonly file: Deno.FsFile, readonly size: number) {}

  parse(): GgufFile {
    if (this.size < 4) this.#fail(`the file is ${this.size} bytes long, too short for a GGUF header`);
    const magic = this.#u32();
    if (magic !== MAGIC) {
      const hex = [0, 8, 16, 24].map((s) => ((magic >>> s) & 255).toString(16).padStart(2, "0")).join(" ");
      this.#fail(`not a GGUF file: it starts with bytes ${hex}, expected "GGUF" (47 47 55 46)`);
    }
    const version = this.#u32();
    if (version !== 2 && version !== 3) {
      const swapped = ((version & 255) << 24 | (version >>> 8 & 255) << 16 | (version >>> 16 & 255) << 8 |
        version >>> 24) >>> 0;
      const hint = swapped === 2 || swapped === 3 ? " (a big-endian file?)" : "";
      this.#fail(`GGUF version ${version} is not supported, expected 2 or 3${hint}`);
    }
    const tensorCount = this.#count("tensor count", 32);
    const kvCount = this.#count("metadata key count", 13);
    if (tensorCount * 32 + kvCount * 13 > this.size - this.#pos) {
      this.#fail(`${tensorCount} tensors and ${kvCount} keys exceed the file (truncated?)`);
    }
    const metadata = new Map<string, GgufValue>();
    const metadataTypes = new Map<string, string>();
    for (let i = 0; i < kvCount; i++) {
      this.#ctx = `metadata key #${i}`;
      const key = this.#string();
      this.#ctx = `key ${quote(key)}`;
      if (metadata.has(key)) this.#fail(`key ${quote(key)} appears twice`);
      const type = this.#valueType();
      const [value, typeName] = this.#value(type, 0);
      metadata.set(key, value);
      metadataTypes.set(key, typeName);
    }
    const alignment = this.#alignment(metadata, metadataTypes);
    const infos: { name: string; dims: number[]; type: number; rel: number; nbytes: number }[] = [];
    const names = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      this.#ctx = `tensor #${i}`;
      const name = this.#string();
      this.#ctx = `tensor ${quote(name)}`;
      if (names.has(name)) this.#fail(`tensor ${quote(name)} appears twice`);
      names.add(name);
      const nDims = this.#u32At("dimension count");
      if (nDims < 1 || nDims > MAX_DIMS) {
        this.#fail(`tensor ${quote(name)} has ${nDims} dimensions, expected 1 to ${MAX_DIMS}`);
      }
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(this.#u64Safe(`dimension ${d}`));
      const type = this.#u32At("type");
      if (!GGML_TYPE_INFO.has(type)) {
        this.#fail(`tensor ${quote(name)} has type ${describeGgmlType(type)}, which this reader cannot size`);
      }
      let nbytes: number;
      try {
        nbytes = tensorNbytes(type, dims);
      } catch (e) {
        if (!(e instanceof RangeError)) throw e;
        this.#fail(
          `tensor ${quote(name)} with dims [${dims.join(", ")}] and type ${
            describeGgmlType(type)
          }: ${e.message}`,
        );
      }
      const rel = this.#u64Safe("offset");
      if (rel % alignment !== 0) {
        this.#fail(
          `tensor ${quote(name)} has data offset ${rel}, expected a multiple of the alignment ${alignment}`,
        );
      }
      infos.push({ name, dims, type, rel, nbytes });
    }
    const dataOffset = Math.ceil(this.#pos / alignment) * alignment;
    const tensors = infos.map(({ name, dims, type, rel, nbytes }): GgufTensorInfo => {
      const offset = dataOffset + rel;
      const end = offset + nbytes;
      if (end > this.size) {
        this.#fail(
          `tensor ${quote(name)} needs bytes ${offset}..${end} but the file has ${this.size} (truncated?)`,
        );
      }
      return Object.freeze({ name, dims: Object.freeze(dims), type, offset, nbytes });
    });
    const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < sorted.length; i++) {
      const [a, b] = [sorted[i - 1], sorted[i]];
      if (b.offset < a.offset + a.nbytes) {
        this.#fail(
          `tensors ${quote(a.name)} (bytes ${a.offset}..${a.offset + a.nbytes}) and ${quote(b.name)} ` +
            `(bytes ${b.offset}..${b.offset + b.nbytes}) overlap`,
        );
      }
    }
    return Object.freeze({
      path: this.path,
      version,
      alignment,
      fileSize: this.size,
      dataOffset,
      metadata,
      metadataTypes,
      tensors: Object.freeze(tensors),
      tensorsByName: new Map(tensors.map((t) => [t.name, t])),
    });
  }

  #alignment(metadata: Map<string, GgufValue>, types: Map<string, string>): number {
    const value = metadata.get("general.alignment");
    if (value === undefined) return 32;
    this.#ctx = `key "general.alignment"`;
    if (types.get("general.alignment") !== "u32") {
      this.#fail(`key "general.alignment" has type ${types.get("general.alignment")}, expected u32`);
    }
    const a = value as number;
    if (a === 0 || (a & (a - 1)) !== 0) this.#fail(`key "general.alignment" is ${a}, expected a power of 2`);
    return a;
  }

  #fail(detail: string): never {
    throw new GgufError(this.path, detail);
  }

  /** Makes `n` bytes at #pos available in #buf; returns their index there. */
  #need(n: number, what = "data"): number {
    if (n > this.size - this.#pos) {
      this.#fail(
        `${this.#ctx}: the file ends at byte ${this.size} while reading ${what} at byte ${this.#pos} (truncated?)`,
      );
    }
    const at = this.#pos - this.#base;
    if (at + n <= this.#len) return at;
    const keep = this.#len - at;
    const want = Math.min(Math.max(n, CHUNK), this.size - this.#pos);
    if (want > this.#buf.length) {
      const grown = new Uint8Array(want);
      grown.set(this.#buf.subarray(at, this.#len));
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    } else {
      this.#buf.copyWithin(0, at, this.#len);
    }
    this.#base = this.#pos;
    this.#len = keep;
    this.file.seekSync(this.#base + this.#len, Deno.SeekMode.Start);
    while (this.#len < want) {
      const got = this.file.readSync(this.#buf.subarray(this.#len, want));
      if (got === null || got === 0) {
        this.#fail(`${this.#ctx}: the file ended early while reading (changed on disk?)`);
      }
      this.#len += got;
    }
    return 0;
  }

  #u32(): number {
    const at = this.#need(4);
    this.#pos += 4;
    return this.#view.getUint32(at, true);
  }

  #u32At(what: string): number {
    const at = this.#need(4, what);
    this.#pos += 4;
    return this.#view.getUint32(at, true);
  }

  /** A u64 that must be a safe integer (lengths, counts, dims, offsets). */
  #u64Safe(what: string): number {
    const at = this.#need(8, what);
    this.#pos += 8;
    const lo = this.#view.getUint32(at, true);
    const hi = this.#view.getUint32(at + 4, true);
    if (hi > 0x1fffff) {
      this.#fail(`${this.#ctx}: ${what} ${this.#view.getBigUint64(at, true)} exceeds the file (truncated?)`);
    }
    return hi * 0x100000000 + lo;
  }

  #count(what: string, minBytes: number): number {
    const n = this.#u64Safe(what);
    if (n * minBytes > this.size - this.#pos) this.#fail(`${what} ${n} exceeds the file (truncated?)`);
    return n;
  }

  #valueType(): number {
    const type = this.#u32At("value type");
    if (type >= GGUF_VALUE_TYPES.length) {
      this.#fail(`${this.#ctx} has value type ${type}, expected 0 to ${GGUF_VALUE_TYPES.length - 1}`);
    }
    return type;
  }

  #string(): string {
    const len = this.#u64Safe("string length");
    if (len > this.size - this.#pos) {
      this.#fail(`${this.#ctx}: string length ${len} exceeds the file (truncated?)`);
    }
    const at = this.#need(len, "string");
    this.#pos += len;
    return this.#decoder.decode(this.#buf.subarray(at, at + len));
  }

  #value(type: number, depth: number): [GgufValue, string] {
    const name = GGUF_VALUE_TYPES[type];
    if (name === "string") return [this.#string(), name];
    if (name === "array") return this.#array(depth);
    const size = MIN_SIZE[type];
    const at = this.#need(size, `${name} value`);
    this.#pos += size;
    const v = this.#view;
    switch (name) {
      case "u8":
        return [v.getUint8(at), name];
      case "i8":
        return [v.getInt8(at), name];
      case "u16":
        return [v.getUint16(at, true), name];
      case "i16":
        return [v.getInt16(at, true), name];
      case "u32":
        return [v.getUint32(at, true), name];
      case "i32":
        return [v.getInt32(at, true), name];
      case "f32":
        return [v.getFloat32(at, true), name];
      case "f64":
        return [v.getFloat64(at, true), name];
      case "bool":
        return [this.#bool(v.getUint8(at)), name];
      case "u64":
        return [safeNumber(v.getBigUint64(at, true)), name];
      default: // i64
        return [safeNumber(v.getBigInt64(at, true)), name];
    }
  }

  #bool(byte: number): boolean {
    if (byte > 1) this.#fail(`${this.#ctx} has bool byte ${byte}, expected 0 or 1`);
    return byte === 1;
  }

  #array(depth: number): [GgufValue, string] {
    if (depth >= MAX_ARRAY_DEPTH) this.#fail(`${this.#ctx} nests arrays deeper than ${MAX_ARRAY_DEPTH}`);
    const type = this.#valueType();
    const name = GGUF_VALUE_TYPES[type];
    const count = this.#u64Safe("array length");
    if (count * MIN_SIZE[type] > this.size - this.#pos) {
      this.#fail(`${this.#ctx} array length ${count} exceeds the file (truncated?)`);
    }
    const typeName = `array<${name}>`;
    switch (name) {
      case "string":
        return [this.#stringArray(count), typeName];
      case "array": {
        const out: GgufValue[] = [];
        for (let i = 0; i < count; i++) out.push(this.#array(depth + 1)[0]);
        return [out, typeName];
      }
      case "bool": {
        const at = this.#need(count, "bool array");
        this.#pos += count;
        const out: boolean[] = new Array(count);
        for (let i = 0; i < count; i++) out[i] = this.#bool(this.#buf[at + i]);
        return [out, typeName];
      }
      default: {
        const Ctor = TYPED[name];
        const bytes = count * Ctor.BYTES_PER_ELEMENT;
        const at = this.#need(bytes, `${name} array`);
        this.#pos += bytes;
        const out = new Ctor(count);
        new Uint8Array(out.buffer).set(this.#buf.subarray(at, at + bytes));
        return [out, typeName];
      }
    }
  }

  /** Reads `count` strings with one UTF-8 decode for all of them (the 128k-token vocab path). */
  #stringArray(count: number): string[] {
    const ends = new Float64Array(count); // byte ends in `bytes`
    const ends16 = new Float64Array(count); // UTF-16 ends in the decoded whole
    let bytes: Uint8Array = new Uint8Array(Math.min(1 << 20, this.size - this.#pos));
    let total = 0;
    let units = 0;
    let boundaries = true; // every non-empty string starts on a character boundary
    for (let i = 0; i < count;) {
      // Fast path: whole strings inside the buffered window; the slow path refills it.
      const buf = this.#buf;
      const limit = this.#len;
      let at = this.#pos - this.#base;
      let len = 0;
      for (; i < count && at + 8 <= limit; i++) {
        len = buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16);
        if (buf[at + 3] !== 0 || (buf[at + 4] | buf[at + 5] | buf[at + 6] | buf[at + 7]) !== 0) break;
        if (at + 8 + len > limit) break;
        at += 8;
        if (total + len > bytes.length) bytes = grow(bytes, total, total + len, this.size);
        if (len > 0 && (buf[at] & 0xc0) === 0x80) boundaries = false;
        for (let k = 0; k < len; k++) {
          const b = buf[at + k];
          bytes[total + k] = b;
          if ((b & 0xc0) !== 0x80) units += b >= 0xf0 ? 2 : 1;
        }
        at += len;
        total += len;
        ends[i] = total;
        ends16[i] = units;
      }
      this.#pos = this.#base + at;
      if (i === count) break;
      len = this.#u64Safe("string length");
      if (len > this.size - this.#pos) {
        this.#fail(`${this.#ctx}: string #${i} length ${len} exceeds the file (truncated?)`);
      }
      at = this.#need(len, `string #${i}`);
      this.#pos += len;
      if (total + len > bytes.length) bytes = grow(bytes, total, total + len, this.size);
      const b0 = this.#buf;
      if (len > 0 && (b0[at] & 0xc0) === 0x80) boundaries = false;
      for (let k = 0; k < len; k++) {
        const b = b0[at + k];
        bytes[total + k] = b;
        if ((b & 0xc0) !== 0x80) units += b >= 0xf0 ? 2 : 1;
      }
      total += len;
      ends[i] = total;
      ends16[i] = units;
      i++;
    }
    const out: string[] = new Array(count);
    let all: string | undefined;
    try {
      // A valid whole whose pieces each start on a character boundary splits into valid pieces.
      if (boundaries) {
        all = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(0, total));
      }
    } catch {
      all = undefined; // invalid UTF-8 somewhere: decode each string on its own below
    }
    for (let i = 0, start = 0, start16 = 0; i < count; i++) {
      out[i] = all !== undefined
        ? all.slice(start16, ends16[i])
        : this.#decoder.decode(bytes.subarray(start, ends[i]));
      start = ends[i];
      start16 = ends16[i];
    }
    return out;
  }
}

const TYPED = {
  u8: Uint8Array,
  i8: Int8Array,
  u16: Uint16Array,
  i16: Int16Array,
  u32: Uint32Array,
  i32: Int32Array,
  f32: Float32Array,
  f64: Float64Array,
  u64: BigUint64Array,
  i64: BigInt64Array,
} as const;

/** A copy of `bytes[0..used)` in a buffer of at least `need` bytes (doubling, at most `cap`). */
function grow(bytes: Uint8Array, used: number, need: number, cap: number): Uint8Array {
  const grown = new Uint8Array(Math.min(Math.max(2 * bytes.length, need), Math.max(cap, need)));
  grown.set(bytes.subarray(0, used));
  return grown;
}

function safeNumber(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
