import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { exportGguf, type ModelJson, type TensorEntry } from "../../scripts/train/export.ts";
import { countPretokens, trainBpe } from "../../scripts/train/bpe.ts";
import { openGguf } from "../../engine/format/gguf.ts";
import { GGML_TYPE } from "../../engine/format/ggml_types.ts";
import { decodeF16, unpackI2S } from "../../engine/format/ternary_pack.ts";

/** A one-layer model in train.py's interchange format, with seeded values. */
function writeTinyModel(dir: string, vocab: number) {
  const cfg = {
    vocab,
    dim: 128,
    n_layers: 1,
    n_heads: 2,
    n_kv_heads: 1,
    ffn: 256,
    ctx: 64,
    rope_base: 10000,
    eps: 1e-5,
  };
  const shapes: [string, number[], "f32" | "i8"][] = [
    ["token_embd.weight", [vocab, 128], "f32"],
    ["blk.0.attn_norm.weight", [128], "f32"],
    ["blk.0.attn_sub_norm.weight", [128], "f32"],
    ["blk.0.ffn_norm.weight", [128], "f32"],
    ["blk.0.ffn_sub_norm.weight", [256], "f32"],
    ["output_norm.weight", [128], "f32"],
    ["blk.0.attn_q.weight", [128, 128], "i8"],
    ["blk.0.attn_k.weight", [64, 128], "i8"],
    ["blk.0.attn_v.weight", [64, 128], "i8"],
    ["blk.0.attn_output.weight", [128, 128], "i8"],
    ["blk.0.ffn_gate.weight", [256, 128], "i8"],
    ["blk.0.ffn_up.weight", [256, 128], "i8"],
    ["blk.0.ffn_down.weight", [128, 256], "i8"],
  ];
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const parts: Uint8Array[] = [];
  const tensors: TensorEntry[] = [];
  let offset = 0;
  for (const [name, shape, dtype] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const bytes = dtype === "f32"
      ? new Uint8Array(Float32Array.from({ length: n }, () => rnd() - 0.5).buffer)
      : new Uint8Array(Int8Array.from({ length: n }, () => Math.floor(rnd() * 3) - 1).buffer);
    tensors.push({
      name,
      dtype,
      shape,
      offset,
      nbytes: bytes.length,
      ...(dtype === "i8" ? { scale: 0.5 + rnd() } : {}),
    });
    parts.push(bytes);
    offset += bytes.length;
  }
  const blob = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) blob.set(p, (at += p.length) - p.length);
  const model: ModelJson = { config: cfg, tensors };
  Deno.writeTextFileSync(`${dir}/model.json`, JSON.stringify(model));
  Deno.writeFileSync(`${dir}/model.bin`, blob);
  return { model, blob };
}

Deno.test("exportGguf() writes the official 2B4T layout that the engine's reader reads back exactly", () => {
  const dir = Deno.makeTempDirSync({ dir: "/tmp" });
  try {
    const bpe = trainBpe(countPretokens(["the cat sat on the mat with the hat"]), 270);
    const tokens = [
      ...bpe.tokens,
      "<|begin_of_text|>",
      "<|end_of_text|>",
      "<|eot_id|>",
      "<|reserved_special_token_0|>",
    ];
    const n = bpe.tokens.length;
    Deno.writeTextFileSync(
      `${dir}/tokenizer.json`,
      JSON.stringify({
        tokens,
        merges: bpe.merges,
        token_type: tokens.map((_, i) => (i < n ? 1 : 3)),
        bos_id: n,
        eos_id: n + 1,
        eot_id: n + 2,
        pad_id: n + 1,
      }),
    );
    const { model, blob } = writeTinyModel(dir, tokens.length);
    exportGguf(dir, `${dir}/tokenizer.json`, `${dir}/m.gguf`, "tiny");
    const g = openGguf(`${dir}/m.gguf`);
    const m = g.metadata;
    assertEquals(m.get("general.architecture"), "bitnet-b1.58");
    assertEquals(m.get("general.file_type"), 40);
    assertEquals(m.get("bitnet-b1.58.vocab_size"), tokens.length);
    assertEquals(m.get("bitnet-b1.58.attention.head_count_kv"), 1);
    assertEquals(m.get("bitnet-b1.58.rope.dimension_count"), 64);
    assertEquals(m.get("bitnet-b1.58.feed_forward_length"), 256);
    assertEquals(m.get("tokenizer.ggml.model"), "gpt2");
    assertEquals(m.get("tokenizer.ggml.pre"), "llama-bpe");
    assertEquals(m.get("tokenizer.ggml.tokens"), tokens);
    assertEquals(m.get("tokenizer.ggml.merges"), bpe.merges);
    assertEquals([m.get("tokenizer.ggml.bos_token_id"), m.get("tokenizer.ggml.eos_token_id")], [n, n + 1]);
    assertEquals(m.get("tokenizer.ggml.eot_token_id"), n + 2);
    assertEquals(m.get("tokenizer.ggml.add_bos_token"), true);
    assertEquals(g.tensors.length, 13);
    const file = Deno.readFileSync(`${dir}/m.gguf`);
    for (const t of model.tensors) {
      const info = g.tensorsByName.get(t.name)!;
      assertEquals(info.dims, [...t.shape].reverse());
      const data = file.subarray(info.offset, info.offset + info.nbytes);
      const src = blob.subarray(t.offset, t.offset + t.nbytes);
      if (t.name === "token_embd.weight") {
        assertEquals(info.type, GGML_TYPE.F16);
        assertEquals(
          decodeF16(data),
          Float32Array.from(new Float16Array(new Float32Array(src.slice().buffer))),
        );
      } else if (t.dtype === "f32") {
        assertEquals(info.type, GGML_TYPE.F32);
        assertEquals(data, src);
      } else {
        assertEquals(info.type, GGML_TYPE.I2_S);
        const { trits, scale } = unpackI2S(data, src.length);
        assertEquals(trits, new Int8Array(src.slice().buffer));
        assertEquals(scale, Math.fround(t.scale!));
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
