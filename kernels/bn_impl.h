/*
 * bn_impl.h: private helpers shared by the kernel files: SIMD availability, f16 conversion, the
 * canonical float reduction order, expf, work splitting, the op table chosen once at start-up.
 *
 * Determinism contract: every f32 reduction uses the canonical order of bn_fold16 (16 partial
 * sums s[i % 16], folded 8-4-2-1); scalar _ref code emulates it exactly, SIMD code keeps the
 * 16 partials in four f32x4 registers (or, for the kernels V8 fuses, in halves of 256-bit ones).
 * RMSNorm sums its squares in double, 8 partial sums s[i % 8] folded 4-2-1 (vec.c). Attention
 * values sum over positions in order per element. No FMA, no relaxed float ops: the only relaxed
 * instructions used are the integer dots, whose results are exact for operands in range. So the
 * results are bit-identical across ref/simd128/relaxed, fused or not, any thread count.
 */
#ifndef BN_IMPL_H
#define BN_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

#include "bn.h"

#ifdef __wasm_relaxed_simd__
#define BN_RELAXED 1
#else
#define BN_RELAXED 0
#endif

#define BN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BN_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- bit casts ---- */
static inline uint32_t bn_f32_bits(float f) { union { float f; uint32_t u; } v = { f }; return v.u; }
static inline float bn_bits_f32(uint32_t u) { union { uint32_t u; float f; } v = { u }; return v.f; }

/* ---- f16 <-> f32 (exact decode; encode rounds to nearest even and saturates to +-65504) ---- */
static inline float bn_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  const uint32_t em = (uint32_t)(h & 0x7fff);
  float f = bn_bits_f32(em << 13) * bn_bits_f32(0x77800000u); /* x 2^112 re-biases, subnormals too */
  if (em >= 0x7c00) f = bn_bits_f32(0x7f800000u | (em << 13)); /* inf / nan */
  return bn_bits_f32(bn_f32_bits(f) | sign);
}

static inline v128_t bn_f16x4_to_f32x4(v128_t h32 /* u32 lanes holding f16 bits */) {
  const v128_t sign = wasm_i32x4_shl(wasm_v128_and(h32, wasm_i32x4_splat(0x8000)), 16);
  const v128_t em = wasm_v128_and(h32, wasm_i32x4_splat(0x7fff));
  v128_t f = wasm_f32x4_mul(wasm_i32x4_shl(em, 13), wasm_i32x4_splat(0x77800000));
  const v128_t special = wasm_i32x4_ge(em, wasm_i32x4_splat(0x7c00));
  f = wasm_v128_bitselect(wasm_v128_or(wasm_i32x4_splat(0x7f800000), wasm_i32x4_shl(em, 13)), f, special);
  return wasm_v128_or(f, sign);
}

/* 8 finite f16 -> 2 x f32x4 in 4 ops per vector: put each f16 in the top half of a 32-bit lane,
 * shift right 3 (arithmetic), clear the 3 copied sign bits, and re-bias with x 2^112; exact for
 * every finite f16, subnormals included (the loader refuses non-finite F16 weights).
 * The two constants come in k: from bn_f16k(), a splat of a run-time value stays in a register
 * across a loop, while V8 rebuilds a v128 constant at every use (14% slower F16 dot, measured). */
typedef struct {
  v128_t mask, mul;
} bn_f16k_t;

extern volatile const int32_t bn_f16k_bits[2]; /* {0x8fffffff, 0x77800000}, vec.c */

static inline bn_f16k_t bn_f16k(void) {
  const bn_f16k_t k = { wasm_i32x4_splat(bn_f16k_bits[0]), wasm_i32x4_splat(bn_f16k_bits[1]) };
  return k;
}

/* the first three ops alone: each finite f16 w as the f32 w * 2^-112, exactly (subnormal f16 become
 * subnormal f32); callers that fold 2^112 into the other operand skip the multiply */
static inline void bn_f16x8_shifted(v128_t h, v128_t mask, v128_t *lo, v128_t *hi) {
  const v128_t z = wasm_i32x4_splat(0);
  const v128_t a = wasm_i8x16_shuffle(z, h, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const v128_t b = wasm_i8x16_shuffle(z, h, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  *lo = wasm_v128_and(wasm_i32x4_shr(a, 3), mask);
  *hi = wasm_v128_and(wasm_i32x4_shr(b, 3), mask);
}

static inline void bn_f16x8_to_f32x4x2(v128_t h, const bn_f16k_t *k, v128_t *lo, v128_t *hi) {
  bn_f16x8_shifted(h, k->mask, lo, hi);
  *lo = wasm_f32x4_mul(*lo, k->mul);
  *hi = wasm_f32x4_mul(*hi, k->mul);
}

/* 2^112: what an activation is multiplied by (exactly) before a dot with shifted f16 weights */
static inline float bn_2p112(void) { return bn_bits_f32(0x77800000u); }

/* scalar twin of bn_f16x8_shifted */
static inline float bn_f16_shifted(uint16_t h) {
  return bn_bits_f32(((uint32_t)(h & 0x8000) << 16) | ((uint32_t)(h & 0x7fff) << 13));
}

static inline uint16_t bn_f32_to_f16(float f) {
  uint32_t x = bn_f32_bits(f);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return sign | 0x7e00;             /* nan */
  if (x >= 0x477ff000u) return sign | 0x7bff;            /* >= 65520 rounds past max: saturate */
  if (x < 0x38800000u) {                                 /* below the smallest normal f16 */
    if (x < 0x33000000u) return sign;                    /* < 2^-25: rounds to zero */
    const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;                      /* 14..24 */
    uint32_t v = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (v & 1))) v++;
    return sign | (uint16_t)v;
  }
  uint32_t v = ((x - 0x38000000u) >> 13);                /* rebias exponent */
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (v & 1))) v++;
  if (v > 0x7bffu) v = 0x7bffu;
  return sign | (uint16_t)v;
}

/* ---- seeds for V8's revectorizer (reference/wasm-256bit.md) ----
 * A tree of 128-bit operations V8 fuses into 256-bit ones grows from a seed: two stores 16 bytes
 * apart (never in Deno: each store carries a bounds check, which the pairing refuses) or the two
 * inputs of an integer add or narrowing. A kernel whose sums are floats therefore also feeds each
 * accumulator pair (lo: the half from extend_low, hi: extend_high) into BN_SEED and the result into a
 * volatile stack word, once per call. The narrowing keeps the operand order (clang may swap the
 * operands of an add, and V8 pairs extend_low/high only in that order). */
#define BN_SEED(lo, hi) wasm_i16x8_narrow_i32x4((lo), (hi))

/* ---- canonical reduction: 16 partial sums folded 8-4-2-1 ---- */
static inline float bn_fold16(float s[16]) {
  for (int j = 0; j < 8; j++) s[j] = s[j] + s[j + 8];
  for (int j = 0; j < 4; j++) s[j] = s[j] + s[j + 4];
  s[0] = s[0] + s[2];
  s[1] = s[1] + s[3];
  return s[0] + s[1];
}

static inline float bn_fold16_v(v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
  const v128_t b0 = wasm_f32x4_add(a0, a2), b1 = wasm_f32x4_add(a1, a3);
  const v128_t c = wasm_f32x4_add(b0, b1);
  const v128_t d = wasm_f32x4_add(c, wasm_i32x4_shuffle(c, c, 2, 3, 2, 3));
  return wasm_f32x4_extract_lane(d, 0) + wasm_f32x4_extract_lane(d, 1);
}

/* ---- expf: Cephes-style, identical scalar and SIMD op sequence; exp(x) = 0 for x < -86 ---- */
#define BN_EXP_HI 88.3762626647949f
#define BN_EXP_LO (-86.0f)
static inline float bn_expf(float x) {
  if (x < BN_EXP_LO) return 0.0f;
  if (x > BN_EXP_HI) x = BN_EXP_HI;
  const float n = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  const float y = p * (r * r) + r + 1.0f;
  return bn_bits_f32(bn_f32_bits(y) + ((uint32_t)(int32_t)n << 23));
}

static inline v128_t bn_expf_v(v128_t x) {
  const v128_t under = wasm_f32x4_lt(x, wasm_f32x4_splat(BN_EXP_LO));
  x = wasm_f32x4_pmin(wasm_f32x4_splat(BN_EXP_HI), x);
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.9875691500E-4f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.3981999507E-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(8.3334519073E-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(4.1665795894E-2f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.6666665459E-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(5.0000001201E-1f));
  v128_t y = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(p, wasm_f32x4_mul(r, r)), r), wasm_f32x4_splat(1.0f));
  y = wasm_i32x4_add(y, wasm_i32x4_shl(wasm_i32x4_trunc_sat_f32x4(n), 23));
  return wasm_v128_andnot(y, under);
}

/* ---- work split: [lo, hi) of n items for thread ith, boundaries multiples of `align` ---- */
static inline void bn_split(uint32_t n, int ith, int nth, uint32_t align, uint32_t *lo, uint32_t *hi) {
  const uint32_t units = (n + align - 1) / align;
  const uint32_t a = (uint32_t)(((uint64_t)units * (uint32_t)ith) / (uint32_t)nth);
  const uint32_t b = (uint32_t)(((uint64_t)units * (uint32_t)(ith + 1)) / (uint32_t)nth);
  *lo = BN_MIN(a * align, n);
  *hi = BN_MIN(b * align, n);
}

/* ---- I2_S matrices in memory: rows in fours ----
 * The file's I2_S rows (row m at m*cols/4, 32-byte blocks of 128 elements) are regrouped at load
 * (bn_i2s_interleave): rows 4g..4g+3 share one region of 4*cols/4 bytes in which block k of row
 * 4g+r sits at (4k + r) * 32. Rows past the last full group of four keep the file layout, and the
 * f32 scale stays at rows*cols/4. A decode step then streams four rows as one sequential run and
 * loads each activation vector once for four rows (24% faster matvec than one row at a time, 2B4T
 * shapes, weights from DRAM, measured). Returns row m's first block; *stride is its block stride. */
static inline const uint8_t *bn_i2_row(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m, uint32_t *stride) {
  if (m < (rows & ~3u)) {
    *stride = 128;
    return w + (size_t)(m >> 2) * cols + (m & 3) * 32;
  }
  *stride = 32;
  return w + (size_t)m * (cols / 4);
}

/* ---- I2_S matrices in memory: rows in sixteens (BN_LAYOUT_R16, matmul_i2_r16.c) ----
 * Made at load (bn_i2s_place): rows 16g..16g+15 share 4*cols bytes at g*4*cols; per 16 columns c
 * (64 bytes), quad k (16 bytes at 64c + 16k) holds column 16c+i of row 16g+4k+f in byte i at bits
 * 2f. Rows past the last group of 16 keep the file layout. Returns the byte holding (m, j) and the
 * shift of its code. */
static inline const uint8_t *bn_i2_r16_at(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m, uint32_t j,
                                          uint32_t *shift) {
  if (m < (rows & ~15u)) {
    *shift = 2 * (m & 3);
    return w + (size_t)(m >> 4) * 4 * cols + (j >> 4) * 64 + ((m >> 2) & 3) * 16 + (j & 15);
  }
  *shift = 6 - 2 * ((j & 127) >> 5);
  return w + (size_t)m * (cols / 4) + (j >> 7) * 32 + (j & 31);
}

/* ---- Q7 head rows in memory: in fours too ----
 * Made at load (bn_quantize_q7_f16): block k (32 bytes) of vocabulary row 4g+r sits at
 * g*4*dim + 128k + 32r; rows past the last group of four at v*dim. The head then streams four rows
 * as one run and loads each activation block once for them (61% faster Q7 head kernel, measured).
 * The f32 block scales follow the nv*dim bytes, in fours too: scale k of row 4g+r at float
 * g*4*nb + 4k + r (nb = dim/32), rows past the last group at v*nb + k, so that one load gives a
 * block's four scales (10% faster Q7 head kernel, measured). */
static inline uint32_t bn_q7_row_offset(uint32_t nv, uint32_t dim, uint32_t v, uint32_t *stride) {
  if (v < (nv & ~3u)) {
    *stride = 128;
    return (v >> 2) * 4 * dim + (v & 3) * 32;
  }
  *stride = 32;
  return v * dim;
}

/* index of row v's first block scale and the stride between its block scales */
static inline size_t bn_q7_scale_index(uint32_t nv, uint32_t nb, uint32_t v, uint32_t *stride) {
  if (v < (nv & ~3u)) {
    *stride = 4;
    return (size_t)(v >> 2) * 4 * nb + (v & 3);
  }
  *stride = 1;
  return (size_t)v * nb;
}

/* ---- F16P head rows in memory: in fours, scaled per four ----
 * Made at load (bn_f16p_place): rows 4g..4g+3 share 8*dim bytes at g*8*dim; per 4 columns c (32
 * bytes at 32*(c/4)), rows 4g and 4g+1 (four f16 each) fill the first 16 bytes, rows 4g+2 and 4g+3
 * the next 16. So one 16-byte load feeds both halves of a 256-bit operation (i32x4.extend_low/high:
 * one vpmovsxwd ymm), a group of four is one sequential run (the prefetcher follows one stream far
 * better than two: a layout in pairs read two pairs at once was 20% slower from DRAM, measured),
 * and the rows share each activation load (see head_f16.c). Rows past the last group of four keep
 * the file layout at v*dim. Each group (and the rows past the last one, together) is stored times
 * 2^shift, shift = the byte at (u8 *)(w + nv*dim) + v/4: BN_F16P_SHIFT when every |w| of those rows
 * is below 2^(16 - BN_F16P_SHIFT), else 0. Then no f16 is subnormal and the kernels' f32 from
 * (bits << 13) is w * 2^(shift - 112), never a denormal operand (f16 subnormals as denormals made
 * the F16 head 35% slower, measured). Returns the index of (v, c) in u16 units. */
#define BN_F16P_SHIFT 10
static inline size_t bn_f16p_index(uint32_t nv, uint32_t dim, uint32_t v, uint32_t c) {
  if (v < (nv & ~3u)) return (size_t)(v >> 2) * 4 * dim + (c >> 2) * 16 + (v & 3) * 4 + (c & 3);
  return (size_t)v * dim + c;
}

static inline const uint8_t *bn_f16p_shifts(const uint16_t *w, uint32_t nv, uint32_t dim) {
  return (const uint8_t *)(w + (size_t)nv * dim);
}

/* ---- quantized activations of one matmul: int8 rows, their 127/absmax scale and sum ---- */
typedef struct {
  const int8_t *q; /* [n][ld] */
  const float *scale;
  const int32_t *sum;
  uint32_t ld;
  uint32_t n;
  uint32_t mask3; /* always 3, read at run time (see bn_dot_i2_i8_simd) */
} bn_qrows;

/* ---- ternary dots, chosen once by (kernel, layout): bn_dot_i2_select() in matmul_i2.c ----
 * raw integer dots of rows [m0, m1) of a [rows][cols] I2_S matrix in the given layout (rows in fours,
 * bn_i2_row, or in sixteens, bn_i2_r16_at) with n int8 rows: dots[t * ld_dots + m - m0] */
typedef void (*bn_dot_i2_fn)(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0, uint32_t m1,
                             const bn_qrows *x, int32_t *dots, uint32_t ld_dots);
bn_dot_i2_fn bn_dot_i2_select(uint32_t kernel, uint32_t layout);

/* ---- op table, filled once by bn_ops_select() ---- */
typedef struct {
  float (*dot_f32)(const float *a, const float *b, uint32_t n);
  float (*dot_f32_f16)(const float *a, const uint16_t *b, uint32_t n);
  /* dot_f32_f16(x, b) bit for bit, given as = x * 2^112 from bn_scale_2p112 */
  float (*dot_f32_f16s)(const float *as, const uint16_t *b, uint32_t n);
  /* one Q8_0 row (dim/32 blocks of f16 d + 32 int8) against int8 blocks with f32 scales */
  float (*dot_q8_0_row)(const uint8_t *row, const int8_t *q, const float *qscale, uint32_t nblocks);
  void (*quantize_i8)(const float *x, uint32_t n, int8_t *q, float *scale, int32_t *sum);
  void (*rmsnorm)(float *y, const float *x, const float *w, uint32_t n, float eps);
  /* y += a * x (f16 x), given as = a * 2^112 with |a| < 2^16 (exact; no re-bias multiply) */
  void (*axpy_f16s)(float *y, float as, const uint16_t *x, uint32_t n);
  void (*exp_sub)(float *x, uint32_t n, float m);                   /* x = exp(x - m) */
  float (*sum)(const float *x, uint32_t n);
  /* Q7 head rows [v0, v1) against n_out activation rows (int8 blocks of 32 with f32 scales and
   * {-64*sum, 0, 0, 0} per block): logits[j*nv + v]. Per row, per block: 4 integer lane sums (lane j holds elements
   * i with (i%16)/4 == j; lane 0 minus 64*sum), each times (dw*dq) added to its f32 lane; the
   * lanes are folded (0+2)+(1+3) at the end. */
  void (*head_q7)(const uint8_t *w, const float *dw, uint32_t dim, uint32_t v0, uint32_t v1, const int8_t *q,
                  const float *dq, const int32_t *qsum, uint32_t n_out, float *logits, uint32_t nv);
  /* F16P head rows [v0, v1) against one activation row x: logits[v] = dot_f32_f16(x, row v)
   * bit for bit (the canonical order); xs is x's row of state.hxs (x * 2^102, x * 2^112), or 0 when
   * some |x| >= 2^16 (then the exact scalar path runs) */
  void (*head_f16p)(const uint16_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *x, const float *xs,
                    float *logits, uint32_t nv);
  /* attention scores of one or two heads (qs1 == 0: one), queries given times 2^112:
   * s_h[p] = dot_f32_f16s(qs_h, k + p*hd, hd) * scale for p < n */
  void (*scores_f16s)(const float *qs0, const float *qs1, const uint16_t *k, uint32_t hd, uint32_t n, float scale,
                      float *s0, float *s1);
  /* attention values of one or two heads (w1 == 0: one), weights given times 2^112: o_h[i] =
   * sum over p < n, in order, of w_h[p] * v[p*hd + i] (as axpy_f16s from zero) */
  void (*values_f16s)(const float *w0, const float *w1, const uint16_t *v, uint32_t hd, uint32_t n, float *o0,
                      float *o1);
} bn_ops;

const bn_ops *bn_ops_select(uint32_t kernel);

/* xs = x * 2^112 (exact) and 1, or 0 when some |x| >= 2^16 (the scaled value could overflow) */
int32_t bn_scale_2p112(const float *x, uint32_t n, float *xs);

/* the _ref twins, used directly by tests through BN_KERNEL_REF */
extern const bn_ops bn_ops_ref;
extern const bn_ops bn_ops_simd;

/* pool.c */
void bn_barrier(bn_pool *p, int nth);

/* prof.c: the step profile (bn.h, BN_PART_*); each call is one load and a branch when it is off.
 * begin: start timing `part`; mark: charge the time since the last mark to the current part and
 * start `part` (nothing when it is the current one); sync: bn_barrier, the time before it charged
 * to the current part as work and the time in it as wait, then `next` is timed; end: charge the
 * time since the last mark to the current part and stop. */
void bn_prof_begin(const bn_ctx *c, int ith, int part);
void bn_prof_mark(const bn_ctx *c, int ith, int part);
void bn_prof_end(const bn_ctx *c, int ith);
void bn_sync(bn_ctx *c, int ith, int nth, int next);

/* forward.c / attention.c / head.c */
int32_t bn_forward(bn_ctx *c, const bn_ops *ops, int ith, int nth);
void bn_attention_heads(const bn_ctx *c, const bn_ops *ops, uint32_t layer, uint32_t t, uint32_t h0, uint32_t nh,
                        float *scores);
void bn_embed_row(const bn_config *cfg, const void *embd, uint32_t token, float *out);
void bn_head_rows(const bn_ctx *c, const bn_ops *ops, uint32_t v0, uint32_t v1);
void bn_head_prepare(const bn_ctx *c, const bn_ops *ops, uint32_t j);
/* an int8 head's activation row y as blocks of 32: q, scales absmax/127, {-64*sum, 0, 0, 0} */
void bn_head_blocks(const float *y, uint32_t dim, int8_t *q, float *qs, int32_t *qsum);

/* head_f16.c */
void bn_embed_f16p(const uint16_t *w, uint32_t nv, uint32_t dim, uint32_t v, float *out);
void bn_f16p_prepare(const float *x, uint32_t dim, float *hxs);
void bn_head_f16p_ref(const uint16_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *x, const float *xs,
                      float *logits, uint32_t nv);
void bn_head_f16p_simd(const uint16_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *x, const float *xs,
                       float *logits, uint32_t nv);

#endif
