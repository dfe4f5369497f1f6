/**
 * Model loading as jobs that the kernel workers run in parallel before they start computing:
 * positioned reads straight into each tensor's final place (checked as they land); I2_S placement
 * (rows regrouped for the kernels' layout), TQ repacks and head quantization through each worker's
 * own staging buffer. Splitting the
 * reads across workers also splits the page faults of first-touching the memory, which dominate a
 * cold start.
 *
 * @module
 */
import type { KernelHelpers, Region, TernaryLayout } from "./loader.ts";

/** One unit of loading work. Offsets are absolute file offsets; dst/dstW/dstS are memory addresses. */
export type LoadJob =
  /**
   * Bytes read into place; `check` validates the first `checkBytes` of them (I2_S codes, F16 values,
   * F32 values (finite and within {@linkcode F32_LIMIT}), Q8_0 block scales (finite); a Q8_0 chunk
   * starts at a block). I2_S chunks (starting at a group of rows, holding `rows` rows of `cols`) are
   * read into staging and placed with their rows regrouped for `layout`, the kernels' layout
   * (kernels/bn_impl.h: bn_i2_row, bn_i2_r16_at); other tensors are read straight into place (rows 0).
   */
  | {
    readonly kind: "read";
    readonly tensor: string;
    readonly offset: number;
    readonly bytes: number;
    readonly dst: number;
    readonly check: "i2s" | "f16" | "f32" | "q8_0" | null;
    /** Byte offset of this chunk in its tensor (element numbers in messages count from the tensor). */
    readonly at?: number;
    readonly checkBytes: number;
    readonly rows: number;
    readonly cols: number;
    readonly layout: TernaryLayout;
  }
  /** A whole TQ2_0/TQ1_0 tensor read into staging, repacked to I2_S at dst, rows regrouped for `layout`. */
  | {
    readonly kind: "repack";
    readonly tensor: string;
    readonly type: "tq2_0" | "tq1_0";
    readonly offset: number;
    readonly bytes: number;
    readonly rows: number;
    readonly cols: number;
    readonly dst: number;
    readonly layout: TernaryLayout;
  }
  /**
   * F16 rows [row0, row0+rows) of a [totalRows][dim] matrix (row0 a multiple of 4) quantized to Q8_0
   * (dstW) or Q7 (dstW: the matrix's bytes, rows in fours; dstS: its scales), or placed exactly in
   * the F16P layout (dstW: the matrix, rows in fours, then a shift byte per four).
   */
  | {
    readonly kind: "quant";
    readonly tensor: string;
    readonly to: "q8_0" | "q7" | "f16p";
    readonly offset: number;
    readonly dim: number;
    readonly row0: number;
    readonly rows: number;
    readonly totalRows: number;
    readonly dstW: number;
    readonly dstS: number;
  };

/** Bytes of one group of rows in `layout`: the scratch a repack regroups through. */
export function repackTmpBytes(cols: number, layout: TernaryLayout): number {
  return layout === "r16" ? 4 * cols : cols;
}

/** Why a job failed: the tensor and what is wrong with it. */
export interface LoadJobError {
  readonly tensor: string;
  readonly detail: string;
}

/**
 * Largest magnitude an F32 tensor value (a norm weight, an F32 embedding) may have. Larger values are
 * no model's: they come from corruption, and they overflow float32 in the forward pass (a norm
 * weight of 3e38 turns every logit into NaN).
 */
export const F32_LIMIT = 1e6;

/** Why `n` F32 values at `at` are unusable (the first bad one), or null; `first` numbers them. */
export function checkF32(memory: WebAssembly.Memory, at: number, n: number, first = 0): string | null {
  const v = new Float32Array(memory.buffer, at, n);
  for (let i = 0; i < n; i++) {
    const x = v[i];
    if (x >= -F32_LIMIT && x <= F32_LIMIT) continue;
    const what = x !== x ? "NaN" : x === Infinity ? "+Infinity" : x === -Infinity ? "-Infinity" : String(x);
    return `holds ${what} at element ${first + i}, expected a finite value within +-${F32_LIMIT}`;
  }
  return null;
}

/** Why the Q8_0 blocks (34 bytes: an F16 scale, 32 int8) at `at` are unusable, or null. */
export function checkQ8_0(memory: WebAssembly.Memory, at: number, bytes: number, first = 0): string | null {
  const b = new Uint8Array(memory.buffer, at, bytes);
  for (let k = 0; k + 2 <= bytes; k += 34) {
    if ((b[k + 1] & 0x7c) === 0x7c) { // exponent all ones: infinite or NaN
      return `holds a non-finite scale in Q8_0 block ${(first + k) / 34}`;
    }
  }
  return null;
}

/** Positioned reads of `bytes` at `offset` into memory at `dst`; false at an early end of file. */
function readInto(
  file: Deno.FsFile,
  offset: number,
  memory: WebAssembly.Memory,
  dst: number,
  bytes: number,
): boolean {
  file.seekSync(offset, Deno.SeekMode.Start);
  for (let done = 0; done < bytes;) {
    const n = file.readSync(new Uint8Array(memory.buffer, dst + done, bytes - done));
    if (!n) return false;
    done += n;
  }
  return true;
}

/**
 * Runs `jobs` in order on one worker (or the host); returns the first failure, or null. `stage` is
 * this runner's own staging buffer; `progress` gets the file bytes each job consumed.
 */
export function runLoadJobs(
  path: string,
  jobs: readonly LoadJob[],
  helpers: KernelHelpers,
  stage: Region,
  progress: (bytes: number) => void,
): LoadJobError | null {
  const memory = helpers.memory;
  using file = Deno.openSync(path, { read: true });
  for (const job of jobs) {
    const fail = (detail: string) => ({ tensor: job.tensor, detail });
    if (job.kind === "read") {
      // I2_S lands in this worker's staging (still in cache) and is placed with its rows regrouped
      const staged = job.check === "i2s";
      if (staged && job.bytes > stage.bytes) {
        return fail(`needs ${job.bytes} bytes of staging, the plan has ${stage.bytes}`);
      }
      const at = staged ? stage.offset : job.dst;
      if (!readInto(file, job.offset, memory, at, job.bytes)) {
        return fail(`is cut short by the end of the file`);
      }
      if (job.check === "i2s" && !helpers.i2sValid(at, 4 * job.checkBytes)) {
        return fail("holds the invalid 2-bit code 3 (corrupt I2_S data)");
      }
      if (job.check === "f16" && !helpers.f16Finite(at, job.checkBytes / 2)) {
        return fail("holds an infinite or NaN value");
      }
      const first = job.at ?? 0;
      const bad = job.check === "f32"
        ? checkF32(memory, at, job.checkBytes / 4, first / 4)
        : job.check === "q8_0"
        ? checkQ8_0(memory, at, job.checkBytes, first)
        : null;
      if (bad) return fail(bad);
      if (staged) helpers.placeI2s(at, job.dst, job.rows, job.cols, job.bytes, job.layout);
      progress(job.bytes);
    } else if (job.kind === "repack") {
      const need = Math.max(job.bytes, repackTmpBytes(job.cols, job.layout));
      if (need > stage.bytes) return fail(`needs ${need} bytes of staging, the plan has ${stage.bytes}`);
      if (!readInto(file, job.offset, memory, stage.offset, job.bytes)) {
        return fail(`is cut short by the end of the file`);
      }
      if (helpers.repackTernary(job.type, stage.offset, job.dst, job.rows * job.cols) === null) {
        return fail(
          `(${job.type.toUpperCase()}) cannot be repacked exactly: its blocks have different scales or invalid ` +
            "codes, so it is not a ternary tensor with one scale",
        );
      }
      helpers.interleaveI2s(job.dst, job.rows, job.cols, stage.offset, job.layout); // the source is consumed
      progress(job.bytes);
    } else {
      const rowBytes = 2 * job.dim, per = 4 * Math.max(1, Math.floor(stage.bytes / (4 * rowBytes)));
      if (4 * rowBytes > stage.bytes) {
        return fail(`needs ${4 * rowBytes} bytes of staging, the plan has ${stage.bytes}`);
      }
      for (let r = 0; r < job.rows; r += per) {
        const nr = Math.min(per, job.rows - r), row = job.row0 + r;
        if (!readInto(file, job.offset + r * rowBytes, memory, stage.offset, nr * rowBytes)) {
          return fail(`is cut short by the end of the file`);
        }
        if (!helpers.f16Finite(stage.offset, nr * job.dim)) return fail("holds an infinite or NaN value");
        if (job.to === "q8_0") {
          helpers.quantizeQ8_0(stage.offset, job.dstW + row * (job.dim / 32) * 34, nr * job.dim);
        } else if (job.to === "f16p") {
          helpers.placeF16p(stage.offset, job.dstW, row, nr, job.dim, job.totalRows);
        } else {
          helpers.quantizeQ7(stage.offset, job.dstW, job.dstS, row, nr, job.dim, job.totalRows);
        }
        progress(nr * rowBytes);
      }
    }
  }
  return null;
}

/**
 * Splits `jobs` (in file order) into `parts` runs of about equal bytes, keeping each run's reads in
 * file order.
 */
export function partitionJobs(jobs: readonly LoadJob[], parts: number): LoadJob[][] {
  const cost = (j: LoadJob) => (j.kind === "quant" ? j.rows * j.dim * 2 : j.bytes);
  const total = jobs.reduce((s, j) => s + cost(j), 0);
  const out: LoadJob[][] = Array.from({ length: parts }, () => []);
  let acc = 0;
  for (const j of jobs) {
    const part = Math.min(parts - 1, Math.floor((acc / Math.max(total, 1)) * parts));
    out[part].push(j);
    acc += cost(j);
  }
  return out;
}
