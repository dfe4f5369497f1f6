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
import { FORWARD_TOKENS, logitsDigest } from "./_revec_child.ts";

const CHILD = new URL("./_revec_child.ts", import.meta.url).pathname;
const REVEC = "--experimental-wasm-revectorize";

/** Functions (wasm name section) V8 must fuse: the r16 decode and batched kernels. */
export const FUSED = ["bn_r16_rows16", "bn_r16_rows8_tok2"];
/** The 128-bit ternary kernels, which it must leave alone. */
export const NOT_FUSED = ["bn_dot_i2_i8_simd", "bn_matvec_range", "bn_matmul_tokens"];

async function child(v8: string[], args: string[]): Promise<{ stdout: string; result: unknown }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      `--v8-flags=${["--no-liftoff", ...v8].join(",")}`,
      CHILD,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`child failed (${out.code}): ${new TextDecoder().decode(out.stderr).slice(-2000)}`);
  }
  const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`child printed no result:\n${stdout.slice(-2000)}`);
  return { stdout, result: JSON.parse(line.slice(7)) };
}

/** Per function, whether V8 decided to vectorize it, from the trace's Begin/Finished sections. */
export function revecDecisions(trace: string): Map<string, boolean> {
  const decided = new Map<string, boolean>();
  let current: string | null = null;
  for (const line of trace.split("\n")) {
    const begin = line.match(/^Begin revec function (\S+)/);
    if (begin) {
      current = begin[1];
      decided.set(current, decided.get(current) ?? false);
    } else if (line.startsWith("Finished revec function")) current = null;
    else if (current && line.includes("Decided to vectorize")) decided.set(current, true);
  }
  return decided;
}

Deno.test("V8 fuses the hot ternary kernels into 256-bit code, and none of the 128-bit ones", async () => {
  const { stdout, result } = await child([REVEC, "--trace-wasm-revectorize"], ["dots"]);
  const decided = revecDecisions(stdout);
  for (const name of [...FUSED, ...NOT_FUSED]) {
    assert(
      decided.has(name),
      `V8 compiled no function named ${name} (is the name section there? ${[...decided.keys()].join(", ")})`,
    );
  }
  for (const name of FUSED) assert(decided.get(name), `V8 did not vectorize ${name}`);
  for (const name of NOT_FUSED) assert(!decided.get(name), `V8 vectorized the 128-bit kernel ${name}`);
  const r = result as { mismatches: string[]; checked: number };
  assertEquals(r.mismatches, [], "fused dots differ from the reference");
  assert(r.checked > 1000);
});

Deno.test("the ternary kernels give the reference's dots with V8's revectorizer off too", async () => {
  const { stdout, result } = await child([], ["dots"]);
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
  for (const v8 of [[REVEC], []]) {
    const { result } = await child(v8, ["forward", model]);
    assertEquals(result, { r4: want, r16: want }, v8.length ? "fuser on" : "fuser off");
  }
});
