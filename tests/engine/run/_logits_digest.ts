/**
 * Child process of runtime_test.ts: SHA-256 digests of the logits of a prefill step and three decode
 * steps, for tiny models with grouped-query attention (two and four query heads per KV head, a head
 * size with a 16-element tail), the exact F16 head and the Q7 head, on every kernel variant and
 * thread counts 1, 2, 3 and 8. Prints one JSON object: {"model head kernel xthreads": digest}.
 */
import { loadModel } from "../../../engine/model/loader.ts";
import type { KernelVariant } from "../../../wasm/loader.ts";
import { tinyModel } from "../../_models.ts";

const TOKENS = [1, 17, 33, 99, 5, 200, 7, 8, 300, 42, 11, 256];
const MODELS = {
  "gqa2": {},
  "gqa4": { heads: 8, kvHeads: 2 },
  "hd48": { dim: 384, heads: 8, kvHeads: 8, ffn: 512, nVocab: 517 },
} as const;
const RUNS: [keyof typeof MODELS, "file" | "q7", KernelVariant, number][] = [];
for (const kernel of ["ref", "simd128", "relaxed"] as const) {
  for (const threads of [1, 2, 3, 8]) RUNS.push(["gqa4", "file", kernel, threads]);
}
for (const threads of [1, 3]) {
  RUNS.push(["gqa4", "q7", "relaxed", threads], ["gqa2", "file", "relaxed", threads]);
}
for (const kernel of ["simd128", "relaxed"] as const) {
  RUNS.push(["hd48", "file", kernel, 2], ["hd48", "q7", kernel, 2]);
}

const out: Record<string, string> = {};
for (const [model, head, kernel, threads] of RUNS) {
  const path = await tinyModel(MODELS[model]);
  const { runtime: rt } = await loadModel(path, {
    head,
    kernel,
    threads,
    nCtx: 32,
    maxBatch: 16,
    maxOut: 16,
  });
  try {
    const n = TOKENS.length, parts: Float32Array[] = [];
    const all = (_: number, i: number) => i;
    parts.push(
      (await rt.forward({
        tokens: TOKENS,
        pos: TOKENS.map(all),
        slot: TOKENS.map(() => 0),
        outIdx: TOKENS.map(all),
      }))
        .slice(),
    );
    for (let i = 0; i < 3; i++) {
      parts.push(
        (await rt.forward({ tokens: [TOKENS[i] + 3], pos: [n + i], slot: [0], outIdx: [0] })).slice(),
      );
    }
    const bytes = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
    let at = 0;
    for (const p of parts) bytes.set(new Uint8Array(p.buffer), at), at += p.byteLength;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    out[`${model} ${head} ${kernel} x${threads}`] = Array.from(digest, (b) => b.toString(16).padStart(2, "0"))
      .join("");
  } finally {
    await rt.close();
  }
}
console.log(JSON.stringify(out));
