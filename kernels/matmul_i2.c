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

/* codes of one 2-bit field of 16 bytes: 16-bit shifts are native on every target (8-bit ones are
 * emulated), and the mask drops the bits a 16-bit lane shifts in from its neighbouring byte */
#define BN_MASK3 wasm_i8x16_splat(3)
#define BN_CODES(v, sh) wasm_v128_and(wasm_u16x8_shr((v), (sh)), BN_MASK3)

#if BN_RELAXED
/* 8 pairwise sums of q*code as i16 (one pmaddubsw on x86): codes in {0,1,2} are valid i7
 * operands and |sum| <= 2*2*128, so the result is exact */
#define BN_DOT16(q, c) wasm_i16x8_relaxed_dot_i8x16_i7x16((q), (c))
#else
/* plain SIMD128: the same 8 lane sums from widening multiplies (a different pairing, the same total) */
#define BN_DOT16(q, c) wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16((q), (c)), wasm_i16x8_extmul_high_i8x16((q), (c)))
#endif

static inline int32_t bn_hsum_i32(v128_t v) {
  return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
         wasm_i32x4_extract_lane(v, 3);
}

/* the 8 code vectors of one 128-element block (elements 0-15, 16-31, ..., 112-127) */
#define BN_UNPACK(c, wb)                                                   \
  do {                                                                     \
    const v128_t v0_ = wasm_v128_load(wb), v1_ = wasm_v128_load((wb) + 16); \
    c[0] = BN_CODES(v0_, 6);                                               \
    c[1] = BN_CODES(v1_, 6);                                               \
    c[2] = BN_CODES(v0_, 4);                                               \
    c[3] = BN_CODES(v1_, 4);                                               \
    c[4] = BN_CODES(v0_, 2);                                               \
    c[5] = BN_CODES(v1_, 2);                                               \
    c[6] = wasm_v128_and(v0_, BN_MASK3);                                   \
    c[7] = wasm_v128_and(v1_, BN_MASK3);                                   \
  } while (0)

/* i16 sum over one block of q . codes: 8 dots of <= 512 per lane, so <= 4096: exact */
static inline v128_t bn_block_dot(const v128_t c[8], const int8_t *q) {
  v128_t s0 = BN_DOT16(wasm_v128_load(q), c[0]);
  v128_t s1 = BN_DOT16(wasm_v128_load(q + 16), c[1]);
  s0 = wasm_i16x8_add(s0, BN_DOT16(wasm_v128_load(q + 32), c[2]));
  s1 = wasm_i16x8_add(s1, BN_DOT16(wasm_v128_load(q + 48), c[3]));
  s0 = wasm_i16x8_add(s0, BN_DOT16(wasm_v128_load(q + 64), c[4]));
  s1 = wasm_i16x8_add(s1, BN_DOT16(wasm_v128_load(q + 80), c[5]));
  s0 = wasm_i16x8_add(s0, BN_DOT16(wasm_v128_load(q + 96), c[6]));
  s1 = wasm_i16x8_add(s1, BN_DOT16(wasm_v128_load(q + 112), c[7]));
  return wasm_i16x8_add(s0, s1);
}

/* decode: one activation row, one weight row at a time. Interleaving several rows to share the
 * activation loads was twice as slow once the weights came from DRAM instead of cache (the
 * hardware prefetcher follows one sequential stream far better than four interleaved ones).
 *
 * A block's dot is within +-4096 per i16 lane (8 pair sums of <= 2*2*128), so 8 blocks sum in i16
 * (within [-32768, 32512]) before one widening add: 8% faster decode than widening every block (2B4T, 1 thread, measured).
 * (Masking the low fields in place, as code*4^k, and shifting the scaled sums back saves two
 * instructions a block but ran 7% slower.) */
static inline v128_t bn_matvec_block(const uint8_t *wb, const int8_t *qb, v128_t m3) {
  v128_t c[8];
  const v128_t v0 = wasm_v128_load(wb), v1 = wasm_v128_load(wb + 16);
  c[0] = wasm_v128_and(wasm_u16x8_shr(v0, 6), m3);
  c[1] = wasm_v128_and(wasm_u16x8_shr(v1, 6), m3);
  c[2] = wasm_v128_and(wasm_u16x8_shr(v0, 4), m3);
  c[3] = wasm_v128_and(wasm_u16x8_shr(v1, 4), m3);
  c[4] = wasm_v128_and(wasm_u16x8_shr(v0, 2), m3);
  c[5] = wasm_v128_and(wasm_u16x8_shr(v1, 2), m3);
  c[6] = wasm_v128_and(v0, m3);
  c[7] = wasm_v128_and(v1, m3);
  return bn_block_dot(c, qb);
}

static int32_t bn_matvec_row(const uint8_t *w, uint32_t blocks, const int8_t *q, v128_t m3) {
  v128_t a = wasm_i32x4_splat(0);
  uint32_t b = 0;
  for (; b + 8 <= blocks; b += 8) {
    v128_t h = bn_matvec_block(w + 32 * b, q + 128 * b, m3);
    for (uint32_t k = 1; k < 8; k++) h = wasm_i16x8_add(h, bn_matvec_block(w + 32 * (b + k), q + 128 * (b + k), m3));
    a = wasm_i32x4_add(a, wasm_i32x4_extadd_pairwise_i16x8(h));
  }
  for (; b < blocks; b++) a = wasm_i32x4_add(a, wasm_i32x4_extadd_pairwise_i16x8(bn_matvec_block(w + 32 * b, q + 128 * b, m3)));
  return bn_hsum_i32(a);
}

/* several activation rows: each block of a weight row is unpacked once and used for 4 tokens */
#define BN_TOK 8
static void bn_matmul_row_tokens(const uint8_t *w, uint32_t blocks, const int8_t *q, uint32_t ldq, uint32_t nt,
                                 int32_t *out, uint32_t ld_out) {
  v128_t acc[BN_TOK];
  for (uint32_t t = 0; t < nt; t++) acc[t] = wasm_i32x4_splat(0);
  for (uint32_t b = 0; b < blocks; b++) {
    v128_t c[8];
    BN_UNPACK(c, w + 32 * b);
    for (uint32_t t = 0; t < nt; t++)
      acc[t] = wasm_i32x4_add(acc[t], wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, q + (size_t)t * ldq + 128 * b)));
  }
  for (uint32_t t = 0; t < nt; t++) out[(size_t)t * ld_out] = bn_hsum_i32(acc[t]);
}

/* the 4-token case with its accumulators in registers */
static void bn_matmul_row_4tokens(const uint8_t *w, uint32_t blocks, const int8_t *q, uint32_t ldq, int32_t *out,
                                  uint32_t ld_out) {
  v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (uint32_t b = 0; b < blocks; b++) {
    v128_t c[8];
    BN_UNPACK(c, w + 32 * b);
    const int8_t *qb = q + 128 * b;
    a0 = wasm_i32x4_add(a0, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb)));
    a1 = wasm_i32x4_add(a1, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + ldq)));
    a2 = wasm_i32x4_add(a2, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + 2 * (size_t)ldq)));
    a3 = wasm_i32x4_add(a3, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + 3 * (size_t)ldq)));
  }
  out[0] = bn_hsum_i32(a0);
  out[ld_out] = bn_hsum_i32(a1);
  out[2 * (size_t)ld_out] = bn_hsum_i32(a2);
  out[3 * (size_t)ld_out] = bn_hsum_i32(a3);
}

static void bn_matmul_row_8tokens(const uint8_t *w, uint32_t blocks, const int8_t *q, uint32_t ldq, int32_t *out,
                                  uint32_t ld_out) {
  v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (uint32_t b = 0; b < blocks; b++) {
    v128_t c[8];
    BN_UNPACK(c, w + 32 * b);
    const int8_t *qb = q + 128 * b;
    a0 = wasm_i32x4_add(a0, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb)));
    a1 = wasm_i32x4_add(a1, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + ldq)));
    a2 = wasm_i32x4_add(a2, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + 2 * (size_t)ldq)));
    a3 = wasm_i32x4_add(a3, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + 3 * (size_t)ldq)));
    a4 = wasm_i32x4_add(a4, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + 4 * (size_t)ldq)));
    a5 = wasm_i32x4_add(a5, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + 5 * (size_t)ldq)));
    a6 = wasm_i32x4_add(a6, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + 6 * (size_t)ldq)));
    a7 = wasm_i32x4_add(a7, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, qb + 7 * (size_t)ldq)));
  }
  const v128_t r[8] = { a0, a1, a2, a3, a4, a5, a6, a7 };
  for (int t = 0; t < 8; t++) out[(size_t)t * ld_out] = bn_hsum_i32(r[t]);
}

void bn_dot_i2_i8_simd(const uint8_t *w, uint32_t cols, uint32_t m0, uint32_t m1, const bn_qrows *x,
                       int32_t *dots, uint32_t ld_dots) {
  const uint32_t row_bytes = cols / 4, blocks = cols / 128;
  if (x->n == 1) {
    /* a mask built from a run-time value: V8 keeps it in a register, while a v128 constant is
     * rebuilt at every use inside the loop (12% slower measured) */
    const v128_t m3 = wasm_i8x16_splat((int8_t)x->mask3);
    for (uint32_t m = m0; m < m1; m++) dots[m - m0] = bn_matvec_row(w + (size_t)m * row_bytes, blocks, x->q, m3);
    return;
  }
  /* token tiles outer: a tile's activations stay in L1 across the caller's few rows */
  for (uint32_t t0 = 0; t0 < x->n; t0 += BN_TOK) {
    const uint32_t nt = BN_MIN(BN_TOK, x->n - t0);
    for (uint32_t m = m0; m < m1; m++) {
      if (nt == 8) {
        bn_matmul_row_8tokens(w + (size_t)m * row_bytes, blocks, x->q + (size_t)t0 * x->ld, x->ld,
                              dots + (size_t)t0 * ld_dots + (m - m0), ld_dots);
        continue;
      }
      if (nt == 4) {
        bn_matmul_row_4tokens(w + (size_t)m * row_bytes, blocks, x->q + (size_t)t0 * x->ld, x->ld,
                              dots + (size_t)t0 * ld_dots + (m - m0), ld_dots);
        continue;
      }
      bn_matmul_row_tokens(w + (size_t)m * row_bytes, blocks, x->q + (size_t)t0 * x->ld, x->ld, nt,
                           dots + (size_t)t0 * ld_dots + (m - m0), ld_dots);
    }
  }
}
