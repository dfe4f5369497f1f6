/**
 * CI proof that V8 fuses this file's hot kernels into 256-bit code (reference/wasm-256bit.md): the
 * exact F16 head (bn_head_f16p_simd) and the attention values (bn_values_f16s_simd) run in a child
 * process under `--trace-wasm-revectorize`, and V8 must report "Decided to vectorize" for each, in
 * both builds. A Deno or V8 upgrade that stops the fusing fails here. (The ternary kernels have their
 * own test.) Hosts that cannot fuse at all (not x86-64 with AVX2) skip it.
 */
import { ok as assert } from "node:assert/strict";
import { canRevectorize, fusedFunctions, runDeno } from "../_revec_child.ts";

/**
 * Each kernel and the fewest fused operations its trace may show: 102 and 127 today, when every
 * accumulator pair's tree fuses (one tree that fails drops 12-16).
 */
const KERNELS = { bn_head_f16p_simd: 96, bn_values_f16s_simd: 120 } as const;

for (const build of ["simd128", "relaxed"] as const) {
  Deno.test({
    name: `V8 fuses the F16 head and attention values into 256-bit code (${build} build)`,
    ignore: !canRevectorize(),
    async fn() {
      const trace = await runDeno(new URL("./_fused_head_probe.ts", import.meta.url), [build], {
        revec: true,
        trace: true,
      });
      const fused = fusedFunctions(trace);
      for (const [name, least] of Object.entries(KERNELS)) {
        const nodes = fused.get(name) ?? 0;
        assert(nodes >= least, `${name}: V8 fused ${nodes} operations, expected at least ${least}`);
      }
    },
  });
}

Deno.test({
  name: "without the flag V8 fuses nothing (the trace check is not vacuous)",
  ignore: !canRevectorize(),
  async fn() {
    const trace = await runDeno(new URL("./_fused_head_probe.ts", import.meta.url), ["relaxed"], {
      revec: false,
      trace: true,
    });
    assert(fusedFunctions(trace).size === 0, "a trace without the flag reports fused functions");
  },
});
