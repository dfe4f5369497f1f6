/**
 * loadModel(): the file layouts it accepts (bitnet-25's output.weight, bitnet's `.scale` tensors)
 * and the files it refuses, each with the tensor named; I2_S reads that regroup rows in fours.
 */
import { deepStrictEqual as assertEquals, equal, ok as assert, rejects } from "node:assert/strict";
import { chooseTernaryLayout, i2sChunks, loadModel, resolveHeadMode } from "../../../engine/model/loader.ts";
import { compileKernel, LAYOUT_GROUP_ROWS, WasmHost } from "../../../wasm/loader.ts";
import { openGguf } from "../../../engine/format/gguf.ts";
import { GGML_TYPE } from "../../../engine/format/ggml_types.ts";
import { ModelConfigError, modelConfigFromGguf } from "../../../engine/model/model_config.ts";
import { packTQ2, unpackTQ2 } from "../../../engine/format/ternary_pack.ts";
import { tinyModel } from "../../_models.ts";
import { rewriteGguf } from "../../_gguf_edit.ts";

const TOKENS = [1, 5, 9, 200, 31, 7];

async function logitsOf(path: string): Promise<Float32Array> {
  const { runtime } = await loadModel(path, { threads: 2, nCtx: 32, maxBatch: 8, maxOut: 8 });
  try {
    const out = await runtime.forward({
      tokens: TOKENS,
      pos: TOKENS.map((_, i) => i),
      slot: TOKENS.map(() => 0),
      outIdx: [5],
    });
    return out.slice();
  } finally {
    await runtime.close();
  }
}

const tmp = () => Deno.makeTempFileSync({ suffix: ".gguf" });

Deno.test("loadModel() runs a bitnet-25 file (untied output.weight) like the tied bitnet-b1.58 one", async () => {
  assertEquals(await logitsOf(await tinyModel({ arch: "bitnet-25" })), await logitsOf(await tinyModel()));
});

Deno.test("loadModel() folds bitnet `.scale` tensors into the ternary scale", async () => {
  const src = await tinyModel({ arch: "bitnet", type: "tq2_0" });
  // halve every block scale and add a `.scale` of 2: the same model
  const out = rewriteGguf(src, tmp(), (tensors) => {
    const extra = [];
    for (const t of tensors) {
      if (t.type !== GGML_TYPE.TQ2_0) continue;
      const n = t.dims[0] * t.dims[1];
      const { trits, scales } = unpackTQ2(t.data, n);
      t.data = packTQ2(trits, scales.map((s) => s / 2));
      extra.push({
        name: t.name.replace(/\.weight$/, ".scale"),
        type: GGML_TYPE.F32,
        dims: [1],
        data: new Uint8Array(new Float32Array([2]).buffer),
      });
    }
    return [...tensors, ...extra];
  });
  assertEquals(await logitsOf(out), await logitsOf(src));
  Deno.removeSync(out);
});

Deno.test("loadModel() refuses a TQ2_0 tensor whose blocks have different scales (not exactly ternary)", async () => {
  const out = rewriteGguf(await tinyModel({ arch: "bitnet", type: "tq2_0" }), tmp(), (tensors) => {
    const t = tensors.find((x) => x.name === "blk.1.ffn_gate.weight")!;
    new DataView(t.data.buffer).setFloat16(66 * 3 + 64, 0.123, true); // block 3's d
    return tensors;
  });
  await rejects(
    loadModel(out, { threads: 1 }),
    (e: Error) =>
      e instanceof ModelConfigError &&
      /blk\.1\.ffn_gate\.weight" \(TQ2_0\) cannot be repacked exactly/.test(e.message),
  );
  Deno.removeSync(out);
});

Deno.test("loadModel() refuses I2_S data holding the invalid code 3", async () => {
  const out = rewriteGguf(await tinyModel(), tmp(), (tensors) => {
    tensors.find((x) => x.name === "blk.0.attn_q.weight")!.data[100] = 0xff;
    return tensors;
  });
  await rejects(
    loadModel(out, { threads: 1 }),
    /tensor "blk\.0\.attn_q\.weight" holds the invalid 2-bit code 3/,
  );
  Deno.removeSync(out);
});

Deno.test("loadModel() refuses an F16 embedding with infinities or NaNs, in every head mode", async () => {
  const out = rewriteGguf(await tinyModel(), tmp(), (tensors) => {
    new DataView(tensors.find((x) => x.name === "token_embd.weight")!.data.buffer).setUint16(
      2 * 777,
      0x7c00,
      true,
    );
    return tensors;
  });
  for (const head of ["file", "q8_0", "q7"] as const) {
    await rejects(
      loadModel(out, { threads: 1, head }),
      /tensor "token_embd\.weight" holds an infinite or NaN value/,
    );
  }
  Deno.removeSync(out);
});

Deno.test("loadModel() refuses a memory plan over 4 GiB and says what to lower", async () => {
  await rejects(
    loadModel(await tinyModel(), { threads: 1, nCtx: 256, nSlots: 70000 }),
    (e: Error) => e instanceof RangeError && /limited to 4 GiB: lower --ctx or --slots/.test(e.message),
  );
});

Deno.test("loadModel() reports a missing file as NotFound", async () => {
  await rejects(loadModel("/nonexistent/model.gguf"), Deno.errors.NotFound);
});

Deno.test("head auto keeps a small F16 head exact and quantizes a 2B4T-sized one to Q7", async () => {
  const path = await tinyModel();
  const config = modelConfigFromGguf(await openGguf(path));
  assertEquals(config.output.type, GGML_TYPE.F16);
  assertEquals(resolveHeadMode("auto", config), "file");
  const big = { ...config, output: { ...config.output, nbytes: 128256 * 2560 * 2 } };
  assertEquals(resolveHeadMode("auto", big), "q7");
  const q8 = { ...big, output: { ...big.output, type: GGML_TYPE.Q8_0 } };
  assertEquals(resolveHeadMode("auto", q8), "file");
  for (const mode of ["file", "q8_0", "q7"] as const) assertEquals(resolveHeadMode(mode, big), mode);
  const { runtime } = await loadModel(path, { threads: 1, nCtx: 16, maxBatch: 4, maxOut: 4, head: "auto" });
  try {
    assertEquals(runtime.headType, "F16");
  } finally {
    await runtime.close();
  }
});

for (const layout of ["r4", "r16"] as const) {
  Deno.test(`I2_S reads start at groups of rows (${layout}), and placing them one by one equals regrouping the whole`, async () => {
    const km = await compileKernel("simd128");
    const memory = new WebAssembly.Memory({ initial: 64, maximum: 64, shared: true });
    const host = await WasmHost.create(km, memory, km.heapBase + 65536);
    const base = 1 << 20, tmp = 2 << 20, whole = 3 << 20, staging = 3.5 * (1 << 20);
    const group = LAYOUT_GROUP_ROWS[layout];
    for (
      const [rows, cols, chunk] of [[23, 256, 512], [8, 128, 128], [6, 384, 1000], [9, 128, 100000], [
        50,
        640,
        4000,
      ]]
    ) {
      const nbytes = (rows * cols) / 4 + 32;
      const chunks = i2sChunks(rows, cols, nbytes, chunk, layout);
      equal(chunks.reduce((s, c) => s + c.bytes, 0), nbytes, "the reads tile the tensor");
      equal(chunks.reduce((s, c) => s + c.rows, 0), rows, "every row is in exactly one read");
      let at = 0;
      for (const c of chunks) {
        equal(c.at, at);
        equal(c.at % ((group * cols) / 4), 0, "a read starts at a group of rows");
        at += c.bytes;
      }
      const bytes = new Uint8Array(memory.buffer);
      for (let i = 0; i < nbytes; i++) bytes[staging + i] = bytes[whole + i] = (i * 2654435761) >>> 24;
      bytes.fill(0, base, base + nbytes);
      // as the loader does: each read placed from staging; and the whole tensor regrouped in place
      for (const c of chunks) host.placeI2s(staging + c.at, base + c.at, c.rows, cols, c.bytes, layout);
      host.interleaveI2s(whole, rows, cols, tmp, layout);
      assertEquals(
        bytes.slice(base, base + nbytes),
        bytes.slice(whole, whole + nbytes),
        `${rows}x${cols} by ${chunk}`,
      );
      // and the layout is the kernels' (bn_i2_row, bn_i2_r16_at): every code where they read it
      const code = (m: number, j: number) => {
        const b = (m * cols) / 4 + 32 * (j >> 7) + (j & 31);
        return (((b * 2654435761) >>> 24) >> (6 - 2 * ((j & 127) >> 5))) & 3;
      };
      for (let m = 0; m < rows; m++) {
        for (let j = 0; j < cols; j++) {
          // tail rows past the last group keep the file layout
          let to = (m * cols) / 4 + 32 * (j >> 7) + (j & 31), shift = 6 - 2 * ((j & 127) >> 5);
          if (m < (rows & -group) && layout === "r4") {
            to = (m >> 2) * cols + (4 * (j >> 7) + (m & 3)) * 32 + (j & 31);
          }
          if (m < (rows & -group) && layout === "r16") {
            to = (m >> 4) * 4 * cols + (j >> 4) * 64 + ((m >> 2) & 3) * 16 + (j & 15);
            shift = 2 * (m & 3);
          }
          if (((bytes[whole + to] >> shift) & 3) !== code(m, j)) {
            throw new Error(
              `${layout} ${rows}x${cols}: row ${m} column ${j} is not where the kernels read it`,
            );
          }
        }
      }
    }
  });
}

/** `src` with one F32 value of `tensor` set to `value`. */
function withF32(src: string, tensor: string, index: number, value: number): string {
  return rewriteGguf(src, tmp(), (tensors) => {
    const t = tensors.find((x) => x.name === tensor)!;
    new DataView(t.data.buffer, t.data.byteOffset).setFloat32(4 * index, value, true);
    return tensors;
  });
}

Deno.test("loadModel() refuses a NaN, infinite or absurd F32 norm weight, naming the tensor and element", async () => {
  const src = await tinyModel();
  const cases: [string, number, number, RegExp][] = [
    ["output_norm.weight", 0, NaN, /tensor "output_norm\.weight" holds NaN at element 0/],
    ["output_norm.weight", 255, Infinity, /tensor "output_norm\.weight" holds \+Infinity at element 255/],
    ["blk.1.attn_norm.weight", 7, 3e38, /"blk\.1\.attn_norm\.weight" holds 3\.0000000\d+e\+38 at element 7/],
    [
      "blk.0.ffn_sub_norm.weight",
      700,
      -Infinity,
      /"blk\.0\.ffn_sub_norm\.weight" holds -Infinity at element 700/,
    ],
  ];
  for (const [tensor, index, value, re] of cases) {
    const out = withF32(src, tensor, index, value);
    await rejects(loadModel(out, { threads: 2 }), (e: Error) => {
      return e instanceof ModelConfigError && re.test(e.message) && /within \+-1000000/.test(e.message);
    });
    Deno.removeSync(out);
  }
});

Deno.test("loadModel() refuses an absurd or non-finite ternary scale and a non-finite Q8_0 block scale", async () => {
  const src = await tinyModel();
  const scaled = rewriteGguf(src, tmp(), (tensors) => {
    const t = tensors.find((x) => x.name === "blk.0.attn_q.weight")!;
    new DataView(t.data.buffer, t.data.byteOffset).setFloat32((256 * 256) / 4, 3e38, true);
    return tensors;
  });
  await rejects(
    loadModel(scaled, { threads: 1 }),
    /tensor "blk\.0\.attn_q\.weight" has an absurd scale 3\.0000000\d+e\+38, expected a finite value within \+-1000000/,
  );
  Deno.removeSync(scaled);
  const q8 = rewriteGguf(await tinyModel({ embd: "q8_0" }), tmp(), (tensors) => {
    const t = tensors.find((x) => x.name === "token_embd.weight")!;
    new DataView(t.data.buffer, t.data.byteOffset).setUint16(34 * 1000, 0x7e00, true); // NaN
    return tensors;
  });
  await rejects(
    loadModel(q8, { threads: 2 }),
    /tensor "token_embd\.weight" holds a non-finite scale in Q8_0 block 1000/,
  );
  Deno.removeSync(q8);
});

Deno.test("chooseTernaryLayout() takes an explicit layout, keeps r4 without revec or with ref, else probes", async () => {
  const km = await compileKernel("relaxed");
  assertEquals(await chooseTernaryLayout(km, "relaxed", { layout: "r16", revec: false }), {
    layout: "r16",
    probe: null,
  });
  assertEquals(await chooseTernaryLayout(km, "relaxed", { revec: false }), { layout: "r4", probe: null });
  assertEquals(await chooseTernaryLayout(km, "ref", {}), { layout: "r4", probe: null });
  const { layout, probe } = await chooseTernaryLayout(km, "relaxed", {});
  assert(probe !== null);
  for (const l of ["r4", "r16"] as const) {
    const rates: number[] = [probe.gmacs[l].decode, probe.gmacs[l].batch];
    for (const v of rates) {
      assert(Number.isFinite(v) && v > 0, `${l}: ${v}`);
    }
  }
  // the layout whose decode and batched passes take less time per activation row
  const cost = (l: "r4" | "r16") => 1 / probe.gmacs[l].decode + 1 / probe.gmacs[l].batch;
  assertEquals(layout, cost("r16") < cost("r4") ? "r16" : "r4");
  assertEquals(probe.layout, layout);
});
