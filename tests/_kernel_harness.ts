/**
 * Test harness: a bare kernel context (no model) for running the MATMUL_TEST command on any I2_S
 * matrix with N activation rows, on a chosen variant and thread count.
 */
import {
  BN_CMD,
  compileKernel,
  KERNEL_IDS,
  type KernelVariant,
  LAYOUT_IDS,
  type TernaryLayout,
  WasmHost,
} from "../wasm/loader.ts";
import { planMemory } from "../engine/model/memory_plan.ts";
import { CtxWriter } from "../engine/run/ctx_writer.ts";
import { ThreadPool } from "../engine/run/thread_pool.ts";

export interface MatmulResult {
  /** [n][rows] raw integer dots code . q */
  dots: Int32Array;
  /** [n][rows] BitLinear outputs */
  y: Float32Array;
  status: number;
}

/**
 * Runs W (I2_S bytes as in a file, rows x cols) . x (n rows of cols floats) through the pool, with W
 * regrouped for `layout` as the loader does.
 */
export async function runMatmul(
  variant: KernelVariant,
  threads: number,
  w: Uint8Array,
  rows: number,
  cols: number,
  x: Float32Array,
  layout: TernaryLayout = "r4",
): Promise<MatmulResult> {
  const n = x.length / cols;
  const km = await compileKernel(variant === "ref" ? "simd128" : variant);
  const shape = { dim: cols, nLayers: 1, nHeads: 1, nKvHeads: 1, headDim: cols, ffnDim: cols, nVocab: 1 };
  const sizes = { nCtx: 1, nSlots: 1, maxBatch: Math.max(n, 1), maxOut: 1, nThreads: threads };
  const tensors = [
    { name: "w", bytes: w.length },
    { name: "x", bytes: x.byteLength },
    { name: "y", bytes: 4 * n * rows },
    { name: "dots", bytes: 4 * n * rows },
    { name: "tmp", bytes: 4 * cols },
  ];
  const plan = planMemory(shape, sizes, tensors, 0, km.heapBase, km.abi.ctxBytes, km.abi.layerBytes);
  const memory = new WebAssembly.Memory({ initial: plan.pages, maximum: plan.pages, shared: true });
  const host = await WasmHost.create(km, memory, plan.stackTops[0]);
  const c = new CtxWriter(memory, host.abi, plan.ctx);
  const at = (name: string) => plan.tensors.get(name)!.offset;
  new Uint8Array(memory.buffer, at("w"), w.length).set(w);
  host.interleaveI2s(at("w"), rows, cols, at("tmp"), layout); // the loader's regrouping of rows
  new Float32Array(memory.buffer, at("x"), x.length).set(x);
  c.u32("config.dim", cols);
  c.u32("config.ffn_dim", cols);
  c.u32("config.max_batch", sizes.maxBatch);
  for (const k of ["xq", "xscale", "xsum"] as const) c.u32(`state.${k}`, plan.scratch[k].offset);
  c.u32("kernel", KERNEL_IDS[variant]);
  c.u32("layout", LAYOUT_IDS[layout]);
  c.u32("mm.w", at("w"));
  c.u32("mm.rows", rows);
  c.u32("mm.cols", cols);
  c.u32("mm.n", n);
  c.u32("mm.x", at("x"));
  c.u32("mm.y", at("y"));
  c.u32("mm.ydot", at("dots"));
  const pool = await ThreadPool.start(km, memory, host.abi, plan.ctx, plan.stackTops.slice(1));
  pool.enterLoop();
  try {
    const status = await pool.run(BN_CMD.MATMUL_TEST);
    return {
      status,
      dots: new Int32Array(memory.buffer, at("dots"), n * rows).slice(),
      y: new Float32Array(memory.buffer, at("y"), n * rows).slice(),
    };
  } finally {
    await pool.close();
  }
}
