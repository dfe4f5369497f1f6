/**
 * modelConfigFromGguf(): architectures, the activation rule, and refusals that name the key or
 * tensor with expected vs found. Headers are edited in memory (no file needed past the first).
 */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { type GgufFile, type GgufTensorInfo, type GgufValue, openGguf } from "../../../engine/format/gguf.ts";
import { ModelConfigError, modelConfigFromGguf } from "../../../engine/model/model_config.ts";
import { GGML_TYPE } from "../../../engine/format/ggml_types.ts";
import { tinyModel } from "../../_models.ts";

/** A copy of `g` with metadata keys set (undefined deletes) and tensors edited. */
function edit(
  g: GgufFile,
  meta: Record<string, GgufValue | undefined>,
  tensors: (t: GgufTensorInfo[]) => GgufTensorInfo[] = (t) => t,
): GgufFile {
  const metadata = new Map(g.metadata);
  for (const [k, v] of Object.entries(meta)) v === undefined ? metadata.delete(k) : metadata.set(k, v);
  const list = tensors([...g.tensors]);
  return { ...g, metadata, tensors: list, tensorsByName: new Map(list.map((t) => [t.name, t])) };
}

const base = async (opts = {}) => openGguf(await tinyModel(opts));

Deno.test("modelConfigFromGguf() reads the shape, numerics and tensors of a bitnet-b1.58 file", async () => {
  const c = modelConfigFromGguf(await base());
  assertEquals([c.arch, c.dim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.ffnDim], [
    "bitnet-b1.58",
    256,
    2,
    4,
    2,
    64,
    768,
  ]);
  assertEquals([c.activation, c.tiedOutput, c.output.name], ["relu2", true, "token_embd.weight"]);
  assertEquals(c.layers[1].wDown.info.name, "blk.1.ffn_down.weight");
  assertEquals([c.layers[0].wk.rows, c.layers[0].wk.cols], [128, 256]);
  assertEquals(Object.isFrozen(c), true);
});

Deno.test("modelConfigFromGguf() uses output.weight as the head when a bitnet-25 file has it", async () => {
  const c = modelConfigFromGguf(await base({ arch: "bitnet-25" }));
  assertEquals([c.arch, c.tiedOutput, c.output.name], ["bitnet-25", false, "output.weight"]);
});

Deno.test("modelConfigFromGguf() picks the activation by the documented rule", async () => {
  const g = await base({ arch: "bitnet", type: "tq2_0" });
  assertEquals(modelConfigFromGguf(g).activation, "relu2"); // bitnet + gpt2 vocabulary
  assertEquals(modelConfigFromGguf(edit(g, { "tokenizer.ggml.model": "llama" })).activation, "silu");
  assertEquals(modelConfigFromGguf(edit(g, { "bitnet.hidden_activation": "silu" })).activation, "silu");
  assertEquals(modelConfigFromGguf(edit(g, { "bitnet.hidden_act": "relu2" })).activation, "relu2");
  const silu = openGguf(await tinyModel({ arch: "bitnet", type: "tq2_0", hiddenAct: "silu" }));
  assertEquals(modelConfigFromGguf(silu).activation, "silu");
  throws(
    () => modelConfigFromGguf(edit(g, { "bitnet.hidden_activation": "gelu" })),
    /hidden_activation" is "gelu", expected "relu2" or "silu"/,
  );
});

Deno.test("modelConfigFromGguf() refuses unknown architectures and missing keys by name", async () => {
  const g = await base();
  throws(() => modelConfigFromGguf(edit(g, { "general.architecture": "llama" })), ModelConfigError);
  throws(
    () => modelConfigFromGguf(edit(g, { "general.architecture": "llama" })),
    /"llama", expected one of bitnet-b1.58, bitnet-25, bitnet/,
  );
  throws(
    () => modelConfigFromGguf(edit(g, { "bitnet-b1.58.block_count": undefined })),
    /key "bitnet-b1.58.block_count" is missing/,
  );
  throws(() => modelConfigFromGguf(edit(g, { "bitnet-b1.58.embedding_length": 250 })), /embedding_length/);
  throws(
    () => modelConfigFromGguf(edit(g, { "bitnet-b1.58.attention.head_count_kv": 3 })),
    /head_count_kv 3/,
  );
});

Deno.test("modelConfigFromGguf() refuses missing tensors, wrong types and wrong shapes, naming the tensor", async () => {
  const g = await base();
  throws(
    () => modelConfigFromGguf(edit(g, {}, (t) => t.filter((x) => x.name !== "blk.1.attn_v.weight"))),
    /tensor "blk.1.attn_v.weight" is missing/,
  );
  throws(
    () =>
      modelConfigFromGguf(
        edit(g, {}, (t) => t.map((x) => x.name === "blk.0.ffn_up.weight" ? { ...x, type: 12 } : x)),
      ),
    /tensor "blk.0.ffn_up.weight" has type 12 \(Q4_K\), expected one of 36 \(I2_S\), 35 \(TQ2_0\), 34 \(TQ1_0\)/,
  );
  throws(
    () =>
      modelConfigFromGguf(
        edit(g, {}, (t) => t.map((x) => x.name === "blk.0.attn_k.weight" ? { ...x, dims: [256, 256] } : x)),
      ),
    /tensor "blk.0.attn_k.weight" has shape \[256, 256\], expected \[256, 128\]/,
  );
  throws(
    () =>
      modelConfigFromGguf(
        edit(g, {}, (t) => t.map((x) => x.name === "output_norm.weight" ? { ...x, type: GGML_TYPE.F16 } : x)),
      ),
    /tensor "output_norm.weight" has type 1 \(F16\), expected one of 0 \(F32\)/,
  );
  throws(
    () => modelConfigFromGguf(edit(g, { "bitnet-b1.58.vocab_size": 9 })),
    /vocab_size" is 9 but tensor "token_embd.weight" has 512 rows/,
  );
});

Deno.test("modelConfigFromGguf() refuses absurd hyper-parameters, naming the key and the range", async () => {
  const g = await base();
  const a = "bitnet-b1.58";
  const bad: [Record<string, GgufValue>, RegExp][] = [
    [{ [`${a}.attention.layer_norm_rms_epsilon`]: 0 }, /layer_norm_rms_epsilon" is 0, expected 1e-12 to 0.1/],
    [{ [`${a}.attention.layer_norm_rms_epsilon`]: 1e-30 }, /layer_norm_rms_epsilon" is 1e-30/],
    [{ [`${a}.attention.layer_norm_rms_epsilon`]: 3e38 }, /layer_norm_rms_epsilon" is 3e\+38/],
    [{ [`${a}.attention.layer_norm_rms_epsilon`]: NaN }, /layer_norm_rms_epsilon" is NaN, expected a number/],
    [
      { [`${a}.rope.freq_base`]: 0.5 },
      /rope.freq_base" is 0.5, expected more than 1 and at most 1000000000000/,
    ],
    [{ [`${a}.rope.freq_base`]: Infinity }, /rope.freq_base" is Infinity, expected a number/],
    [{ [`${a}.rope.freq_base`]: 1e30 }, /rope.freq_base" is 1e\+30/],
    [{ [`${a}.attention.head_count`]: 1e9 }, /head_count" is 1000000000, expected an integer from 1 to 1024/],
    [{ [`${a}.attention.head_count_kv`]: 8 }, /head_count_kv" is 8, more than head_count 4/],
    [{ [`${a}.block_count`]: 2 ** 40 }, /block_count" is 1099511627776, expected an integer from 1 to 1024/],
    [{ [`${a}.context_length`]: 2 ** 31 }, /context_length" is 2147483648/],
    [{ [`${a}.embedding_length`]: 1 << 20 }, /embedding_length" is 1048576/],
  ];
  for (const [meta, re] of bad) {
    throws(
      () => modelConfigFromGguf(edit(g, meta)),
      (e: Error) => e instanceof ModelConfigError && re.test(e.message),
    );
  }
});

Deno.test("modelConfigFromGguf() quotes metadata strings escaped and cut", async () => {
  const g = await base();
  const junk = "\u001b]0;pwned\u0007" + "x".repeat(50_000);
  throws(() => modelConfigFromGguf(edit(g, { "general.architecture": junk })), (e: Error) => {
    return e.message.length < 300 && e.message.includes('"\\x1b]0;pwned\\x07xx') &&
      e.message.includes("(50010 characters)");
  });
});
