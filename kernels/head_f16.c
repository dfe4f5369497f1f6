/*
 * head_f16.c: the exact F16 LM head in the F16P layout (bn_impl.h, bn_f16p_index): rows in fours,
 * each group scaled by 2^shift so that no value is subnormal; made at load by bn_f16p_place.
 *
 * logits[v] = dot_f32_f16(x, row v) bit for bit: 16 partial sums s[i % 16] folded 8-4-2-1 (the
 * canonical order, bn_fold16). The products are x*w's own: the kernels multiply x * 2^(112 - shift)
 * (from state.hxs) by the f32 whose bits are the stored f16's << 13, which is w * 2^(shift - 112)
 * exactly, so each product is the same real number as x*w and rounds the same.
 *
 * Written for V8's revectorizer (reference/wasm-256bit.md): per 4 columns of a group one 16-byte
 * load holds two rows (four f16 each); extend_low/high of it, the shift, the mask, the multiply by
 * one activation load and the add pair up into 256-bit operations (vpmovsxwd, vpslld, vpand,
 * vmulps, vaddps on ymm), the activation load paired with itself (vinserti128); each accumulator
 * pair seeds the tree (BN_SEED, bn_impl.h). No allocation, no I/O.
 */
#include "bn_impl.h"

/* ================================ placement (load time) ================================ */

/* h * 2^k for a finite f16 h whose exponent field plus k stays below 31 (exact) */
static uint16_t bn_f16_scale2(uint16_t h, uint32_t k) {
  const uint32_t sign = h & 0x8000u, em = h & 0x7fffu;
  if (em >= 0x0400u) return (uint16_t)(sign | (em + (k << 10)));
  if (em == 0 || k == 0) return h;
  const uint32_t b = 31 - (uint32_t)__builtin_clz(em); /* subnormal em * 2^-24: top bit b */
  if (b + k < 10) return (uint16_t)(sign | (em << k)); /* still subnormal */
  return (uint16_t)(sign | ((b + k - 9) << 10) | ((em << (10 - b)) & 0x3ffu));
}

static uint32_t bn_f16_max_em(const uint16_t *row, uint32_t dim) {
  v128_t m = wasm_i16x8_splat(0);
  const v128_t lo15 = wasm_i16x8_splat(0x7fff);
  for (uint32_t i = 0; i < dim; i += 8) m = wasm_u16x8_max(m, wasm_v128_and(wasm_v128_load(row + i), lo15));
  m = wasm_u16x8_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
  m = wasm_u16x8_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
  m = wasm_u16x8_max(m, wasm_u32x4_shr(m, 16));
  return wasm_u16x8_extract_lane(m, 0);
}

int32_t bn_f16p_place(const uint16_t *src, uint16_t *dst, uint32_t row0, uint32_t rows, uint32_t dim, uint32_t nv) {
  if ((row0 & 3) || ((rows & 3) && row0 + rows != nv) || row0 + rows > nv || dim % 16) return BN_STATUS_BAD_ARG;
  uint8_t *shifts = (uint8_t *)(dst + (size_t)nv * dim);
  const uint32_t limit = (31u - BN_F16P_SHIFT) << 10; /* em below this: the scaled exponent fits */
  for (uint32_t r = 0; r < rows; r += 4) {
    const uint32_t v = row0 + r, n = BN_MIN(4, rows - r);
    const uint16_t *a = src + (size_t)r * dim;
    uint32_t em = 0;
    for (uint32_t i = 0; i < n; i++) em = BN_MAX(em, bn_f16_max_em(a + (size_t)i * dim, dim));
    const uint32_t k = em < limit ? BN_F16P_SHIFT : 0;
    for (uint32_t i = 0; i < n; i++)
      for (uint32_t c = 0; c < dim; c++) dst[bn_f16p_index(nv, dim, v + i, c)] = bn_f16_scale2(a[(size_t)i * dim + c], k);
    shifts[v >> 2] = (uint8_t)k;
  }
  return BN_STATUS_OK;
}

/* ================================ _ref ================================ */

/* the stored f16 of (v, c) as the exact f32 w (the pair's 2^shift undone) */
static inline float bn_f16p_value(const uint16_t *w, const uint8_t *shifts, uint32_t nv, uint32_t dim, uint32_t v,
                                  uint32_t c) {
  const float scaled = bn_f16_to_f32(w[bn_f16p_index(nv, dim, v, c)]);
  return shifts[v >> 2] ? scaled * bn_bits_f32((uint32_t)(127 - BN_F16P_SHIFT) << 23) : scaled;
}

void bn_head_f16p_ref(const uint16_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *x, const float *xs,
                      float *logits, uint32_t nv) {
  (void)xs;
  const uint8_t *shifts = bn_f16p_shifts(w, nv, dim);
  for (uint32_t v = v0; v < v1; v++) {
    float s[16] = { 0 };
    for (uint32_t c = 0; c < dim; c++) s[c & 15] = s[c & 15] + x[c] * bn_f16p_value(w, shifts, nv, dim, v, c);
    logits[v] = bn_fold16(s);
  }
}

void bn_embed_f16p(const uint16_t *w, uint32_t nv, uint32_t dim, uint32_t v, float *out) {
  const uint8_t *shifts = bn_f16p_shifts(w, nv, dim);
  for (uint32_t c = 0; c < dim; c++) out[c] = bn_f16p_value(w, shifts, nv, dim, v, c);
}

/* output row j's activations for head_f16p (x * 2^102, x * 2^112) and whether they are exact */
void bn_f16p_prepare(const float *x, uint32_t dim, float *hxs) {
  float *ok = hxs + 2 * (size_t)dim;
  *ok = 0.0f;
  for (uint32_t i = 0; i < dim; i++)
    if (!(__builtin_fabsf(x[i]) < 65536.0f)) return; /* also nan */
  const float k102 = bn_bits_f32((uint32_t)(127 + 112 - BN_F16P_SHIFT) << 23), k112 = bn_2p112();
  for (uint32_t i = 0; i < dim; i++) {
    hxs[i] = x[i] * k102;
    hxs[dim + i] = x[i] * k112;
  }
  *ok = 1.0f;
}

/* ================================ SIMD ================================ */

/* the f32 w * 2^(shift-112) of four f16 (sign-extended into i32 lanes): sign to bit 31, exponent
 * and mantissa to bits 27-13, the three sign copies in bits 30-28 cleared */
#define BN_F16P_CONV(e) wasm_v128_and(wasm_i32x4_shl((e), 13), mask)

/* columns 16k + 4j.. of the group at g: rows 0 and 1 into (A, B), rows 2 and 3 into (C, D) */
#define BN_F16P_STEP(j, A, B, C, D)                                                              \
  do {                                                                                           \
    const v128_t w_ = wasm_v128_load(g + 64 * k + 16 * (j));                                    \
    const v128_t u_ = wasm_v128_load(g + 64 * k + 16 * (j) + 8);                                \
    A = wasm_f32x4_add(A, wasm_f32x4_mul(BN_F16P_CONV(wasm_i32x4_extend_low_i16x8(w_)), x##j));  \
    B = wasm_f32x4_add(B, wasm_f32x4_mul(BN_F16P_CONV(wasm_i32x4_extend_high_i16x8(w_)), x##j)); \
    C = wasm_f32x4_add(C, wasm_f32x4_mul(BN_F16P_CONV(wasm_i32x4_extend_low_i16x8(u_)), x##j));  \
    D = wasm_f32x4_add(D, wasm_f32x4_mul(BN_F16P_CONV(wasm_i32x4_extend_high_i16x8(u_)), x##j)); \
  } while (0)

/* the four rows of the group at g against xs: out[0..3] */
static void bn_f16p_group(const uint16_t *g, const float *xs, uint32_t dim, float *out) {
  const v128_t mask = wasm_i32x4_splat(bn_f16k_bits[0]);
  v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  v128_t c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
  uint32_t k = 0;
  do { /* dim >= 128: a do-while keeps clang from copying the body for a zero-trip case */
    const v128_t x0 = wasm_v128_load(xs + 16 * k), x1 = wasm_v128_load(xs + 16 * k + 4);
    const v128_t x2 = wasm_v128_load(xs + 16 * k + 8), x3 = wasm_v128_load(xs + 16 * k + 12);
    BN_F16P_STEP(0, a0, b0, c0, d0);
    BN_F16P_STEP(1, a1, b1, c1, d1);
    BN_F16P_STEP(2, a2, b2, c2, d2);
    BN_F16P_STEP(3, a3, b3, c3, d3);
  } while (++k < dim / 16);
  volatile v128_t sink;
  sink = wasm_v128_xor(wasm_v128_xor(wasm_v128_xor(BN_SEED(a0, b0), BN_SEED(a1, b1)),
                                     wasm_v128_xor(BN_SEED(a2, b2), BN_SEED(a3, b3))),
                       wasm_v128_xor(wasm_v128_xor(BN_SEED(c0, d0), BN_SEED(c1, d1)),
                                     wasm_v128_xor(BN_SEED(c2, d2), BN_SEED(c3, d3))));
  (void)sink;
  out[0] = bn_fold16_v(a0, a1, a2, a3);
  out[1] = bn_fold16_v(b0, b1, b2, b3);
  out[2] = bn_fold16_v(c0, c1, c2, c3);
  out[3] = bn_fold16_v(d0, d1, d2, d3);
}

void bn_head_f16p_simd(const uint16_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *x, const float *xs,
                       float *logits, uint32_t nv) {
  if (!xs) {
    bn_head_f16p_ref(w, dim, v0, v1, x, xs, logits, nv);
    return;
  }
  const uint8_t *shifts = bn_f16p_shifts(w, nv, dim);
  const uint32_t nv4 = nv & ~3u;
  for (uint32_t v = v0; v < v1;) {
    if ((v & 3) == 0 && v + 4 <= BN_MIN(v1, nv4)) {
      /* a group's activation: x * 2^(112 - shift) */
      bn_f16p_group(w + (size_t)v * dim, shifts[v >> 2] ? xs : xs + dim, dim, logits + v);
      v += 4;
      continue;
    }
    /* a group cut by the range, or the rows past the last group: the scalar path */
    const uint32_t e = BN_MIN(v1, v < nv4 ? (v | 3) + 1 : v1);
    bn_head_f16p_ref(w, dim, v, e, x, xs, logits, nv);
    v = e;
  }
}
