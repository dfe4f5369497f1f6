/*
 * matmul_i2.c: integer dot products of an I2_S ternary matrix with int8 activation rows.
 *
 * Layout (bitnet.cpp I2_S): row m of a [rows][cols] matrix starts at byte m*cols/4; each block of
 * 128 elements is 32 bytes, element j of a block sits in byte j%32 at bits 6-2*(j/32) (MSB
 * first); code = trit + 1 in {0,1,2}. cols is a multiple of 128.
 *
 * Output: dots[t*ld + (m-m0)] = sum_j code[m][j] * q[t][j] for rows m0 <= m < m1 and every
 * activation row t. The caller subtracts the activation sum (sum_j q[t][j]) to get
 * sum_j trit*q exactly. Results are exact integers, identical for _ref, SIMD128 and relaxed.
 * No allocation, no I/O.
 */
#include "bn_impl.h"

void bn_dot_i2_i8_ref(const uint8_t *w, uint32_t cols, uint32_t m0, uint32_t m1, const bn_qrows *x,
                      int32_t *dots, uint32_t ld_dots) {
  const uint32_t row_bytes = cols / 4;
  for (uint32_t m = m0; m < m1; m++) {
    const uint8_t *wr = w + (size_t)m * row_bytes;
    for (uint32_t t = 0; t < x->n; t++) {
      const int8_t *q = x->q + (size_t)t * x->ld;
      int32_t acc = 0;
      for (uint32_t j = 0; j < cols; j++) {
        const uint32_t blk = j >> 7, e = j & 127;
        const int32_t code = (wr[blk * 32 + (e & 31)] >> (6 - 2 * (e >> 5))) & 3;
        acc += code * q[j];
      }
      dots[(size_t)t * ld_dots + (m - m0)] = acc;
    }
  }
}

#define BN_MASK3 wasm_i8x16_splat(3)
#define BN_CODES(v, sh) wasm_v128_and(wasm_u8x16_shr((v), (sh)), BN_MASK3)

static inline int32_t bn_hsum_i32(v128_t v) {
  return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
         wasm_i32x4_extract_lane(v, 3);
}

#if BN_RELAXED
/* acc += dot4(q, codes): codes in {0,1,2} are valid i7 operands, so the result is exact. */
#define BN_DOT(acc, q, c) (acc) = wasm_i32x4_relaxed_dot_i8x16_i7x16_add((q), (c), (acc))

/* one row against one activation row: 8 relaxed dots per 128-element block */
static inline int32_t bn_row_dot(const uint8_t *wr, const int8_t *q, uint32_t blocks) {
  v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (uint32_t b = 0; b < blocks; b++) {
    const v128_t v0 = wasm_v128_load(wr + 32 * b), v1 = wasm_v128_load(wr + 32 * b + 16);
    const int8_t *qb = q + 128 * b;
    BN_DOT(a0, wasm_v128_load(qb + 0), BN_CODES(v0, 6));
    BN_DOT(a1, wasm_v128_load(qb + 16), BN_CODES(v1, 6));
    BN_DOT(a2, wasm_v128_load(qb + 32), BN_CODES(v0, 4));
    BN_DOT(a3, wasm_v128_load(qb + 48), BN_CODES(v1, 4));
    BN_DOT(a0, wasm_v128_load(qb + 64), BN_CODES(v0, 2));
    BN_DOT(a1, wasm_v128_load(qb + 80), BN_CODES(v1, 2));
    BN_DOT(a2, wasm_v128_load(qb + 96), wasm_v128_and(v0, BN_MASK3));
    BN_DOT(a3, wasm_v128_load(qb + 112), wasm_v128_and(v1, BN_MASK3));
  }
  return bn_hsum_i32(wasm_i32x4_add(wasm_i32x4_add(a0, a1), wasm_i32x4_add(a2, a3)));
}
#else
/* plain SIMD128: code*q as i16 products, summed in i16 within a block (|sum| <= 8*2*128), widened per block */
#define BN_MAC16(lo, hi, q, c)                                       \
  do {                                                               \
    const v128_t qq = (q), cc = (c);                                 \
    (lo) = wasm_i16x8_add((lo), wasm_i16x8_extmul_low_i8x16(qq, cc)); \
    (hi) = wasm_i16x8_add((hi), wasm_i16x8_extmul_high_i8x16(qq, cc)); \
  } while (0)

static inline int32_t bn_row_dot(const uint8_t *wr, const int8_t *q, uint32_t blocks) {
  v128_t acc = wasm_i32x4_splat(0);
  for (uint32_t b = 0; b < blocks; b++) {
    const v128_t v0 = wasm_v128_load(wr + 32 * b), v1 = wasm_v128_load(wr + 32 * b + 16);
    const int8_t *qb = q + 128 * b;
    v128_t lo = wasm_i16x8_splat(0), hi = lo;
    BN_MAC16(lo, hi, wasm_v128_load(qb + 0), BN_CODES(v0, 6));
    BN_MAC16(lo, hi, wasm_v128_load(qb + 16), BN_CODES(v1, 6));
    BN_MAC16(lo, hi, wasm_v128_load(qb + 32), BN_CODES(v0, 4));
    BN_MAC16(lo, hi, wasm_v128_load(qb + 48), BN_CODES(v1, 4));
    BN_MAC16(lo, hi, wasm_v128_load(qb + 64), BN_CODES(v0, 2));
    BN_MAC16(lo, hi, wasm_v128_load(qb + 80), BN_CODES(v1, 2));
    BN_MAC16(lo, hi, wasm_v128_load(qb + 96), wasm_v128_and(v0, BN_MASK3));
    BN_MAC16(lo, hi, wasm_v128_load(qb + 112), wasm_v128_and(v1, BN_MASK3));
    acc = wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(lo));
    acc = wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(hi));
  }
  return bn_hsum_i32(acc);
}
#endif

void bn_dot_i2_i8_simd(const uint8_t *w, uint32_t cols, uint32_t m0, uint32_t m1, const bn_qrows *x,
                       int32_t *dots, uint32_t ld_dots) {
  const uint32_t row_bytes = cols / 4, blocks = cols / 128;
  for (uint32_t m = m0; m < m1; m++) {
    const uint8_t *wr = w + (size_t)m * row_bytes;
    for (uint32_t t = 0; t < x->n; t++)
      dots[(size_t)t * ld_dots + (m - m0)] = bn_row_dot(wr, x->q + (size_t)t * x->ld, blocks);
  }
}
