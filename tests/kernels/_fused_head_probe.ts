/**
 * Child process of fused_head_attention_test.ts: runs forward steps of a tiny model with grouped-query attention and
 * the exact F16 head on the given kernel build, so that V8 compiles (and, with the flag, fuses) the
 * head and attention kernels. `--trace-wasm-revectorize` output goes to stdout.
 */
import { loadModel } from "../../engine/model/loader.ts";
import { tinyModel } from "../_models.ts";

const kernel = Deno.args[0] === "simd128" ? "simd128" : "relaxed";
const path = await tinyModel({ heads: 8, kvHeads: 2 });
const { runtime } = await loadModel(path, {
  kernel,
  head: "file",
  threads: 1,
  nCtx: 32,
  maxBatch: 8,
  maxOut: 8,
});
try {
  const tokens = [1, 2, 3, 4, 5];
  await runtime.forward({ tokens, pos: tokens.map((_, i) => i), slot: tokens.map(() => 0), outIdx: [4] });
  await runtime.forward({ tokens: [6], pos: [5], slot: [0], outIdx: [0] });
} finally {
  await runtime.close();
}
