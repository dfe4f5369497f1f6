import assert from "node:assert/strict";
import { type GgufFile, openGguf } from "../../engine/format/gguf.ts";
import { GGML_TYPE, tensorNbytes } from "../../engine/format/ggml_types.ts";
import { decodeF16, unpackI2S, unpackTQ1, unpackTQ2 } from "../../engine/format/ternary_pack.ts";
import { resolveSynthOptions, synthModel } from "../../scripts/synth_model.ts";

const dir = Deno.makeTempDirSync({ prefix: "synth_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const TYPES = ["i2_s", "tq2_0", "tq1_0"] as const;
const TYPE_ID = { i2_s: GGML_TYPE.I2_S, tq2_0: GGML_TYPE.TQ2_0, tq1_0: GGML_TYPE.TQ1_0 };

function tensorBytes(g: GgufFile, name: string): Uint8Array {
  const t = g.tensorsByName.get(name)!;
  using file = Deno.openSync(g.path);
  const out = new Uint8Array(t.nbytes);
  file.seekSync(t.offset, Deno.SeekMode.Start);
  for (let got = 0; got < out.length;) got += file.readSync(out.subarray(got))!;
  return out;
}

function unpack(g: GgufFile, name: string): { trits: Int8Array; scale: number } {
  const t = g.tensorsByName.get(name)!;
  const n = t.dims[0] * t.dims[1];
  const data = tensorBytes(g, name);
  if (t.type === GGML_TYPE.I2_S) return unpackI2S(data, n);
  const { trits, scales } = (t.type === GGML_TYPE.TQ2_0 ? unpackTQ2 : unpackTQ1)(data, n);
  assert.ok(scales.every((d) => d === scales[0]), `${name}: one scale per tensor`);
  return { trits, scale: scales[0] };
}

for (const type of TYPES) {
  Deno.test(`synthModel() writes a tiny ${type} model that openGguf() reads with the right tensors`, async () => {
    const out = `${dir}/tiny-${type}.gguf`;
    const summary = await synthModel({ preset: "tiny", type, out });
    const g = openGguf(out);
    const o = summary.options;
    const arch = type === "i2_s" ? "bitnet-b1.58" : "bitnet";
    assert.equal(g.metadata.get("general.architecture"), arch);
    assert.equal(g.metadata.get(`${arch}.embedding_length`), 256);
    assert.equal(g.metadata.get(`${arch}.block_count`), 2);
    assert.equal(g.metadata.get(`${arch}.attention.head_count`), 4);
    assert.equal(g.metadata.get(`${arch}.attention.head_count_kv`), 2);
    assert.equal(g.metadata.get(`${arch}.rope.dimension_count`), 64);
    assert.equal(g.metadata.get(`${arch}.feed_forward_length`), 768);
    assert.equal(g.metadata.has(`${arch}.hidden_activation`), false);
    assert.equal(g.fileSize, summary.bytes);
    assert.equal(g.tensors.length, 2 + 11 * o.layers);
    const kv = 128;
    const want: [string, number, number[]][] = [["token_embd.weight", GGML_TYPE.F16, [256, o.nVocab]]];
    for (let i = 0; i < o.layers; i++) {
      want.push(
        [`blk.${i}.attn_norm.weight`, GGML_TYPE.F32, [256]],
        [`blk.${i}.attn_q.weight`, TYPE_ID[type], [256, 256]],
        [`blk.${i}.attn_k.weight`, TYPE_ID[type], [256, kv]],
        [`blk.${i}.attn_v.weight`, TYPE_ID[type], [256, kv]],
        [`blk.${i}.attn_sub_norm.weight`, GGML_TYPE.F32, [256]],
        [`blk.${i}.attn_output.weight`, TYPE_ID[type], [256, 256]],
        [`blk.${i}.ffn_norm.weight`, GGML_TYPE.F32, [256]],
        [`blk.${i}.ffn_gate.weight`, TYPE_ID[type], [256, 768]],
        [`blk.${i}.ffn_up.weight`, TYPE_ID[type], [256, 768]],
        [`blk.${i}.ffn_sub_norm.weight`, GGML_TYPE.F32, [768]],
        [`blk.${i}.ffn_down.weight`, TYPE_ID[type], [768, 256]],
      );
    }
    want.push(["output_norm.weight", GGML_TYPE.F32, [256]]);
    assert.deepEqual(g.tensors.map((t) => t.name).sort(), want.map(([n]) => n).sort());
    for (const [name, t, dims] of want) {
      const info = g.tensorsByName.get(name)!;
      assert.equal(info.type, t, name);
      assert.deepEqual(info.dims, dims, name);
      assert.equal(info.nbytes, tensorNbytes(t, dims), name);
    }
    // Weights look like a real ternarized tensor: about a third zeros, one scale in [0.5, 2].
    const { trits, scale } = unpack(g, "blk.1.ffn_up.weight");
    const zeros = trits.filter((x) => x === 0).length / trits.length;
    assert.ok(zeros > 0.3 && zeros < 0.37, `zeros ${zeros}`);
    assert.ok(scale >= 0.5 && scale <= 2, `scale ${scale}`);
    const norm = new Float32Array(tensorBytes(g, "blk.0.ffn_sub_norm.weight").buffer);
    assert.ok(norm.every((w) => Math.abs(w - 1) <= 0.1));
    const embd = decodeF16(tensorBytes(g, "token_embd.weight"));
    assert.ok(embd.every((x) => Math.abs(x) < 0.2) && embd.some((x) => x !== 0));
  });
}

Deno.test("synthModel() gives the same bytes for the same seed and different bytes for another", async () => {
  const [a, b, c] = [`${dir}/a.gguf`, `${dir}/b.gguf`, `${dir}/c.gguf`];
  await synthModel({ preset: "tiny", type: "tq1_0", embd: "q8_0", seed: 42, out: a });
  await synthModel({ preset: "tiny", type: "tq1_0", embd: "q8_0", seed: 42, out: b });
  await synthModel({ preset: "tiny", type: "tq1_0", embd: "q8_0", seed: 43, out: c });
  assert.deepEqual(Deno.readFileSync(a), Deno.readFileSync(b));
  assert.notDeepEqual(Deno.readFileSync(a), Deno.readFileSync(c));
  const g = openGguf(a);
  assert.equal(g.tensorsByName.get("token_embd.weight")!.type, GGML_TYPE.Q8_0);
});

Deno.test("synthModel() writes the same trits and scales whatever the layout", async () => {
  const files = await Promise.all(TYPES.map(async (type) => {
    const out = `${dir}/same-${type}.gguf`;
    await synthModel({ preset: "tiny", type, seed: 5, dim: 512, ffn: 1024, out });
    return openGguf(out);
  }));
  for (const name of ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.ffn_down.weight"]) {
    const [i2, tq2, tq1] = files.map((g) => unpack(g, name));
    assert.deepEqual(tq2.trits, i2.trits, name);
    assert.deepEqual(tq1.trits, i2.trits, name);
    assert.equal(tq2.scale, i2.scale);
    assert.equal(tq1.scale, i2.scale);
  }
  assert.deepEqual(tensorBytes(files[0], "token_embd.weight"), tensorBytes(files[2], "token_embd.weight"));
});

Deno.test("synthModel() writes a consistent synthetic vocabulary with LLaMA-3 style specials", async () => {
  const out = `${dir}/vocab.gguf`;
  await synthModel({ preset: "tiny", out, nVocab: 600 });
  const g = openGguf(out);
  const tokens = g.metadata.get("tokenizer.ggml.tokens") as string[];
  const merges = g.metadata.get("tokenizer.ggml.merges") as string[];
  const types = g.metadata.get("tokenizer.ggml.token_type") as Int32Array;
  assert.equal(tokens.length, 600);
  assert.equal(new Set(tokens).size, 600);
  assert.equal(tokens[0], "!");
  assert.equal(tokens[220], "Ġ"); // the space byte, where LLaMA-3 has it
  const bos = g.metadata.get("tokenizer.ggml.bos_token_id") as number;
  assert.equal(tokens[bos], "<|begin_of_text|>");
  assert.equal(tokens[g.metadata.get("tokenizer.ggml.eos_token_id") as number], "<|end_of_text|>");
  assert.equal(tokens[bos + 9], "<|eot_id|>");
  assert.equal(types[bos - 1], 1);
  assert.ok(types.subarray(bos).every((t) => t === 3));
  assert.ok(merges.length >= bos - 256);
  const known = new Set(tokens);
  for (const m of merges) {
    const parts = m.split(" ");
    assert.equal(parts.length, 2, m);
    assert.ok(known.has(parts[0]) && known.has(parts[1]) && known.has(parts[0] + parts[1]), m);
  }
  assert.equal(g.metadata.get("tokenizer.ggml.model"), "gpt2");
  assert.equal(g.metadata.get("tokenizer.ggml.pre"), "llama-bpe");
  assert.deepEqual(g.metadata.get("tokenizer.ggml.scores"), new Float32Array(600));
  assert.equal(g.metadata.get("tokenizer.ggml.add_bos_token"), true);
});

Deno.test("synthModel() writes the LLaMA-3 vocabulary, with the official file's keys for bitnet-b1.58", async () => {
  const out = `${dir}/llama3.gguf`;
  await synthModel({ preset: "tiny", vocab: "llama3", layers: 1, out });
  const g = openGguf(out);
  const tokens = g.metadata.get("tokenizer.ggml.tokens") as string[];
  const merges = g.metadata.get("tokenizer.ggml.merges") as string[];
  assert.equal(tokens.length, 128256);
  assert.equal(merges.length, 280147);
  assert.deepEqual(merges.slice(0, 3), ["Ġ Ġ", "Ġ ĠĠĠ", "ĠĠ ĠĠ"]);
  assert.deepEqual([tokens[0], tokens[220]], ["!", "Ġ"]);
  assert.equal(tokens[128000], "<|begin_of_text|>");
  assert.equal(tokens[128001], "<|end_of_text|>");
  assert.equal(tokens[128002], "<|reserved_special_token_0|>");
  assert.equal(tokens[128005], "<|reserved_special_token_3|>");
  assert.equal(tokens[128006], "<|start_header_id|>");
  assert.equal(tokens[128007], "<|end_header_id|>");
  assert.equal(tokens[128008], "<|reserved_special_token_4|>");
  assert.equal(tokens[128009], "<|eot_id|>");
  assert.equal(tokens[128255], "<|reserved_special_token_250|>");
  assert.equal(g.metadata.get("tokenizer.ggml.bos_token_id"), 128000);
  assert.equal(g.metadata.get("tokenizer.ggml.padding_token_id"), 128001);
  assert.equal(g.metadata.has("tokenizer.ggml.pre"), false); // as in the official file
  assert.equal(
    (g.metadata.get("tokenizer.ggml.token_type") as Int32Array).filter((t) => t === 3).length,
    256,
  );
});

Deno.test("synthModel() adds output.weight for bitnet-25 and hidden_activation on request", async () => {
  const out = `${dir}/b25.gguf`;
  await synthModel({ preset: "tiny", arch: "bitnet-25", hiddenAct: "relu2", out });
  const g = openGguf(out);
  assert.equal(g.metadata.get("bitnet-25.hidden_activation"), "relu2");
  assert.equal(g.tensors.length, 3 + 11 * 2);
  assert.deepEqual(tensorBytes(g, "output.weight"), tensorBytes(g, "token_embd.weight"));
});

Deno.test("resolveSynthOptions() fills the 2b4t preset with the official shape", () => {
  const o = resolveSynthOptions({ preset: "2b4t", out: "/tmp/x.gguf" });
  assert.deepEqual(
    [o.dim, o.layers, o.heads, o.kvHeads, o.ffn, o.ctx, o.nVocab, o.vocab, o.type, o.arch, o.embd],
    [2560, 30, 20, 5, 6912, 4096, 128256, "llama3", "i2_s", "bitnet-b1.58", "f16"],
  );
});

Deno.test("resolveSynthOptions() refuses shapes the layouts cannot hold", () => {
  const out = "/tmp/x.gguf";
  assert.throws(() => resolveSynthOptions({ type: "tq2_0", dim: 384, out }), /multiples of 256/);
  assert.throws(() => resolveSynthOptions({ heads: 3, out }), /heads/);
  assert.throws(() => resolveSynthOptions({ kvHeads: 3, out }), /kv-heads/);
  assert.throws(() => resolveSynthOptions({ vocab: "llama3", nVocab: 1000, out }), /128256/);
  assert.throws(() => resolveSynthOptions({ layers: 0, out }), RangeError);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => resolveSynthOptions({ type: "q4_k" as any, out }), TypeError);
});
