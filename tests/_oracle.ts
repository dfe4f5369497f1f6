/**
 * The reference oracle: a plain, scalar, float64 TypeScript forward pass of a BitNet b1.58 GGUF,
 * written straight from the spec (§2) for the tests to compare the WASM engine against. Slow and
 * obviously correct: tiny models only.
 *
 * It mirrors the numerics contract where it decides values (per-token int8 activations with round
 * half to even, ternary integer dots, the f16 KV cache) and otherwise computes in float64, so WASM
 * logits match it within a tolerance, not bit for bit.
 *
 * @module
 */
import { GGML_TYPE } from "../engine/format/ggml_types.ts";
import { openGguf } from "../engine/format/gguf.ts";
import { type ModelConfig, modelConfigFromGguf, type TernaryTensor } from "../engine/model/model_config.ts";
import { decodeF16, dequantizeQ8_0, unpackI2S, unpackTQ1, unpackTQ2 } from "../engine/format/ternary_pack.ts";
import type { GgufTensorInfo } from "../engine/format/gguf.ts";

interface Ternary {
  trits: Int8Array; // [rows][cols]
  beta: number;
  rows: number;
  cols: number;
}

interface OracleLayer {
  attnNorm: Float64Array;
  attnSubNorm: Float64Array;
  ffnNorm: Float64Array;
  ffnSubNorm: Float64Array;
  wq: Ternary;
  wk: Ternary;
  wv: Ternary;
  wo: Ternary;
  wGate: Ternary;
  wUp: Ternary;
  wDown: Ternary;
}

/** Round half to even, as f32.nearest. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Per-token int8 absmax quantization (spec §2.3); returns q, the scale s = 127/max and sum(q).
 * Activations are f32 values in the engine's contract, so x, s and x*s are rounded to f32 here.
 */
export function quantizeActs(x: ArrayLike<number>): { q: Int32Array; s: number; sum: number } {
  const f = Math.fround;
  let amax = 0;
  for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(f(x[i])));
  const s = f(127 / Math.max(amax, f(1e-5)));
  const q = new Int32Array(x.length);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    q[i] = Math.max(-128, Math.min(127, roundHalfEven(f(f(x[i]) * s))));
    sum += q[i];
  }
  return { q, s, sum };
}

/** y = BitLinear(x): exact integer ternary dot, then / s * beta. */
export function bitLinear(w: Ternary, x: ArrayLike<number>): Float64Array {
  const { q, s } = quantizeActs(x);
  const y = new Float64Array(w.rows);
  for (let m = 0; m < w.rows; m++) {
    let d = 0;
    const base = m * w.cols;
    for (let j = 0; j < w.cols; j++) d += w.trits[base + j] * q[j];
    y[m] = (d / s) * w.beta;
  }
  return y;
}

/** The loader's head modes (engine/model/loader.ts HeadMode). */
export type OracleHead = "file" | "q8_0" | "q7";

/** An F16 matrix quantized at load as kernels/repack.c does: per 32 values, scale absmax/127 (stored
 * as f16) for Q8_0 or absmax/63 (f32) for Q7, round half to even. */
function requantize(v: Float32Array, mode: "q8_0" | "q7"): Float32Array {
  const f = Math.fround, lim = mode === "q8_0" ? 127 : 63, out = new Float32Array(v.length);
  for (let b = 0; b < v.length; b += 32) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(v[b + i]));
    const d = mode === "q8_0" ? Math.f16round(f(amax / 127)) : f(amax / 63), id = d > 0 ? f(1 / d) : 0;
    for (let i = 0; i < 32; i++) {
      out[b + i] = Math.max(-lim, Math.min(lim, roundHalfEven(f(v[b + i] * id)))) * d;
    }
  }
  return out;
}

/** A Q8_0 head multiplies int8 activation blocks of 32 (scale absmax/127): the values it sees. */
function q8Activations(y: Float64Array): Float64Array {
  const f = Math.fround, out = new Float64Array(y.length);
  for (let b = 0; b < y.length; b += 32) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(f(y[b + i])));
    const d = f(amax / 127), id = d > 0 ? f(1 / d) : 0;
    for (let i = 0; i < 32; i++) out[b + i] = roundHalfEven(f(f(y[b + i]) * id)) * d;
  }
  return out;
}

function rmsnorm(x: ArrayLike<number>, w: ArrayLike<number>, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  return Float64Array.from({ length: x.length }, (_, i) => x[i] * scale * w[i]);
}

/** A model read for the oracle, and its per-slot KV caches. */
export class Oracle {
  readonly config: ModelConfig;
  readonly #embd: Float32Array;
  readonly #head: Float32Array;
  readonly #outNorm: Float64Array;
  readonly #layers: OracleLayer[];
  readonly #cache = new Map<number, { k: Float64Array[][]; v: Float64Array[][] }>();

  readonly #headQ8: boolean;

  private constructor(config: ModelConfig, read: (t: GgufTensorInfo) => Uint8Array, head: OracleHead) {
    this.config = config;
    const floats = (t: GgufTensorInfo): Float32Array => {
      const bytes = read(t);
      const n = t.dims.reduce((a, b) => a * b, 1);
      if (t.type === GGML_TYPE.F32) return new Float32Array(bytes.slice().buffer);
      if (t.type === GGML_TYPE.F16) return decodeF16(bytes);
      if (t.type === GGML_TYPE.Q8_0) return dequantizeQ8_0(bytes, n);
      throw new TypeError(`oracle: unsupported float tensor type ${t.type}`);
    };
    const f64 = (t: GgufTensorInfo) => Float64Array.from(floats(t));
    const ternary = (t: TernaryTensor): Ternary => {
      const bytes = read(t.info);
      const n = t.rows * t.cols;
      let trits: Int8Array, beta: number;
      if (t.info.type === GGML_TYPE.I2_S) ({ trits, scale: beta } = unpackI2S(bytes, n));
      else {
        const u = t.info.type === GGML_TYPE.TQ2_0 ? unpackTQ2(bytes, n) : unpackTQ1(bytes, n);
        trits = u.trits;
        beta = u.scales.find((_, k) => trits.subarray(256 * k, 256 * k + 256).some((v) => v !== 0)) ?? 0;
      }
      if (t.scale) beta *= new Float32Array(read(t.scale).slice().buffer)[0];
      return { trits, beta, rows: t.rows, cols: t.cols };
    };
    const embedding = (t: GgufTensorInfo) =>
      head !== "file" && t.type === GGML_TYPE.F16 ? requantize(floats(t), head) : floats(t);
    this.#embd = embedding(config.tokenEmbd);
    this.#head = config.tiedOutput ? this.#embd : embedding(config.output);
    this.#headQ8 = config.output.type === GGML_TYPE.Q8_0 ||
      (head !== "file" && config.output.type === GGML_TYPE.F16);
    this.#outNorm = f64(config.outputNorm);
    this.#layers = config.layers.map((L) => ({
      attnNorm: f64(L.attnNorm),
      attnSubNorm: f64(L.attnSubNorm),
      ffnNorm: f64(L.ffnNorm),
      ffnSubNorm: f64(L.ffnSubNorm),
      wq: ternary(L.wq),
      wk: ternary(L.wk),
      wv: ternary(L.wv),
      wo: ternary(L.wo),
      wGate: ternary(L.wGate),
      wUp: ternary(L.wUp),
      wDown: ternary(L.wDown),
    }));
  }

  /** Reads the GGUF at `path` into float64 / trit arrays; `head` mirrors the loader's head modes. */
  static load(path: string, head: OracleHead = "file"): Oracle {
    const gguf = openGguf(path);
    const config = modelConfigFromGguf(gguf);
    using file = Deno.openSync(path);
    const read = (t: GgufTensorInfo) => {
      const buf = new Uint8Array(t.nbytes);
      file.seekSync(t.offset, Deno.SeekMode.Start);
      for (let done = 0; done < buf.length;) done += file.readSync(buf.subarray(done)) ?? 0;
      return buf;
    };
    return new Oracle(config, read, head);
  }

  /** Forgets the KV cache of `slot`. */
  reset(slot = 0): void {
    this.#cache.delete(slot);
  }

  /** Feeds `token` at the next position of `slot`; returns the logits (float64). */
  step(token: number, slot = 0): Float64Array {
    const c = this.config;
    const cache = this.#cache.get(slot) ?? { k: c.layers.map(() => []), v: c.layers.map(() => []) };
    this.#cache.set(slot, cache);
    const pos = cache.k[0].length;
    let x = Float64Array.from(this.#embd.subarray(token * c.dim, (token + 1) * c.dim));
    const hd = c.headDim, half = hd / 2, group = c.nHeads / c.nKvHeads;
    const rope = (v: Float64Array, off: number) => {
      for (let i = 0; i < half; i++) {
        const th = pos * Math.pow(c.ropeBase, (-2 * i) / hd);
        const cs = Math.fround(Math.cos(th)), sn = Math.fround(Math.sin(th));
        const a = v[off + i], b = v[off + i + half];
        v[off + i] = a * cs - b * sn;
        v[off + i + half] = a * sn + b * cs;
      }
    };
    this.#layers.forEach((L, l) => {
      const h = rmsnorm(x, L.attnNorm, c.normEps);
      const q = bitLinear(L.wq, h), k = bitLinear(L.wk, h), v = bitLinear(L.wv, h);
      for (let hh = 0; hh < c.nHeads; hh++) rope(q, hh * hd);
      for (let hh = 0; hh < c.nKvHeads; hh++) rope(k, hh * hd);
      // the engine keeps K and V in f16, rounded from its f32 values
      cache.k[l].push(k.map((e) => Math.f16round(Math.fround(e))));
      cache.v[l].push(v.map((e) => Math.f16round(Math.fround(e))));
      const att = new Float64Array(c.dim);
      for (let hh = 0; hh < c.nHeads; hh++) {
        const kvh = Math.floor(hh / group);
        const scores = cache.k[l].map((kp) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[hh * hd + i] * kp[kvh * hd + i];
          return d / Math.sqrt(hd);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const sum = e.reduce((a, b) => a + b, 0);
        cache.v[l].forEach((vp, p) => {
          for (let i = 0; i < hd; i++) att[hh * hd + i] += (e[p] / sum) * vp[kvh * hd + i];
        });
      }
      const o = bitLinear(L.wo, rmsnorm(att, L.attnSubNorm, c.normEps));
      x = x.map((e, i) => e + o[i]);
      const h2 = rmsnorm(x, L.ffnNorm, c.normEps);
      const g = bitLinear(L.wGate, h2), u = bitLinear(L.wUp, h2);
      const f = g.map((gi, i) =>
        (c.activation === "relu2" ? Math.max(gi, 0) ** 2 : gi / (1 + Math.exp(-gi))) * u[i]
      );
      const d = bitLinear(L.wDown, rmsnorm(f, L.ffnSubNorm, c.normEps));
      x = x.map((e, i) => e + d[i]);
    });
    let y = rmsnorm(x, this.#outNorm, c.normEps);
    if (this.#headQ8) y = q8Activations(y);
    const logits = new Float64Array(c.nVocab);
    for (let t = 0; t < c.nVocab; t++) {
      let s = 0;
      for (let i = 0; i < c.dim; i++) s += y[i] * this.#head[t * c.dim + i];
      logits[t] = s;
    }
    return logits;
  }
}
