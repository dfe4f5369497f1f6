import assert from "node:assert/strict";
import { GgufError, openGguf } from "../../../engine/format/gguf.ts";
import {
  encodeGgufHeader,
  type GgufTensorSpec,
  type GgufTypedValue,
  writeGguf,
} from "../../../engine/format/gguf_writer.ts";
import { GGML_TYPE, tensorNbytes } from "../../../engine/format/ggml_types.ts";

const dir = Deno.makeTempDirSync({ prefix: "gguf_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let serial = 0;
const tmp = () => `${dir}/${serial++}.gguf`;

/** Bytes 0, 1, 2, ... of a tensor of `type` and `dims`. */
function ramp(type: number, dims: number[]): Uint8Array {
  return Uint8Array.from({ length: tensorNbytes(type, dims) }, (_, i) => (i * 7 + 3) & 255);
}

const EVERY_TYPE: [string, GgufTypedValue][] = [
  ["u8", { type: "u8", value: 255 }],
  ["i8", { type: "i8", value: -128 }],
  ["u16", { type: "u16", value: 65535 }],
  ["i16", { type: "i16", value: -32768 }],
  ["u32", { type: "u32", value: 4294967295 }],
  ["i32", { type: "i32", value: -2147483648 }],
  ["f32", { type: "f32", value: 1.5 }],
  ["bool.true", { type: "bool", value: true }],
  ["bool.false", { type: "bool", value: false }],
  ["string", { type: "string", value: "héllo, wörld 🦕" }],
  ["string.empty", { type: "string", value: "" }],
  ["string.bom", { type: "string", value: "\uFEFFkept" }],
  ["u64.small", { type: "u64", value: 12345 }],
  ["u64.big", { type: "u64", value: 2n ** 64n - 1n }],
  ["i64.small", { type: "i64", value: -5 }],
  ["i64.big", { type: "i64", value: -(2n ** 63n) }],
  ["f64", { type: "f64", value: Math.PI }],
  ["arr.u8", { type: "array", elem: "u8", value: [0, 1, 255] }],
  ["arr.i8", { type: "array", elem: "i8", value: [-128, 0, 127] }],
  ["arr.u16", { type: "array", elem: "u16", value: [1, 65535] }],
  ["arr.i16", { type: "array", elem: "i16", value: [-1, 32767] }],
  ["arr.u32", { type: "array", elem: "u32", value: [7, 4294967295] }],
  ["arr.i32", { type: "array", elem: "i32", value: new Int32Array([-3, 3]) }],
  ["arr.f32", { type: "array", elem: "f32", value: new Float32Array([0.25, -1e-5]) }],
  ["arr.bool", { type: "array", elem: "bool", value: [true, false, true] }],
  ["arr.string", { type: "array", elem: "string", value: ["a", "", "Ġthe", "🦕x", "\uFEFF", "日本"] }],
  ["arr.u64", { type: "array", elem: "u64", value: [1n, 2n ** 63n] }],
  ["arr.i64", { type: "array", elem: "i64", value: [-1n, 5n] }],
  ["arr.f64", { type: "array", elem: "f64", value: [Math.E] }],
  ["arr.empty", { type: "array", elem: "string", value: [] }],
  ["arr.nested", {
    type: "array",
    elem: "array",
    value: [{ type: "array", elem: "i32", value: [1, 2] }, { type: "array", elem: "string", value: ["x"] }],
  }],
];

const EXPECTED: Record<string, unknown> = {
  "u64.big": 2n ** 64n - 1n,
  "i64.big": -(2n ** 63n),
  "arr.u8": new Uint8Array([0, 1, 255]),
  "arr.i8": new Int8Array([-128, 0, 127]),
  "arr.u16": new Uint16Array([1, 65535]),
  "arr.i16": new Int16Array([-1, 32767]),
  "arr.u32": new Uint32Array([7, 4294967295]),
  "arr.i32": new Int32Array([-3, 3]),
  "arr.f32": new Float32Array([0.25, -1e-5]),
  "arr.u64": new BigUint64Array([1n, 2n ** 63n]),
  "arr.i64": new BigInt64Array([-1n, 5n]),
  "arr.f64": new Float64Array([Math.E]),
  "arr.nested": [new Int32Array([1, 2]), ["x"]],
};

const TENSORS: GgufTensorSpec[] = [
  { name: "f32", type: GGML_TYPE.F32, dims: [3], data: ramp(GGML_TYPE.F32, [3]) },
  { name: "f16", type: GGML_TYPE.F16, dims: [5, 3], data: ramp(GGML_TYPE.F16, [5, 3]) },
  { name: "q8_0", type: GGML_TYPE.Q8_0, dims: [64, 2], data: ramp(GGML_TYPE.Q8_0, [64, 2]) },
  { name: "i2_s", type: GGML_TYPE.I2_S, dims: [128, 3], data: ramp(GGML_TYPE.I2_S, [128, 3]) },
  { name: "tq1_0", type: GGML_TYPE.TQ1_0, dims: [256, 2], data: ramp(GGML_TYPE.TQ1_0, [256, 2]) },
  {
    name: "tq2_0",
    type: GGML_TYPE.TQ2_0,
    dims: [512, 1, 1],
    data: () => [ramp(GGML_TYPE.TQ2_0, [512]).subarray(0, 100), ramp(GGML_TYPE.TQ2_0, [512]).subarray(100)],
  },
];

function roundTrip(version: 2 | 3, alignment?: number) {
  const path = tmp();
  const written = writeGguf(path, { metadata: EVERY_TYPE, tensors: TENSORS, version, alignment });
  const g = openGguf(path);
  const bytes = Deno.readFileSync(path);
  assert.equal(g.version, version);
  assert.equal(g.alignment, alignment ?? 32);
  assert.equal(g.fileSize, bytes.length);
  assert.equal(written.bytes, bytes.length);
  assert.equal(g.dataOffset, written.dataOffset);
  assert.equal(g.dataOffset % g.alignment, 0);
  for (const [key, typed] of EVERY_TYPE) {
    const want = key in EXPECTED ? EXPECTED[key] : typed.value;
    assert.deepEqual(g.metadata.get(key), want, key);
    const typeName = typed.type === "array" ? `array<${typed.elem}>` : typed.type;
    assert.equal(g.metadataTypes.get(key), typeName, key);
  }
  assert.equal(typeof g.metadata.get("u64.small"), "number");
  assert.deepEqual(g.tensors.map((t) => t.name), TENSORS.map((t) => t.name));
  for (const spec of TENSORS) {
    const t = g.tensorsByName.get(spec.name)!;
    assert.deepEqual(t.dims, spec.dims);
    assert.equal(t.type, spec.type);
    assert.equal(t.nbytes, tensorNbytes(spec.type, spec.dims));
    assert.equal(t.offset % g.alignment, 0);
    assert.deepEqual(
      bytes.subarray(t.offset, t.offset + t.nbytes),
      ramp(spec.type, [...spec.dims]),
      spec.name,
    );
  }
  return path;
}

Deno.test("openGguf() reads back every value type and tensor written by writeGguf() (v3)", () => {
  roundTrip(3);
});

Deno.test("openGguf() reads back every value type and tensor written by writeGguf() (v2)", () => {
  roundTrip(2);
});

Deno.test("openGguf() honours general.alignment other than 32", () => {
  for (const alignment of [1, 8, 64, 4096]) roundTrip(3, alignment);
});

Deno.test("tensorNbytes() matches ggml_nbytes for the official 2B4T shapes", () => {
  assert.equal(tensorNbytes(GGML_TYPE.F16, [2560, 128256]), 656670720);
  assert.equal(tensorNbytes(GGML_TYPE.I2_S, [2560, 2560]), 1638432);
  assert.equal(tensorNbytes(GGML_TYPE.I2_S, [2560, 640]), 409632);
  assert.equal(tensorNbytes(GGML_TYPE.I2_S, [6912, 2560]), 4423712);
  assert.equal(tensorNbytes(GGML_TYPE.TQ2_0, [2560, 2560]), 2560 * 10 * 66);
  assert.equal(tensorNbytes(GGML_TYPE.TQ1_0, [6912, 2560]), 2560 * 27 * 54);
  assert.equal(tensorNbytes(GGML_TYPE.Q8_0, [2560, 2]), 2 * 80 * 34);
  assert.throws(() => tensorNbytes(GGML_TYPE.TQ2_0, [100, 2]), RangeError);
  assert.throws(() => tensorNbytes(39, [256]), RangeError);
});

Deno.test("openGguf() refuses a truncated file with the tensor name", () => {
  const path = roundTrip(3);
  const whole = Deno.readFileSync(path);
  const g = openGguf(path);
  const last = g.tensors.at(-1)!;
  Deno.writeFileSync(path, whole.subarray(0, last.offset + 10));
  assert.throws(() => openGguf(path), (e: Error) => {
    assert.ok(e instanceof GgufError);
    assert.match(
      e.message,
      /^Cannot load model ".*": tensor "tq2_0" needs bytes \d+\.\.\d+ but the file has \d+/,
    );
    return true;
  });
});

Deno.test("openGguf() refuses a file cut at any byte with a GgufError", () => {
  const path = roundTrip(3);
  const whole = Deno.readFileSync(path);
  const cut = `${dir}/cut.gguf`;
  const lastEnd = openGguf(path).tensors.reduce((end, t) => Math.max(end, t.offset + t.nbytes), 0);
  for (let n = 0; n < lastEnd; n++) {
    Deno.writeFileSync(cut, whole.subarray(0, n));
    assert.throws(() => openGguf(cut), GgufError, `cut at ${n}`);
  }
});

// A tiny file built by hand: one key, then the given tensors, at explicit relative offsets.
function rawFile(
  tensors: { name: string; type: number; dims: number[]; offset: number }[],
  dataBytes = 4096,
  metadata: [string, GgufTypedValue][] = [["general.name", { type: "string", value: "t" }]],
): string {
  const header = encodeGgufHeader(metadata, tensors);
  const bytes = new Uint8Array(Math.ceil(header.length / 32) * 32 + dataBytes);
  bytes.set(header);
  const path = tmp();
  Deno.writeFileSync(path, bytes);
  return path;
}

function refuses(path: string, pattern: RegExp) {
  assert.throws(() => openGguf(path), (e: Error) => {
    assert.ok(e instanceof GgufError, `${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("openGguf() refuses overlapping tensors, naming both", () => {
  const path = rawFile([
    { name: "a", type: GGML_TYPE.F32, dims: [64], offset: 0 },
    { name: "b", type: GGML_TYPE.F32, dims: [8], offset: 224 },
  ]);
  refuses(path, /tensors "a" \(bytes \d+\.\.\d+\) and "b" \(bytes \d+\.\.\d+\) overlap/);
});

Deno.test("openGguf() refuses a misaligned tensor offset", () => {
  const path = rawFile([{ name: "w", type: GGML_TYPE.F32, dims: [4], offset: 36 }]);
  refuses(path, /tensor "w" has data offset 36, expected a multiple of the alignment 32/);
});

Deno.test("openGguf() refuses unknown tensor types and rows that do not fill blocks", () => {
  refuses(rawFile([{ name: "w", type: 99, dims: [4], offset: 0 }]), /tensor "w" has type 99 \(unknown\)/);
  refuses(rawFile([{ name: "w", type: 39, dims: [256], offset: 0 }]), /tensor "w" has type 39 \(TL2\)/);
  refuses(
    rawFile([{ name: "w", type: GGML_TYPE.TQ2_0, dims: [128, 2], offset: 0 }]),
    /tensor "w" with dims \[128, 2\] and type 35 \(TQ2_0\).*expected a multiple of 256/,
  );
  // A known but unsupported type is placed; the loader decides what it runs.
  const g = openGguf(rawFile([{ name: "w", type: 12, dims: [256, 2], offset: 0 }]));
  assert.equal(g.tensors[0].nbytes, 288);
});

Deno.test("openGguf() refuses huge dims, too many dims and duplicate tensor names", () => {
  refuses(rawFile([{ name: "w", type: GGML_TYPE.F32, dims: [2 ** 40, 2 ** 40], offset: 0 }]), /tensor "w"/);
  refuses(
    rawFile([{ name: "w", type: GGML_TYPE.F32, dims: [2 ** 30, 4], offset: 0 }]),
    /tensor "w" needs bytes/,
  );
  refuses(rawFile([{ name: "w", type: GGML_TYPE.F32, dims: [1, 1, 1, 1, 1], offset: 0 }]), /5 dimensions/);
  refuses(
    rawFile([{ name: "w", type: GGML_TYPE.F32, dims: [1], offset: 0 }, {
      name: "w",
      type: GGML_TYPE.F32,
      dims: [1],
      offset: 32,
    }]),
    /tensor "w" appears twice/,
  );
});

Deno.test("openGguf() refuses bad magic, unsupported versions and tiny files", () => {
  const path = rawFile([]);
  const bytes = Deno.readFileSync(path);
  Deno.writeFileSync(path, new Uint8Array([0x50, 0x4b, 3, 4, ...bytes.subarray(4)]));
  refuses(path, /not a GGUF file: it starts with bytes 50 4b 03 04, expected "GGUF"/);
  for (
    const [version, hint] of [[1, /version 1 is not supported, expected 2 or 3$/], [
      0x03000000,
      /big-endian/,
    ]] as const
  ) {
    const v = bytes.slice();
    new DataView(v.buffer).setUint32(4, version, true);
    Deno.writeFileSync(path, v);
    refuses(path, hint);
  }
  Deno.writeFileSync(path, new Uint8Array([0x47, 0x47]));
  refuses(path, /too short/);
});

/** Writes a one-key file and patches the u64 at `at` bytes after the key's value type field. */
function patched(value: GgufTypedValue, at: number, patch: bigint, extra: Uint8Array = new Uint8Array()) {
  const header = encodeGgufHeader([["k.e.y", value]], []);
  const bytes = new Uint8Array([...header, ...extra]);
  const valueAt = 24 + 8 + 5 + 4; // header, key length, "k.e.y", value type
  new DataView(bytes.buffer).setBigUint64(valueAt + at, patch, true);
  const path = tmp();
  Deno.writeFileSync(path, bytes);
  return path;
}

Deno.test("openGguf() refuses corrupted lengths and counts without allocating them", () => {
  refuses(
    patched({ type: "string", value: "abc" }, 0, 2n ** 60n),
    /key "k\.e\.y": string length \d+ exceeds the file/,
  );
  refuses(
    patched({ type: "string", value: "abc" }, 0, 1000n),
    /key "k\.e\.y": string length 1000 exceeds the file/,
  );
  refuses(
    patched({ type: "array", elem: "string", value: ["a", "b"] }, 4, 5000000n),
    /key "k\.e\.y" array length 5000000 exceeds the file \(truncated\?\)/,
  );
  refuses(
    patched({ type: "array", elem: "u32", value: [1, 2] }, 4, 2n ** 62n),
    /array length .* exceeds the file/,
  );
  refuses(
    patched({ type: "array", elem: "string", value: ["a", "b"] }, 12, 2n ** 40n),
    /key "k\.e\.y": string #0 length \d+ exceeds the file/,
  );
  // counts in the header
  const header = encodeGgufHeader([["a", { type: "u8", value: 1 }]], []);
  for (
    const [at, pattern] of [[8, /tensor count \d+ exceeds the file/], [
      16,
      /metadata key count \d+ exceeds the file/,
    ]] as const
  ) {
    const bytes = header.slice();
    new DataView(bytes.buffer).setBigUint64(at, 10n ** 12n, true);
    const path = tmp();
    Deno.writeFileSync(path, bytes);
    refuses(path, pattern);
  }
});

Deno.test("openGguf() refuses bad value types, bool bytes and duplicate keys", () => {
  const path = tmp();
  const bytes = encodeGgufHeader([["k", { type: "bool", value: true }]], []);
  bytes[bytes.length - 1] = 2;
  Deno.writeFileSync(path, bytes);
  refuses(path, /key "k" has bool byte 2, expected 0 or 1/);
  new DataView(bytes.buffer).setUint32(bytes.length - 5, 13, true);
  Deno.writeFileSync(path, bytes);
  refuses(path, /key "k" has value type 13, expected 0 to 12/);
  const twice = encodeGgufHeader([["k", { type: "u8", value: 1 }], ["k", { type: "u8", value: 2 }]], []);
  Deno.writeFileSync(path, twice);
  refuses(path, /key "k" appears twice/);
});

Deno.test("openGguf() refuses a general.alignment of the wrong type or not a power of 2", () => {
  refuses(
    rawFile([], 0, [["general.alignment", { type: "i32", value: 32 }]]),
    /general\.alignment" has type i32, expected u32/,
  );
  refuses(
    rawFile([], 0, [["general.alignment", { type: "u32", value: 48 }]]),
    /general\.alignment" is 48, expected a power of 2/,
  );
  refuses(rawFile([], 0, [["general.alignment", { type: "u32", value: 0 }]]), /general\.alignment" is 0/);
});

Deno.test("openGguf() decodes string arrays whose bytes split a character one by one", () => {
  const path = tmp();
  const bytes = encodeGgufHeader([["k", { type: "array", elem: "string", value: ["x", "y", "ok"] }]], []);
  const at = bytes.indexOf(0x78); // "x"
  bytes[at] = 0xc3; // "é" = c3 a9, split across two strings
  bytes[at + 9] = 0xa9;
  Deno.writeFileSync(path, bytes);
  assert.deepEqual(openGguf(path).metadata.get("k"), ["\uFFFD", "\uFFFD", "ok"]);
});

Deno.test("openGguf() reads a 128k-string vocabulary in one pass", () => {
  const chars = [..."Ġtoké🦕日本"];
  const tokens = Array.from(
    { length: 128256 },
    (_, i) => i.toString(36) + chars.slice(i % 5, i % 8).join(""),
  );
  const path = tmp();
  writeGguf(path, {
    metadata: [["tokenizer.ggml.tokens", { type: "array", elem: "string", value: tokens }]],
    tensors: [],
  });
  assert.deepEqual(openGguf(path).metadata.get("tokenizer.ggml.tokens"), tokens);
});

Deno.test("writeGguf() refuses wrong tensor sizes, duplicate keys and out-of-range values", () => {
  const path = tmp();
  const tensor = (data: GgufTensorSpec["data"]) => ({
    metadata: [],
    tensors: [{ name: "w", type: GGML_TYPE.F32, dims: [4], data }],
  });
  assert.throws(() => writeGguf(path, tensor(new Uint8Array(15))), /tensor "w" data is not 16 bytes/);
  assert.throws(() => writeGguf(path, tensor(() => [new Uint8Array(16), new Uint8Array(1)])), TypeError);
  assert.throws(() => Deno.statSync(path), Deno.errors.NotFound); // the partial file is removed
  const u8 = (value: number): [string, GgufTypedValue] => ["k", { type: "u8", value }];
  assert.throws(() => writeGguf(path, { metadata: [u8(1), u8(2)], tensors: [] }), /key "k" appears twice/);
  assert.throws(() => writeGguf(path, { metadata: [u8(256)], tensors: [] }), RangeError);
  assert.throws(() => writeGguf(path, { metadata: [u8(1.5)], tensors: [] }), TypeError);
  assert.throws(() => writeGguf(path, { metadata: [], tensors: [], alignment: 48 }), RangeError);
});

Deno.test("openGguf() quotes a corrupt tensor name escaped and cut to a readable length", () => {
  const placeholder = "A".repeat(100_000);
  const path = rawFile([{ name: placeholder, type: 99, dims: [4], offset: 0 }]);
  const bytes = Deno.readFileSync(path);
  const at = bytes.indexOf(0x41); // the name's first byte
  bytes.set([0x00, 0x1b, 0x5b, 0x33, 0x31, 0x6d, 0xff, 0x0a, 0x22], at + 2);
  Deno.writeFileSync(path, bytes);
  assert.throws(() => openGguf(path), (e: Error) => {
    assert.ok(e instanceof GgufError);
    assert.ok(e.message.length < 400, `${e.message.length} characters`);
    const raw = [...e.message].filter((ch) => ch.charCodeAt(0) < 0x20 || ch === "\x7f" || ch === "\ufffd");
    assert.deepEqual(raw, [], "no raw control bytes or U+FFFD");
    assert.ok(!e.message.includes("\n"), "one line");
    assert.match(e.message, /tensor "AA\\x00\\x1b\[31m\\ufffd\\n\\"A+…" \(100000 characters\) has type 99/);
    return true;
  });
});
