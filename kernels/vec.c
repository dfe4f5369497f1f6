/*
 * vec.c: float vector ops and per-token int8 activation quantization, each with its scalar _ref
 * twin. Lengths passed to dot/rmsnorm/quantize are multiples of 16 (dims are multiples of 128);
 * exp_sub and sum take any length. Float reductions follow the canonical order of bn_fold16, so
 * _ref and SIMD results are bit-identical. No allocation, no I/O.
 */
#include "bn_impl.h"

volatile const int32_t bn_f16k_bits[2] = { (int32_t)0x8fffffff, 0x77800000 };

/* ================================ _ref ================================ */

static float bn_dot_f32_ref(const float *a, const float *b, uint32_t n) {
  float s[16] = { 0 };
  for (uint32_t i = 0; i < n; i++) s[i & 15] = s[i & 15] + a[i] * b[i];
  return bn_fold16(s);
}

static float bn_dot_f32_f16_ref(const float *a, const uint16_t *b, uint32_t n) {
  float s[16] = { 0 };
  for (uint32_t i = 0; i < n; i++) s[i & 15] = s[i & 15] + a[i] * bn_f16_to_f32(b[i]);
  return bn_fold16(s);
}

/* a . b with a = x * 2^112 (see bn_ops.dot_f32_f16s): b's bits shifted into place are b * 2^-112
 * exactly, so the products are x*b's own and the sum is dot_f32_f16's, bit for bit */
static float bn_dot_f32_f16s_ref(const float *as, const uint16_t *b, uint32_t n) {
  float s[16] = { 0 };
  for (uint32_t i = 0; i < n; i++) s[i & 15] = s[i & 15] + as[i] * bn_f16_shifted(b[i]);
  return bn_fold16(s);
}

/* Q8_0 row (blocks of f16 d + 32 int8) . activation blocks (int8 + f32 scale): sequential over blocks */
static float bn_dot_q8_0_row_ref(const uint8_t *row, const int8_t *q, const float *qscale, uint32_t nblocks) {
  float acc = 0.0f;
  for (uint32_t k = 0; k < nblocks; k++) {
    const uint8_t *blk = row + 34 * k;
    const int8_t *w = (const int8_t *)(blk + 2);
    int32_t s = 0;
    for (int i = 0; i < 32; i++) s += (int32_t)w[i] * (int32_t)q[32 * k + i];
    const uint16_t d = (uint16_t)(blk[0] | (blk[1] << 8));
    acc = acc + (float)s * (bn_f16_to_f32(d) * qscale[k]);
  }
  return acc;
}

static void bn_quantize_i8_ref(const float *x, uint32_t n, int8_t *q, float *scale, int32_t *sum) {
  float amax = 0.0f;
  for (uint32_t i = 0; i < n; i++) {
    const float a = __builtin_fabsf(x[i]);
    amax = a > amax ? a : amax;
  }
  const float s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
  int32_t total = 0;
  for (uint32_t i = 0; i < n; i++) {
    float v = __builtin_rintf(x[i] * s); /* f32.nearest: round half to even */
    v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
    q[i] = (int8_t)v;
    total += q[i];
  }
  *scale = s;
  *sum = total;
}

/* RMSNorm with the sum of squares in double, as bitnet.cpp does (its rounding there is finer than an
 * f32 sum's; the logits move closer to exact arithmetic, measured with the float64 oracle): each
 * square is exact in double; 8 partial sums s[i % 8] folded 4-2-1; the scale rounded to f32 once */
static inline double bn_rms_scale(double sum, uint32_t n, float eps) {
  return 1.0 / __builtin_sqrt(sum / (double)n + (double)eps);
}

static void bn_rmsnorm_ref(float *y, const float *x, const float *w, uint32_t n, float eps) {
  double s[8] = { 0 };
  for (uint32_t i = 0; i < n; i++) s[i & 7] = s[i & 7] + (double)x[i] * (double)x[i];
  for (int j = 0; j < 4; j++) s[j] = s[j] + s[j + 4];
  const double scale = bn_rms_scale((s[0] + s[2]) + (s[1] + s[3]), n, eps);
  for (uint32_t i = 0; i < n; i++) y[i] = (float)(((double)x[i] * scale) * (double)w[i]);
}

/* y += a * x for f16 x, given as = a * 2^112: x's bits shifted into place are x * 2^-112 exactly,
 * so each product is a*x's own (no re-bias multiply) */
static void bn_axpy_f16s_ref(float *y, float as, const uint16_t *x, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) y[i] = y[i] + as * bn_f16_shifted(x[i]);
}

static void bn_exp_sub_ref(float *x, uint32_t n, float m) {
  for (uint32_t i = 0; i < n; i++) x[i] = bn_expf(x[i] - m);
}

static float bn_sum_ref(const float *x, uint32_t n) {
  float s[16] = { 0 };
  const uint32_t padded = (n + 15) & ~15u; /* SIMD adds +0.0 in the padding lanes: do the same */
  for (uint32_t i = 0; i < padded; i++) s[i & 15] = s[i & 15] + (i < n ? x[i] : 0.0f);
  return bn_fold16(s);
}

/* scores s_h[p] = dot_f32_f16s(qs_h, k_p, hd) * scale of one or two heads (qs1 == 0: one) */
static void bn_scores_f16s_ref(const float *qs0, const float *qs1, const uint16_t *k, uint32_t hd, uint32_t n,
                               float scale, float *s0, float *s1) {
  for (uint32_t p = 0; p < n; p++) {
    s0[p] = bn_dot_f32_f16s_ref(qs0, k + (size_t)p * hd, hd) * scale;
    if (qs1) s1[p] = bn_dot_f32_f16s_ref(qs1, k + (size_t)p * hd, hd) * scale;
  }
}

/* o_h = sum_p w_h[p] * v_p over p in order (w given times 2^112), of one or two heads (w1 == 0: one) */
static void bn_values_f16s_ref(const float *w0, const float *w1, const uint16_t *v, uint32_t hd, uint32_t n, float *o0,
                               float *o1) {
  for (uint32_t i = 0; i < hd; i++) {
    o0[i] = 0.0f;
    if (w1) o1[i] = 0.0f;
  }
  for (uint32_t p = 0; p < n; p++) {
    bn_axpy_f16s_ref(o0, w0[p], v + (size_t)p * hd, hd);
    if (w1) bn_axpy_f16s_ref(o1, w1[p], v + (size_t)p * hd, hd);
  }
}

void bn_head_q7_ref(const uint8_t *w, const float *dw, uint32_t dim, uint32_t v0, uint32_t v1, const int8_t *q,
                    const float *dq, const int32_t *qsum, uint32_t n_out, float *logits, uint32_t nv);
void bn_head_q7_simd(const uint8_t *w, const float *dw, uint32_t dim, uint32_t v0, uint32_t v1, const int8_t *q,
                     const float *dq, const int32_t *qsum, uint32_t n_out, float *logits, uint32_t nv);

const bn_ops bn_ops_ref = {
  .dot_f32 = bn_dot_f32_ref,
  .dot_f32_f16 = bn_dot_f32_f16_ref,
  .dot_f32_f16s = bn_dot_f32_f16s_ref,
  .dot_q8_0_row = bn_dot_q8_0_row_ref,
  .quantize_i8 = bn_quantize_i8_ref,
  .rmsnorm = bn_rmsnorm_ref,
  .axpy_f16s = bn_axpy_f16s_ref,
  .exp_sub = bn_exp_sub_ref,
  .sum = bn_sum_ref,
  .head_q7 = bn_head_q7_ref,
  .head_f16p = bn_head_f16p_ref,
  .scores_f16s = bn_scores_f16s_ref,
  .values_f16s = bn_values_f16s_ref,
};

/* ================================ SIMD ================================ */

static float bn_dot_f32_simd(const float *a, const float *b, uint32_t n) {
  v128_t s0 = wasm_f32x4_splat(0), s1 = s0, s2 = s0, s3 = s0;
  for (uint32_t i = 0; i < n; i += 16) {
    s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
    s1 = wasm_f32x4_add(s1, wasm_f32x4_mul(wasm_v128_load(a + i + 4), wasm_v128_load(b + i + 4)));
    s2 = wasm_f32x4_add(s2, wasm_f32x4_mul(wasm_v128_load(a + i + 8), wasm_v128_load(b + i + 8)));
    s3 = wasm_f32x4_add(s3, wasm_f32x4_mul(wasm_v128_load(a + i + 12), wasm_v128_load(b + i + 12)));
  }
  return bn_fold16_v(s0, s1, s2, s3);
}

static float bn_dot_f32_f16_simd(const float *a, const uint16_t *b, uint32_t n) {
  const bn_f16k_t k = bn_f16k();
  v128_t s0 = wasm_f32x4_splat(0), s1 = s0, s2 = s0, s3 = s0;
  for (uint32_t i = 0; i < n; i += 16) {
    v128_t f0, f1, f2, f3;
    bn_f16x8_to_f32x4x2(wasm_v128_load(b + i), &k, &f0, &f1);
    bn_f16x8_to_f32x4x2(wasm_v128_load(b + i + 8), &k, &f2, &f3);
    s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(wasm_v128_load(a + i), f0));
    s1 = wasm_f32x4_add(s1, wasm_f32x4_mul(wasm_v128_load(a + i + 4), f1));
    s2 = wasm_f32x4_add(s2, wasm_f32x4_mul(wasm_v128_load(a + i + 8), f2));
    s3 = wasm_f32x4_add(s3, wasm_f32x4_mul(wasm_v128_load(a + i + 12), f3));
  }
  return bn_fold16_v(s0, s1, s2, s3);
}

/* the same with a = x * 2^112: the conversion's x 2^112 is folded into a (3 ops per 4 weights, not 4:
 * 12% faster F16 head, measured) */
static float bn_dot_f32_f16s_simd(const float *as, const uint16_t *b, uint32_t n) {
  const v128_t mask = wasm_i32x4_splat(bn_f16k_bits[0]);
  v128_t s0 = wasm_f32x4_splat(0), s1 = s0, s2 = s0, s3 = s0;
  for (uint32_t i = 0; i < n; i += 16) {
    v128_t f0, f1, f2, f3;
    bn_f16x8_shifted(wasm_v128_load(b + i), mask, &f0, &f1);
    bn_f16x8_shifted(wasm_v128_load(b + i + 8), mask, &f2, &f3);
    s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(wasm_v128_load(as + i), f0));
    s1 = wasm_f32x4_add(s1, wasm_f32x4_mul(wasm_v128_load(as + i + 4), f1));
    s2 = wasm_f32x4_add(s2, wasm_f32x4_mul(wasm_v128_load(as + i + 8), f2));
    s3 = wasm_f32x4_add(s3, wasm_f32x4_mul(wasm_v128_load(as + i + 12), f3));
  }
  return bn_fold16_v(s0, s1, s2, s3);
}

static float bn_dot_q8_0_row_simd(const uint8_t *row, const int8_t *q, const float *qscale, uint32_t nblocks) {
  float acc = 0.0f;
  for (uint32_t k = 0; k < nblocks; k++) {
    const uint8_t *blk = row + 34 * k;
    const v128_t w0 = wasm_v128_load(blk + 2), w1 = wasm_v128_load(blk + 18);
    const v128_t a0 = wasm_v128_load(q + 32 * k), a1 = wasm_v128_load(q + 32 * k + 16);
    v128_t s = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a0), wasm_i16x8_extend_low_i8x16(w0));
    s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a0), wasm_i16x8_extend_high_i8x16(w0)));
    s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a1), wasm_i16x8_extend_low_i8x16(w1)));
    s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a1), wasm_i16x8_extend_high_i8x16(w1)));
    const int32_t si = wasm_i32x4_extract_lane(s, 0) + wasm_i32x4_extract_lane(s, 1) + wasm_i32x4_extract_lane(s, 2) +
                       wasm_i32x4_extract_lane(s, 3);
    const uint16_t d = (uint16_t)(blk[0] | (blk[1] << 8));
    acc = acc + (float)si * (bn_f16_to_f32(d) * qscale[k]);
  }
  return acc;
}

static void bn_quantize_i8_simd(const float *x, uint32_t n, int8_t *q, float *scale, int32_t *sum) {
  v128_t m = wasm_f32x4_splat(0);
  for (uint32_t i = 0; i < n; i += 4) m = wasm_f32x4_pmax(m, wasm_f32x4_abs(wasm_v128_load(x + i)));
  m = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
  m = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
  const float amax = wasm_f32x4_extract_lane(m, 0);
  const float s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
  const v128_t vs = wasm_f32x4_splat(s);
  v128_t total = wasm_i32x4_splat(0);
  for (uint32_t i = 0; i < n; i += 16) {
    v128_t r[4];
    for (int k = 0; k < 4; k++)
      r[k] = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + i + 4 * k), vs)));
    const v128_t w0 = wasm_i16x8_narrow_i32x4(r[0], r[1]), w1 = wasm_i16x8_narrow_i32x4(r[2], r[3]);
    const v128_t b = wasm_i8x16_narrow_i16x8(w0, w1);
    wasm_v128_store(q + i, b);
    total = wasm_i32x4_add(total, wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_extadd_pairwise_i8x16(b)));
  }
  *scale = s;
  *sum = wasm_i32x4_extract_lane(total, 0) + wasm_i32x4_extract_lane(total, 1) + wasm_i32x4_extract_lane(total, 2) +
         wasm_i32x4_extract_lane(total, 3);
}

static void bn_rmsnorm_simd(float *y, const float *x, const float *w, uint32_t n, float eps) {
  /* d0: s[0..1], d1: s[2..3], d2: s[4..5], d3: s[6..7] of bn_rmsnorm_ref */
  v128_t d0 = wasm_f64x2_splat(0), d1 = d0, d2 = d0, d3 = d0;
  for (uint32_t i = 0; i < n; i += 8) {
    const v128_t a = wasm_v128_load(x + i), b = wasm_v128_load(x + i + 4);
    const v128_t a0 = wasm_f64x2_promote_low_f32x4(a), a1 = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(a, a, 2, 3, 2, 3));
    const v128_t b0 = wasm_f64x2_promote_low_f32x4(b), b1 = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(b, b, 2, 3, 2, 3));
    d0 = wasm_f64x2_add(d0, wasm_f64x2_mul(a0, a0));
    d1 = wasm_f64x2_add(d1, wasm_f64x2_mul(a1, a1));
    d2 = wasm_f64x2_add(d2, wasm_f64x2_mul(b0, b0));
    d3 = wasm_f64x2_add(d3, wasm_f64x2_mul(b1, b1));
  }
  const v128_t e = wasm_f64x2_add(wasm_f64x2_add(d0, d2), wasm_f64x2_add(d1, d3));
  const v128_t vs = wasm_f64x2_splat(bn_rms_scale(wasm_f64x2_extract_lane(e, 0) + wasm_f64x2_extract_lane(e, 1), n, eps));
  for (uint32_t i = 0; i < n; i += 4) {
    const v128_t a = wasm_v128_load(x + i), b = wasm_v128_load(w + i);
    const v128_t lo = wasm_f64x2_mul(wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(a), vs), wasm_f64x2_promote_low_f32x4(b));
    const v128_t hi = wasm_f64x2_mul(wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(a, a, 2, 3, 2, 3)), vs),
                                     wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(b, b, 2, 3, 2, 3)));
    wasm_v128_store(y + i, wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5));
  }
}

static void bn_axpy_f16s_simd(float *y, float as, const uint16_t *x, uint32_t n) {
  const v128_t va = wasm_f32x4_splat(as), mask = wasm_i32x4_splat(bn_f16k_bits[0]);
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v128_t f0, f1;
    bn_f16x8_shifted(wasm_v128_load(x + i), mask, &f0, &f1);
    wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(va, f0)));
    wasm_v128_store(y + i + 4, wasm_f32x4_add(wasm_v128_load(y + i + 4), wasm_f32x4_mul(va, f1)));
  }
  for (; i < n; i++) y[i] = y[i] + as * bn_f16_shifted(x[i]);
}

static void bn_exp_sub_simd(float *x, uint32_t n, float m) {
  const v128_t vm = wasm_f32x4_splat(m);
  uint32_t i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(x + i, bn_expf_v(wasm_f32x4_sub(wasm_v128_load(x + i), vm)));
  for (; i < n; i++) x[i] = bn_expf(x[i] - m);
}

static float bn_sum_simd(const float *x, uint32_t n) {
  v128_t s[4] = { wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0) };
  uint32_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 4; k++) s[k] = wasm_f32x4_add(s[k], wasm_v128_load(x + i + 4 * k));
  if (i < n) {
    float tail[16] = { 0 };
    for (uint32_t j = i; j < n; j++) tail[j - i] = x[j];
    for (int k = 0; k < 4; k++) s[k] = wasm_f32x4_add(s[k], wasm_v128_load(tail + 4 * k));
  }
  return bn_fold16_v(s[0], s[1], s[2], s[3]);
}

/* two heads' scores against each key: the key's f16 conversion is shared (the canonical order of
 * dot_f32_f16s per head) */
static void bn_scores_f16s_simd(const float *qs0, const float *qs1, const uint16_t *k, uint32_t hd, uint32_t n,
                                float scale, float *s0, float *s1) {
  if (!qs1) {
    for (uint32_t p = 0; p < n; p++) s0[p] = bn_dot_f32_f16s_simd(qs0, k + (size_t)p * hd, hd) * scale;
    return;
  }
  const v128_t mask = wasm_i32x4_splat(bn_f16k_bits[0]);
  for (uint32_t p = 0; p < n; p++) {
    const uint16_t *kp = k + (size_t)p * hd;
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (uint32_t i = 0; i < hd; i += 16) {
      v128_t f0, f1, f2, f3;
      bn_f16x8_shifted(wasm_v128_load(kp + i), mask, &f0, &f1);
      bn_f16x8_shifted(wasm_v128_load(kp + i + 8), mask, &f2, &f3);
      a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(qs0 + i), f0));
      a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(qs0 + i + 4), f1));
      a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_v128_load(qs0 + i + 8), f2));
      a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_v128_load(qs0 + i + 12), f3));
      b0 = wasm_f32x4_add(b0, wasm_f32x4_mul(wasm_v128_load(qs1 + i), f0));
      b1 = wasm_f32x4_add(b1, wasm_f32x4_mul(wasm_v128_load(qs1 + i + 4), f1));
      b2 = wasm_f32x4_add(b2, wasm_f32x4_mul(wasm_v128_load(qs1 + i + 8), f2));
      b3 = wasm_f32x4_add(b3, wasm_f32x4_mul(wasm_v128_load(qs1 + i + 12), f3));
    }
    s0[p] = bn_fold16_v(a0, a1, a2, a3) * scale;
    s1[p] = bn_fold16_v(b0, b1, b2, b3) * scale;
  }
}

/* Values, 32 elements of each head at a time with the sums in registers (one load, conversion,
 * multiply and add per 4 elements and position; today's axpy also loaded and stored the sums).
 * Written for V8's revectorizer: one 16-byte load of 8 f16 feeds both halves of 256-bit operations
 * (extend_low/high: vpmovsxwd ymm), the weight is one load-splat, and each accumulator pair seeds a
 * tree (BN_SEED, bn_impl.h). */
#define BN_V_CONV(e) wasm_v128_and(wasm_i32x4_shl((e), 13), mask)
#define BN_V_STEP(j)                                                                                    \
  const v128_t r##j = wasm_v128_load(vp + 8 * (j));                                                    \
  const v128_t l##j = BN_V_CONV(wasm_i32x4_extend_low_i16x8(r##j)), h##j = BN_V_CONV(wasm_i32x4_extend_high_i16x8(r##j))
#define BN_V_ACC(acc, j, x)                                                                            \
  acc[2 * (j)] = wasm_f32x4_add(acc[2 * (j)], wasm_f32x4_mul(l##j, (x)));                             \
  acc[2 * (j) + 1] = wasm_f32x4_add(acc[2 * (j) + 1], wasm_f32x4_mul(h##j, (x)))

static void bn_values32_2h(const float *w0, const float *w1, const uint16_t *v, uint32_t hd, uint32_t n, float *o0,
                           float *o1) {
  const v128_t mask = wasm_i32x4_splat(bn_f16k_bits[0]);
  v128_t a[8], b[8];
  for (int i = 0; i < 8; i++) a[i] = b[i] = wasm_f32x4_splat(0);
  uint32_t p = 0;
  do { /* n >= 1: a do-while keeps clang from copying the body for a zero-trip case */
    const uint16_t *vp = v + (size_t)p * hd;
    const v128_t x0 = wasm_v128_load32_splat(w0 + p), x1 = wasm_v128_load32_splat(w1 + p);
    BN_V_STEP(0);
    BN_V_STEP(1);
    BN_V_STEP(2);
    BN_V_STEP(3);
    BN_V_ACC(a, 0, x0);
    BN_V_ACC(a, 1, x0);
    BN_V_ACC(a, 2, x0);
    BN_V_ACC(a, 3, x0);
    BN_V_ACC(b, 0, x1);
    BN_V_ACC(b, 1, x1);
    BN_V_ACC(b, 2, x1);
    BN_V_ACC(b, 3, x1);
  } while (++p < n);
  volatile v128_t sink;
  v128_t seed = wasm_i32x4_splat(0);
  for (int j = 0; j < 4; j++)
    seed = wasm_v128_xor(seed, wasm_v128_xor(BN_SEED(a[2 * j], a[2 * j + 1]), BN_SEED(b[2 * j], b[2 * j + 1])));
  sink = seed;
  (void)sink;
  for (int i = 0; i < 8; i++) {
    wasm_v128_store(o0 + 4 * i, a[i]);
    wasm_v128_store(o1 + 4 * i, b[i]);
  }
}

static void bn_values32_1h(const float *w0, const uint16_t *v, uint32_t hd, uint32_t n, float *o0) {
  const v128_t mask = wasm_i32x4_splat(bn_f16k_bits[0]);
  v128_t a[8];
  for (int i = 0; i < 8; i++) a[i] = wasm_f32x4_splat(0);
  uint32_t p = 0;
  do {
    const uint16_t *vp = v + (size_t)p * hd;
    const v128_t x0 = wasm_v128_load32_splat(w0 + p);
    BN_V_STEP(0);
    BN_V_STEP(1);
    BN_V_STEP(2);
    BN_V_STEP(3);
    BN_V_ACC(a, 0, x0);
    BN_V_ACC(a, 1, x0);
    BN_V_ACC(a, 2, x0);
    BN_V_ACC(a, 3, x0);
  } while (++p < n);
  volatile v128_t sink;
  sink = wasm_v128_xor(wasm_v128_xor(BN_SEED(a[0], a[1]), BN_SEED(a[2], a[3])),
                       wasm_v128_xor(BN_SEED(a[4], a[5]), BN_SEED(a[6], a[7])));
  (void)sink;
  for (int i = 0; i < 8; i++) wasm_v128_store(o0 + 4 * i, a[i]);
}

static void bn_values_f16s_simd(const float *w0, const float *w1, const uint16_t *v, uint32_t hd, uint32_t n,
                                float *o0, float *o1) {
  uint32_t c = 0;
  for (; c + 32 <= hd; c += 32) {
    if (w1) bn_values32_2h(w0, w1, v + c, hd, n, o0 + c, o1 + c);
    else bn_values32_1h(w0, v + c, hd, n, o0 + c);
  }
  if (c < hd) { /* a last 16 elements (head_dim is a multiple of 16) */
    for (uint32_t i = c; i < hd; i++) {
      o0[i] = 0.0f;
      if (w1) o1[i] = 0.0f;
    }
    for (uint32_t p = 0; p < n; p++) {
      bn_axpy_f16s_simd(o0 + c, w0[p], v + (size_t)p * hd + c, hd - c);
      if (w1) bn_axpy_f16s_simd(o1 + c, w1[p], v + (size_t)p * hd + c, hd - c);
    }
  }
}

const bn_ops bn_ops_simd = {
  .dot_f32 = bn_dot_f32_simd,
  .dot_f32_f16 = bn_dot_f32_f16_simd,
  .dot_f32_f16s = bn_dot_f32_f16s_simd,
  .dot_q8_0_row = bn_dot_q8_0_row_simd,
  .quantize_i8 = bn_quantize_i8_simd,
  .rmsnorm = bn_rmsnorm_simd,
  .axpy_f16s = bn_axpy_f16s_simd,
  .exp_sub = bn_exp_sub_simd,
  .sum = bn_sum_simd,
  .head_q7 = bn_head_q7_simd,
  .head_f16p = bn_head_f16p_simd,
  .scores_f16s = bn_scores_f16s_simd,
  .values_f16s = bn_values_f16s_simd,
};

const bn_ops *bn_ops_select(uint32_t kernel) { return kernel == BN_KERNEL_REF ? &bn_ops_ref : &bn_ops_simd; }

int32_t bn_scale_2p112(const float *x, uint32_t n, float *xs) {
  for (uint32_t i = 0; i < n; i++)
    if (!(__builtin_fabsf(x[i]) < 65536.0f)) return 0; /* also nan */
  const float k = bn_2p112();
  for (uint32_t i = 0; i < n; i++) xs[i] = x[i] * k;
  return 1;
}

float bn_dot_f32_f16_probe(uint32_t kernel, const float *a, const uint16_t *b, uint32_t n, int32_t prescaled) {
  const bn_ops *ops = bn_ops_select(kernel);
  return prescaled ? ops->dot_f32_f16s(a, b, n) : ops->dot_f32_f16(a, b, n);
}
