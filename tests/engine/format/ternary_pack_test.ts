import assert from "node:assert/strict";
import {
  decodeF16,
  dequantizeQ8_0,
  encodeF16,
  packI2S,
  packTQ1,
  packTQ2,
  quantizeQ8_0,
  unpackI2S,
  unpackTQ1,
  unpackTQ2,
} from "../../../engine/format/ternary_pack.ts";

/** Deterministic random trits (xorshift32). */
function randomTrits(n: number, seed: number): Int8Array {
  const out = new Int8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >>> 17, x ^= x << 5;
    out[i] = ((x >>> 0) % 3) - 1;
  }
  return out;
}

/** Trits of `n` zeros with the given (index, trit) pairs set. */
function tritsWith(n: number, set: [number, number][]): Int8Array {
  const t = new Int8Array(n);
  for (const [i, v] of set) t[i] = v;
  return t;
}

const bytesOf = (data: Uint8Array, from: number, to: number) => [...data.subarray(from, to)];

Deno.test("packI2S() and unpackI2S() are exact inverses on random trits of odd shapes", () => {
  // rows x cols with rows * cols a multiple of 128 (the layout flattens the whole matrix)
  for (
    const [rows, cols, seed] of [[1, 128, 1], [3, 128, 2], [7, 384, 3], [5, 640, 4], [1, 6912, 5], [
      9,
      2560,
      6,
    ]]
  ) {
    const trits = randomTrits(rows * cols, seed);
    const packed = packI2S(trits, 1.25);
    assert.equal(packed.length, (rows * cols) / 4 + 32);
    const { trits: back, scale } = unpackI2S(packed, rows * cols);
    assert.deepEqual(back, trits);
    assert.equal(scale, 1.25);
  }
});

Deno.test("packI2S() puts trit j of a block in byte j % 32 at bits 6 - 2 * (j / 32), MSB first", () => {
  // All zeros -> code 1 in every field: 0b01010101.
  const zero = packI2S(new Int8Array(128), 1);
  assert.deepEqual(bytesOf(zero, 0, 32), new Array(32).fill(0x55));
  // Element 0 = +1 (code 2) -> bits 7-6 of byte 0: 0b10010101.
  assert.equal(packI2S(tritsWith(128, [[0, 1]]), 1)[0], 0x95);
  // Element 32 = -1 (code 0) -> bits 5-4 of byte 0: 0b01000101.
  assert.equal(packI2S(tritsWith(128, [[32, -1]]), 1)[0], 0x45);
  // Element 127 = +1 -> byte 31, bits 1-0: 0b01010110.
  assert.equal(packI2S(tritsWith(128, [[127, 1]]), 1)[31], 0x56);
  // Element 128 starts the second block: byte 32, bits 7-6.
  const two = packI2S(tritsWith(256, [[128 + 65, -1]]), 1);
  assert.equal(two[32 + 1], 0x51); // element 65 of block 1 -> byte 1, bits 3-2 = 00
  // The f32 scale sits little-endian at byte n/4, then 28 zero bytes.
  const s = packI2S(new Int8Array(128), 1.5);
  assert.deepEqual(bytesOf(s, 32, 36), [0x00, 0x00, 0xc0, 0x3f]);
  assert.deepEqual(bytesOf(s, 36, 64), new Array(28).fill(0));
});

Deno.test("unpackI2S() ignores the 28 bytes after the scale and refuses code 3", () => {
  const packed = packI2S(randomTrits(256, 9), 2);
  packed.fill(0xee, 256 / 4 + 4);
  assert.equal(unpackI2S(packed, 256).scale, 2);
  packed[5] = 0xff;
  assert.throws(() => unpackI2S(packed, 256), /code 3/);
});

Deno.test("packTQ2() and unpackTQ2() are exact inverses on random trits of odd shapes", () => {
  for (const [rows, cols, seed] of [[1, 256, 1], [3, 512, 2], [7, 256, 3], [2, 2560, 4], [5, 6912, 5]]) {
    const trits = randomTrits(rows * cols, seed);
    const scales = Float32Array.from({ length: (rows * cols) / 256 }, (_, i) => 0.5 + i / 64);
    const packed = packTQ2(trits, scales);
    assert.equal(packed.length, ((rows * cols) / 256) * 66);
    const back = unpackTQ2(packed, rows * cols);
    assert.deepEqual(back.trits, trits);
    assert.deepEqual(back.scales, scales.map(Math.f16round));
  }
});

Deno.test("packTQ2() stores trit h*128 + l*32 + m at bits 2l of byte h*32 + m, LSB first, then fp16 d", () => {
  const zero = packTQ2(new Int8Array(256), 1);
  assert.deepEqual(bytesOf(zero, 0, 64), new Array(64).fill(0x55));
  assert.deepEqual(bytesOf(zero, 64, 66), [0x00, 0x3c]); // fp16 1.0
  assert.equal(packTQ2(tritsWith(256, [[0, 1]]), 1)[0], 0x56); // code 2 in bits 1-0
  assert.equal(packTQ2(tritsWith(256, [[32, -1]]), 1)[0], 0x51); // code 0 in bits 3-2
  assert.equal(packTQ2(tritsWith(256, [[96 + 5, 1]]), 1)[5], 0x95); // l = 3: bits 7-6
  assert.equal(packTQ2(tritsWith(256, [[128, -1]]), 1)[32], 0x54); // second half starts at byte 32
  assert.equal(packTQ2(tritsWith(256, [[255, 1]]), 1)[63], 0x95); // 128 + 3*32 + 31
  assert.deepEqual(bytesOf(packTQ2(new Int8Array(512), [1, -2]), 130, 132), [0x00, 0xc0]); // block 1: d = -2
});

Deno.test("unpackTQ2() refuses code 3", () => {
  const packed = packTQ2(new Int8Array(256), 1);
  packed[10] = 0x57;
  assert.throws(() => unpackTQ2(packed, 256), /code 3/);
});

Deno.test("packTQ1() and unpackTQ1() are exact inverses on random trits of odd shapes", () => {
  for (const [rows, cols, seed] of [[1, 256, 1], [3, 512, 2], [7, 256, 3], [2, 2560, 4], [5, 6912, 5]]) {
    const trits = randomTrits(rows * cols, seed);
    const packed = packTQ1(trits, 0.75);
    assert.equal(packed.length, ((rows * cols) / 256) * 54);
    const back = unpackTQ1(packed, rows * cols);
    assert.deepEqual(back.trits, trits);
    assert.ok(back.scales.every((d) => d === 0.75));
  }
});

Deno.test("packTQ1() stores ceil(q * 256 / 243) for every 5-trit value q, first trit most significant", () => {
  // Trits m + 32n of a block go to byte m as digit n; try all 243 digit combinations in byte 0.
  for (let q = 0; q < 243; q++) {
    const digits = [81, 27, 9, 3, 1].map((p) => Math.floor(q / p) % 3);
    const trits = tritsWith(256, digits.map((d, n) => [32 * n, d - 1]));
    const packed = packTQ1(trits, 1);
    assert.equal(packed[0], Math.ceil((q * 256) / 243), `q = ${q}`);
    // The spec's unpack formula: digit n = ((uint8)(byte * 3^n) * 3) >> 8.
    for (let n = 0; n < 5; n++) {
      assert.equal((((packed[0] * 3 ** n) & 255) * 3) >> 8, digits[n], `q = ${q}, n = ${n}`);
    }
  }
});

Deno.test("packTQ1() places the 16-byte and qh groups as ggml does", () => {
  const zero = packTQ1(new Int8Array(256), 1);
  // q = 121 (five 0 trits) -> 128; qh: q = 40 * 3 = 120 -> 127; then fp16 1.0.
  assert.deepEqual(bytesOf(zero, 0, 48), new Array(48).fill(128));
  assert.deepEqual(bytesOf(zero, 48, 52), new Array(4).fill(127));
  assert.deepEqual(bytesOf(zero, 52, 54), [0x00, 0x3c]);
  // All +1: q = 242 -> 255 everywhere; qh: (80 * 3 = 240) -> 253.
  const ones = packTQ1(new Int8Array(256).fill(1), 1);
  assert.deepEqual(bytesOf(ones, 0, 48), new Array(48).fill(255));
  assert.deepEqual(bytesOf(ones, 48, 52), new Array(4).fill(253));
  // Element 160 + m + 16n -> byte 32 + m, digit n: element 160 = +1 alone -> q = 202 -> 213.
  assert.equal(packTQ1(tritsWith(256, [[160, 1]]), 1)[32], 213);
  assert.equal(packTQ1(tritsWith(256, [[160 + 16 * 4 + 15, -1]]), 1)[47], Math.ceil(((121 - 1) * 256) / 243));
  // Element 240 + j + 4m -> qh[j], digit m of 4 (then x3): element 241 = -1 -> q = (40 - 27) * 3 = 39 -> 42.
  assert.equal(packTQ1(tritsWith(256, [[241, -1]]), 1)[49], 42);
  assert.equal(packTQ1(tritsWith(256, [[255, 1]]), 1)[51], Math.ceil(((40 + 1) * 3 * 256) / 243));
});

Deno.test("pack functions refuse non-ternary values and lengths that do not fill blocks", () => {
  assert.throws(() => packI2S(tritsWith(128, [[7, 2]]), 1), RangeError);
  assert.throws(() => packTQ2(tritsWith(256, [[200, -2]]), 1), RangeError);
  assert.throws(() => packTQ1(tritsWith(256, [[250, 2]]), 1), RangeError);
  assert.throws(() => packI2S(new Int8Array(64), 1), /multiple of 128/);
  assert.throws(() => packTQ2(new Int8Array(128), 1), /multiple of 256/);
  assert.throws(() => packTQ1(new Int8Array(300), 1), /multiple of 256/);
  assert.throws(() => unpackTQ1(new Uint8Array(53), 256), RangeError);
  assert.throws(() => packTQ2(new Int8Array(512), [1]), /only 1 scales/);
});

Deno.test("encodeF16() rounds to nearest even and decodeF16() inverts it", () => {
  assert.deepEqual([...encodeF16([1, -2, 65504, 0.1, 65520, 2 ** -24])], [
    0x00,
    0x3c,
    0x00,
    0xc0,
    0xff,
    0x7b,
    0x66,
    0x2e,
    0x00,
    0x7c,
    0x01,
    0x00,
  ]);
  assert.deepEqual([...decodeF16(new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x66, 0x2e]))], [
    1,
    -2,
    Math.f16round(0.1),
  ]);
  const odd = new Uint8Array([9, 0x00, 0x3c]).subarray(1); // misaligned view
  assert.deepEqual([...decodeF16(odd)], [1]);
  assert.throws(() => decodeF16(new Uint8Array(3)), RangeError);
});

Deno.test("quantizeQ8_0() matches ggml: d = absmax / 127 as fp16, q = roundf(x / d)", () => {
  const x = new Float32Array(64);
  x.set([1, -1, 0.5, -0.5, 0.25]);
  const q = quantizeQ8_0(x);
  assert.equal(q.length, 68);
  // d = fp16(1/127) = 0x2008; 0.5 * 127 = 63.5 rounds away from zero to 64; 0.25 -> 31.75 -> 32.
  assert.deepEqual(bytesOf(q, 0, 7), [0x08, 0x20, 127, 0x81, 64, 0xc0, 32]);
  assert.deepEqual(bytesOf(q, 34, 68), new Array(34).fill(0)); // an all-zero block: d = 0, q = 0
  const back = dequantizeQ8_0(q, 64);
  assert.equal(back[0], Math.f16round(1 / 127) * 127);
  assert.equal(back[3], Math.f16round(1 / 127) * -64);
  assert.throws(() => quantizeQ8_0(new Float32Array(33)), RangeError);
});
