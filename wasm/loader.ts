/**
 * The only file that touches the WASM module's exports: picks and compiles a build, reads the
 * struct layout the module reports, runs load-time helpers on the host isolate, and runs the
 * worker side of the thread pool (see `worker.ts`).
 *
 * @module
 */

/** Kernel variants: `ref` (scalar twins, in the simd128 build), `simd128`, `relaxed`. */
export type KernelVariant = "ref" | "simd128" | "relaxed";

export const KERNEL_IDS: Readonly<Record<KernelVariant, number>> = { ref: 0, simd128: 1, relaxed: 2 };

/**
 * How ternary (I2_S) matrices are laid out in memory, chosen at load: `r4` (rows regrouped in fours,
 * for the 128-bit kernels) or `r16` (rows in sixteens, for the kernels V8's revectorizer fuses
 * into 256-bit AVX2 code). Results are bit-identical in both.
 */
export type TernaryLayout = "r4" | "r16";

export const LAYOUT_IDS: Readonly<Record<TernaryLayout, number>> = { r4: 0, r16: 1 };

/** Rows per regrouped block of each layout (the rest of a matrix keeps the file's layout). */
export const LAYOUT_GROUP_ROWS: Readonly<Record<TernaryLayout, number>> = { r4: 4, r16: 16 };

/** Status codes returned by the kernels (`bn_status` in kernels/bn.h). */
export const BN_STATUS = { OK: 0, ABORTED: 1, BAD_ARG: 2, BAD_CONFIG: 3 } as const;

/** Commands posted to the pool (`BN_CMD_*`). */
export const BN_CMD = { NONE: 0, FORWARD: 1, QUIT: 2, MATMUL_TEST: 3, SWEEP: 4 } as const;

/**
 * The parts of a forward step the kernels' step profile times, in `BN_PART_*` order (kernels/bn.h).
 * Per thread the profile is {@linkcode PROFILE_STRIDE} doubles: first reading, last reading, last
 * mark, current part, then per part (ms of work, ms of barrier wait after it).
 */
export const PROFILE_PARTS = [
  "embed",
  "norm",
  "quant",
  "qkv",
  "attention",
  "wo",
  "gate_up",
  "act",
  "down",
  "head_prep",
  "head",
] as const;

/** A part of a forward step (see {@linkcode PROFILE_PARTS}). */
export type ProfilePart = typeof PROFILE_PARTS[number];

/** Doubles per thread in the step profile (`BN_PROF_STRIDE`). */
export const PROFILE_STRIDE = 4 + 2 * PROFILE_PARTS.length;

/** A byte range of the shared memory. */
export interface Region {
  readonly offset: number;
  readonly bytes: number;
}

/** Bytes of stack each instance gets (the module is linked with a 64 KiB stack). */
export const STACK_BYTES = 64 * 1024;

/** A compiled kernel module and the variant it runs. */
export interface KernelModule {
  readonly variant: KernelVariant;
  readonly module: WebAssembly.Module;
  /** First free byte after the module's static data and default stack. */
  readonly heapBase: number;
  /** The bn_ctx layout this build reports. */
  readonly abi: AbiLayout;
}

interface BnExports {
  memory?: WebAssembly.Memory;
  __stack_pointer: WebAssembly.Global;
  __heap_base: WebAssembly.Global;
  bn_abi_layout(): number;
  bn_build_variant(): number;
  bn_ctx_check(ctx: number): number;
  bn_worker_loop(ctx: number, ith: number): number;
  bn_repack_tq2_0(src: number, dst: number, n: number, scale: number): number;
  bn_repack_tq1_0(src: number, dst: number, n: number, scale: number): number;
  bn_i2s_check(w: number, n: number): number;
  bn_i2s_interleave(w: number, rows: number, cols: number, tmp: number, layout: number): void;
  bn_i2s_place(src: number, dst: number, rows: number, cols: number, nbytes: number, layout: number): void;
  bn_probe_i2(
    kernel: number,
    layout: number,
    w: number,
    rows: number,
    cols: number,
    q: number,
    n: number,
    dots: number,
    reps: number,
  ): number;
  bn_quantize_q8_0_f16(src: number, dst: number, n: number): void;
  bn_quantize_q7_f16(
    src: number,
    dstW: number,
    dstS: number,
    row0: number,
    rows: number,
    dim: number,
    nv: number,
  ): void;
  bn_f16_check(src: number, n: number): number;
  bn_f16p_place(src: number, dst: number, row0: number, rows: number, dim: number, nv: number): number;
  bn_dot_f32_f16_probe(kernel: number, a: number, b: number, n: number, prescaled: number): number;
  bn_prof_stride(): number;
  bn_head_f16p_probe(
    kernel: number,
    w: number,
    dim: number,
    v0: number,
    v1: number,
    x: number,
    hxs: number,
    logits: number,
    nv: number,
  ): void;
  bn_embed_f16p_probe(w: number, nv: number, dim: number, v: number, out: number): void;
  bn_attention_probe(
    kernel: number,
    qs0: number,
    qs1: number,
    k: number,
    v: number,
    hd: number,
    n: number,
    scale: number,
    s0: number,
    s1: number,
    o0: number,
    o1: number,
  ): void;
  bn_rmsnorm_probe(kernel: number, y: number, x: number, w: number, n: number, eps: number): void;
  bn_head_q7_probe(
    kernel: number,
    w: number,
    dim: number,
    v0: number,
    v1: number,
    y: number,
    q: number,
    qs: number,
    qsum: number,
    logits: number,
    nv: number,
  ): void;
}

const WASM_DIR = new URL("./", import.meta.url);

/** Whether this runtime accepts the relaxed-SIMD build. */
export function relaxedSimdSupported(): boolean {
  return WebAssembly.validate(Deno.readFileSync(new URL("bn-relaxed.wasm", WASM_DIR)));
}

/** The best variant this runtime can run. */
export function detectKernel(): KernelVariant {
  return relaxedSimdSupported() ? "relaxed" : "simd128";
}

/**
 * Compiles the build for `variant`.
 *
 * @example
 * ```ts
 * const km = await compileKernel("simd128");
 * ```
 */
export async function compileKernel(variant: KernelVariant): Promise<KernelModule> {
  if (variant === "relaxed" && !relaxedSimdSupported()) {
    throw new TypeError('Kernel "relaxed" is not supported by this runtime (no relaxed SIMD); use "simd128"');
  }
  const file = variant === "relaxed" ? "bn-relaxed.wasm" : "bn-simd128.wasm";
  const module = await WebAssembly.compile(await Deno.readFile(new URL(file, WASM_DIR)));
  // __heap_base is an immutable global: a throwaway instance over a scratch memory reads it
  const memory = new WebAssembly.Memory({ initial: 32, maximum: 65536, shared: true });
  const probe = await instantiate(module, memory);
  if (probe.bn_prof_stride() !== PROFILE_STRIDE) {
    throw new Error(`${file}: step profile stride ${probe.bn_prof_stride()}, expected ${PROFILE_STRIDE}`);
  }
  return { variant, module, heapBase: probe.__heap_base.value as number, abi: readAbi(probe, memory) };
}

/** What the start-up probe measured (see {@linkcode probeTernaryLayout}). */
export interface TernaryProbe {
  /** The faster layout on this runtime and CPU. */
  readonly layout: TernaryLayout;
  /** G multiply-adds/s of one thread per layout: decode (1 token) and batched (8 tokens), best of the rounds. */
  readonly gmacs: Readonly<Record<TernaryLayout, { readonly decode: number; readonly batch: number }>>;
  /** Wall time of the probe, compilation of the kernels included. */
  readonly ms: number;
}

const PROBE_ROWS = 256, PROBE_COLS = 2560, PROBE_BATCH = 8, PROBE_ROUNDS = 6;

/**
 * Times the ternary kernels of `km` in both layouts on this thread (a 256 x 2560 matrix that stays
 * in L2, one and eight activation rows, interleaved rounds, best of each: a few milliseconds) and
 * picks the faster layout. Where V8 fuses the `r16` kernels into 256-bit code they run about twice
 * as fast as the `r4` ones; where it does not (another V8, a CPU without AVX2 or AVX-VNNI, ARM) the
 * measurement decides instead of an assumption, so the engine is never slower than the 128-bit
 * kernels.
 *
 * @example
 * ```ts ignore
 * const probe = await probeTernaryLayout(await compileKernel("relaxed"));
 * probe.layout; // "r16" where V8 fuses the kernels
 * ```
 */
export async function probeTernaryLayout(km: KernelModule): Promise<TernaryProbe> {
  const t0 = performance.now();
  const rows = PROBE_ROWS, cols = PROBE_COLS, n = PROBE_BATCH, wBytes = (rows * cols) / 4 + 32;
  const align = (a: number) => Math.ceil(a / 128) * 128;
  const file = align(km.heapBase), w4 = align(file + wBytes), w16 = align(w4 + wBytes);
  const q = align(w16 + wBytes), dots = align(q + n * cols), end = dots + 4 * n * rows;
  const pages = Math.ceil(end / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const x = await instantiate(km.module, memory);
  const bytes = new Uint8Array(memory.buffer);
  // fixed data (the kernels' speed does not depend on it): 4 KiB of codes in {0, 1, 2} and of
  // activations, tiled (generating every byte in cold JavaScript would cost more than the timing)
  let seed = 0x9e3779b9;
  for (let i = 0; i < 4096; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) | 0;
    const r = seed >>> 8;
    bytes[file + i] = (r % 3) | ((r >>> 4) % 3) << 2 | ((r >>> 8) % 3) << 4 | ((r >>> 12) % 3) << 6;
    bytes[q + i] = r >>> 16;
  }
  for (let i = 4096; i < (rows * cols) / 4; i *= 2) {
    bytes.copyWithin(file + i, file, file + Math.min(i, (rows * cols) / 4 - i));
  }
  for (let i = 4096; i < n * cols; i *= 2) bytes.copyWithin(q + i, q, q + Math.min(i, n * cols - i));
  x.bn_i2s_place(file, w4, rows, cols, wBytes, LAYOUT_IDS.r4);
  x.bn_i2s_place(file, w16, rows, cols, wBytes, LAYOUT_IDS.r16);
  const at = { r4: w4, r16: w16 } as const, kernel = KERNEL_IDS[km.variant];
  const time = (layout: TernaryLayout, tokens: number, reps: number) => {
    const start = performance.now();
    x.bn_probe_i2(kernel, LAYOUT_IDS[layout], at[layout], rows, cols, q, tokens, dots, reps);
    return performance.now() - start;
  };
  const layouts: TernaryLayout[] = ["r4", "r16"];
  const best = { r4: [Infinity, Infinity], r16: [Infinity, Infinity] };
  for (const l of layouts) time(l, 1, 1), time(l, n, 1); // compile and warm the caches
  for (let round = 0; round < PROBE_ROUNDS; round++) {
    for (const l of layouts) {
      best[l][0] = Math.min(best[l][0], time(l, 1, 16) / 16);
      best[l][1] = Math.min(best[l][1], time(l, n, 2) / 2);
    }
  }
  const macs = rows * cols;
  const gmacs = (l: TernaryLayout) => ({
    decode: macs / best[l][0] / 1e6,
    batch: (n * macs) / best[l][1] / 1e6,
  });
  // per activation row, decode and batched weigh alike
  const cost = (l: TernaryLayout) => best[l][0] + best[l][1] / n;
  return {
    layout: cost("r16") < cost("r4") ? "r16" : "r4",
    gmacs: { r4: gmacs("r4"), r16: gmacs("r16") },
    ms: performance.now() - t0,
  };
}

/**
 * The clock the kernels' step profile reads (`env.bn_clock`, kernels/prof.c): ms since the epoch,
 * so that the workers' readings and the host's share one time line.
 */
export function bnClock(): number {
  return performance.timeOrigin + performance.now();
}

/** What the kernel module imports: the shared memory and the profile's clock. */
export function kernelImports(memory: WebAssembly.Memory): WebAssembly.Imports {
  return { env: { memory, bn_clock: bnClock } };
}

async function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): Promise<BnExports> {
  const instance = await WebAssembly.instantiate(module, kernelImports(memory));
  return instance.exports as unknown as BnExports;
}

/** Field offsets of `bn_ctx` by dotted name, as the module reports them. */
export interface AbiLayout {
  readonly ctxBytes: number;
  readonly layerBytes: number;
  readonly offsets: ReadonlyMap<string, number>;
}

/** Load-time helpers of one instance: validation and conversions run in wasm. */
export class KernelHelpers {
  protected readonly x: BnExports;
  readonly memory: WebAssembly.Memory;
  /** Scratch word (4 bytes) for out-parameters, just below the instance's stack. */
  readonly #scratch: number;

  protected constructor(x: BnExports, memory: WebAssembly.Memory, scratch: number) {
    this.x = x;
    this.memory = memory;
    this.#scratch = scratch;
  }

  /** Repacks a TQ2_0 / TQ1_0 tensor of `n` elements at `src` into I2_S at `dst`; returns its scale or null if lossy. */
  repackTernary(kind: "tq2_0" | "tq1_0", src: number, dst: number, n: number): number | null {
    const fn = kind === "tq2_0" ? this.x.bn_repack_tq2_0 : this.x.bn_repack_tq1_0;
    const status = fn(src, dst, n, this.#scratch);
    if (status !== BN_STATUS.OK) return null;
    return new Float32Array(this.memory.buffer, this.#scratch, 1)[0];
  }

  /** True when the I2_S codes at `w` (n elements) are all valid (no code 3). */
  i2sValid(w: number, n: number): boolean {
    return this.x.bn_i2s_check(w, n) === BN_STATUS.OK;
  }

  /**
   * Regroups the whole groups of rows of the row-major I2_S codes at `w` in place for `layout`
   * (kernels/bn_impl.h: bn_i2_row, bn_i2_r16_at), through `tmp` (one group: cols bytes for `r4`,
   * 4 * cols for `r16`).
   */
  interleaveI2s(w: number, rows: number, cols: number, tmp: number, layout: TernaryLayout): void {
    this.x.bn_i2s_interleave(w, rows, cols, tmp, LAYOUT_IDS[layout]);
  }

  /**
   * Copies `nbytes` of row-major I2_S data (starting at a group of rows) from `src` to `dst` with
   * the whole groups of its `rows` rows regrouped for `layout` and the rest as is.
   */
  placeI2s(
    src: number,
    dst: number,
    rows: number,
    cols: number,
    nbytes: number,
    layout: TernaryLayout,
  ): void {
    this.x.bn_i2s_place(src, dst, rows, cols, nbytes, LAYOUT_IDS[layout]);
  }

  /**
   * Test and bench probe: `reps` passes of the `kernel` variant's ternary dots of a [rows][cols]
   * matrix at `w` (placed for `layout` by {@linkcode KernelHelpers.placeI2s}) with `n` int8 rows at
   * `q`; the raw dots land at `dots` as [n][rows]. Returns the kernel status (0: ok).
   */
  probeI2(
    kernel: KernelVariant,
    layout: TernaryLayout,
    w: number,
    rows: number,
    cols: number,
    q: number,
    n: number,
    dots: number,
    reps = 1,
  ): number {
    return this.x.bn_probe_i2(KERNEL_IDS[kernel], LAYOUT_IDS[layout], w, rows, cols, q, n, dots, reps);
  }

  /** Quantizes n F16 values at `src` to Q8_0 blocks at `dst`. */
  quantizeQ8_0(src: number, dst: number, n: number): void {
    this.x.bn_quantize_q8_0_f16(src, dst, n);
  }

  /**
   * Quantizes F16 rows [row0, row0 + rows) of a [nv][dim] matrix (at `src`: those rows) into the Q7
   * head layout of the whole matrix: bytes from `dstW` (rows in fours, kernels/bn_impl.h), f32
   * block scales from `dstS`.
   */
  quantizeQ7(
    src: number,
    dstW: number,
    dstS: number,
    row0: number,
    rows: number,
    dim: number,
    nv: number,
  ): void {
    this.x.bn_quantize_q7_f16(src, dstW, dstS, row0, rows, dim, nv);
  }

  /**
   * Places F16 rows [row0, row0 + rows) of a [nv][dim] matrix (at `src`: those rows) in the exact
   * F16P layout of the whole matrix at `dst` (rows in fours, each group scaled by a power of two so
   * that no value is subnormal; kernels/bn_impl.h, bn_f16p_index).
   *
   * @throws {RangeError} when the rows split a group of four (row0 not a multiple of 4, or a count
   * short of the end that is not)
   */
  placeF16p(src: number, dst: number, row0: number, rows: number, dim: number, nv: number): void {
    if (this.x.bn_f16p_place(src, dst, row0, rows, dim, nv) !== BN_STATUS.OK) {
      throw new RangeError(
        `F16P placement of rows [${row0}, ${row0 + rows}) of ${nv} splits a group of four rows`,
      );
    }
  }

  /** True when the n F16 values at `src` are all finite. */
  f16Finite(src: number, n: number): boolean {
    return this.x.bn_f16_check(src, n) === BN_STATUS.OK;
  }
}

/**
 * The host isolate's instance: load-time helpers and the layout check only (it never runs a
 * forward pass, so the HTTP isolate never blocks on compute).
 */
export class WasmHost extends KernelHelpers {
  readonly abi: AbiLayout;

  private constructor(x: BnExports, memory: WebAssembly.Memory, scratch: number) {
    super(x, memory, scratch);
    this.abi = readAbi(x, memory);
  }

  /** Instantiates `km` over `memory` with its stack ending at `stackTop` and a 16-byte scratch below it. */
  static async create(km: KernelModule, memory: WebAssembly.Memory, stackTop: number): Promise<WasmHost> {
    const x = await instantiate(km.module, memory);
    x.__stack_pointer.value = stackTop - 16;
    if (x.bn_build_variant() !== (km.variant === "relaxed" ? 2 : 1)) throw new Error("kernel build mismatch");
    return new WasmHost(x, memory, stackTop - 16);
  }

  /** Test probe: the `kernel` variant's F32 x F16 dot of n values, or its pre-scaled form (a = x * 2^112). */
  dotF32F16(kernel: number, a: number, b: number, n: number, prescaled: boolean): number {
    return this.x.bn_dot_f32_f16_probe(kernel, a, b, n, prescaled ? 1 : 0);
  }

  /**
   * Test probe: logits [v0, v1) of the `kernel` variant's F16P head (a [nv][dim] matrix at `w`, placed
   * by {@linkcode KernelHelpers.placeF16p}) against the activation row at `x`; `hxs` is 2*dim+4
   * floats of scratch.
   */
  headF16p(
    kernel: number,
    w: number,
    dim: number,
    v0: number,
    v1: number,
    x: number,
    hxs: number,
    logits: number,
    nv: number,
  ): void {
    this.x.bn_head_f16p_probe(kernel, w, dim, v0, v1, x, hxs, logits, nv);
  }

  /** Test probe: row `v` of an F16P matrix as f32 at `out`. */
  embedF16p(w: number, nv: number, dim: number, v: number, out: number): void {
    this.x.bn_embed_f16p_probe(w, nv, dim, v, out);
  }

  /**
   * Test probe: the `kernel` variant's attention ops for one head (qs1 = 0) or two: scores of the
   * queries (times 2^112) against n keys of hd f16 at `k`, times `scale`, into s0/s1, then the values
   * weighted by those scores (times 2^112) into o0/o1.
   */
  attention(
    kernel: number,
    qs: readonly [number, number],
    k: number,
    v: number,
    hd: number,
    n: number,
    scale: number,
    s: readonly [number, number],
    o: readonly [number, number],
  ): void {
    this.x.bn_attention_probe(kernel, qs[0], qs[1], k, v, hd, n, scale, s[0], s[1], o[0], o[1]);
  }

  /** Test probe: the `kernel` variant's RMSNorm, y = x / rms(x) * w (n floats). */
  rmsnorm(kernel: number, y: number, x: number, w: number, n: number, eps: number): void {
    this.x.bn_rmsnorm_probe(kernel, y, x, w, n, eps);
  }

  /**
   * Test probe: logits [v0, v1) of the `kernel` variant's Q7 head (a [nv][dim] matrix at `w`, made by
   * {@linkcode KernelHelpers.quantizeQ7}) against the activation row at `y`; `scratch` is dim * 2
   * bytes for its int8 blocks.
   */
  headQ7(
    kernel: number,
    w: number,
    dim: number,
    v0: number,
    v1: number,
    y: number,
    scratch: number,
    logits: number,
    nv: number,
  ): void {
    this.x.bn_head_q7_probe(
      kernel,
      w,
      dim,
      v0,
      v1,
      y,
      scratch,
      scratch + dim,
      scratch + dim + dim / 8,
      logits,
      nv,
    );
  }

  /** `bn_ctx_check`: 0 when the written config can run. */
  checkCtx(ctx: number): number {
    return this.x.bn_ctx_check(ctx);
  }
}

/** A pool worker's instance: load-time helpers, then the worker loop. */
export class WorkerInstance extends KernelHelpers {
  readonly #ctx: number;
  readonly #ith: number;

  private constructor(x: BnExports, memory: WebAssembly.Memory, scratch: number, ctx: number, ith: number) {
    super(x, memory, scratch);
    this.#ctx = ctx;
    this.#ith = ith;
  }

  /** Instantiates the worker's module with its own stack (and a 16-byte scratch below it). */
  static async create(init: WorkerInit): Promise<WorkerInstance> {
    const x = await instantiate(init.module, init.memory);
    x.__stack_pointer.value = init.stackTop - 16;
    return new WorkerInstance(x, init.memory, init.stackTop - 16, init.ctx, init.ith);
  }

  /** Runs `bn_worker_loop` until BN_CMD_QUIT (blocks this worker's isolate meanwhile). */
  loop(): number {
    return this.x.bn_worker_loop(this.#ctx, this.#ith);
  }
}

function readAbi(x: BnExports, memory: WebAssembly.Memory): AbiLayout {
  const table = x.bn_abi_layout();
  const u32 = new Uint32Array(memory.buffer);
  const bytes = new Uint8Array(memory.buffer);
  const base = table >>> 2;
  const n = u32[base + 2];
  const offsets = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const ptr = u32[base + 3 + 2 * i];
    let end = ptr;
    while (bytes[end] !== 0) end++;
    offsets.set(new TextDecoder().decode(bytes.slice(ptr, end)), u32[base + 4 + 2 * i]);
  }
  return { ctxBytes: u32[base], layerBytes: u32[base + 1], offsets };
}

/** Message a pool worker receives once, at start. */
export interface WorkerInit {
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  readonly ctx: number;
  readonly ith: number;
  readonly stackTop: number;
}
