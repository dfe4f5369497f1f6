/**
 * V8's revectorizer (`--experimental-wasm-revectorize`) on this runtime: a child process compiles
 * the kernels under `--trace-wasm-revectorize`, and the test fails unless V8 reports "Decided to
 * vectorize" for each hot ternary kernel of the rows-in-sixteens layout, and reports it for none of
 * the 128-bit kernels (their machine code is then the same with the flag on or off, which is what
 * `--revec off` relies on). The fused code must give the plain reference's integer dots, as must the
 * same kernels with the flag off; and a forward pass gives bit-identical logits with the flag on
 * and off, in both layouts, as the in-process reference kernels do. A Deno upgrade that stops V8
 * from fusing fails here (deno is pinned in README, .ci/run and scripts/dist.ts).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { loadModel } from "../../engine/model/loader.ts";
import { tinyModel } from "../_models.ts";
import { fusedFunctions, revecFunctions, runDeno } from "../_revec_child.ts";
import { FORWARD_TOKENS, logitsDigest } from "./_revec_child.ts";

const CHILD = new URL("./_revec_child.ts", import.meta.url).pathname;

/** Functions (wasm name section) V8 must fuse: the r16 decode and batched kernels. */
export const FUSED = ["bn_r16_rows16", "bn_r16_rows8_tok2"];
/** The 128-bit ternary kernels, which it must leave alone. */
export const NOT_FUSED = ["bn_dot_i2_i8_simd", "bn_matvec_range", "bn_matmul_tokens"];

/** Runs the child (the fuser on or off, optionally traced); its stdout and its RESULT line. */
async function child(
  revec: boolean,
  args: string[],
  trace = false,
): Promise<{ stdout: string; result: unknown }> {
  const stdout = await runDeno(CHILD, args, { revec, trace });
  const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`child printed no result:\n${stdout.slice(-2000)}`);
  return { stdout, result: JSON.parse(line.slice(7)) };
}

Deno.test("V8 fuses the hot ternary kernels into 256-bit code, and none of the 128-bit ones", async () => {
  const { stdout, result } = await child(true, ["dots"], true);
  const seen = revecFunctions(stdout), fused = fusedFunctions(stdout);
  for (const name of [...FUSED, ...NOT_FUSED]) {
    assert(
      seen.has(name),
      `V8 compiled no function named ${name} (is the name section there? ${[...seen].join(", ")})`,
    );
  }
  for (const name of FUSED) assert(fused.has(name), `V8 did not vectorize ${name}`);
  for (const name of NOT_FUSED) assert(!fused.has(name), `V8 vectorized the 128-bit kernel ${name}`);
  const r = result as { mismatches: string[]; checked: number };
  assertEquals(r.mismatches, [], "fused dots differ from the reference");
  assert(r.checked > 1000);
});

Deno.test("the ternary kernels give the reference's dots with V8's revectorizer off too", async () => {
  const { stdout, result } = await child(false, ["dots"]);
  assert(!stdout.includes("Decided to vectorize"));
  const r = result as { mismatches: string[]; checked: number };
  assertEquals(r.mismatches, [], "unfused dots differ from the reference");
  assert(r.checked > 1000);
});

Deno.test("forward() logits are bit-identical with V8's revectorizer on and off, in both layouts", async () => {
  const model = await tinyModel();
  const { runtime } = await loadModel(model, {
    kernel: "ref",
    threads: 1,
    layout: "r4",
    nCtx: 64,
    maxBatch: 32,
  });
  let want: string;
  try {
    const t = FORWARD_TOKENS;
    want = await logitsDigest(
      await runtime.forward({
        tokens: t,
        pos: t.map((_, i) => i),
        slot: t.map(() => 0),
        outIdx: t.map((_, i) => i),
      }),
    );
  } finally {
    await runtime.close();
  }
  for (const revec of [true, false]) {
    const { result } = await child(revec, ["forward", model]);
    assertEquals(result, { r4: want, r16: want }, revec ? "fuser on" : "fuser off");
  }
});
