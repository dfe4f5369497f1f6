/*
 * matmul_i2.c: integer dot products of an I2_S ternary matrix with int8 activation rows.
 *
 * Layout: bitnet.cpp's I2_S blocks (128 elements in 32 bytes, element j of a block in byte j%32 at
 * bits 6-2*(j/32), MSB first; code = trit + 1 in {0,1,2}; cols a multiple of 128), with the rows
 * regrouped in fours at load (bn_i2_row in bn_impl.h: block k of row 4g+r at group g's (4k+r)*32).
 *
 * Output: dots[t*ld + (m-m0)] = sum_j code[m][j] * q[t][j] for rows m0 <= m < m1 and every
 * activation row t. The caller subtracts the activation sum (sum_j q[t][j]) to get
 * sum_j trit*q exactly. Results are exact integers, identical for _ref, SIMD128 and relaxed.
 * These are the 128-bit kernels (V8's revectorizer fuses none of them, so their machine code is the
 * same with --experimental-wasm-revectorize on or off); matmul_i2_r16.c has the fused layout, and
 * bn_dot_i2_select picks a (kernel, layout) pair once. No allocation, no I/O.
 */
#include "bn_impl.h"

void bn_dot_i2_i8_ref(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0, uint32_t m1, const bn_qrows *x,
                      int32_t *dots, uint32_t ld_dots) {
  for (uint32_t m = m0; m < m1; m++) {
    uint32_t stride;
    const uint8_t *wr = bn_i2_row(w, rows, cols, m, &stride);
    for (uint32_t t = 0; t < x->n; t++) {
      const int8_t *q = x->q + (size_t)t * x->ld;
      int32_t acc = 0;
      for (uint32_t j = 0; j < cols; j++) {
        const uint32_t blk = j >> 7, e = j & 127;
        const int32_t code = (wr[blk * stride + (e & 31)] >> (6 - 2 * (e >> 5))) & 3;
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

/* 16-byte loads at `base | off`: the caller clears base's low bits (a no-op on the addresses the
 * memory plan guarantees, checked once per call in bn_dot_i2_i8_simd), so the `or` is an add of
 * disjoint bits that clang folds into the load's offset field: V8 then needs no address add per
 * load (5% faster 8-token matmul, 2B4T shapes, measured) */
#define BN_LD(base, off) wasm_v128_load((const void *)((base) | (uintptr_t)(off)))
#define BN_AL(p, a) ((uintptr_t)(p) & ~(uintptr_t)((a) - 1))

/* the 8 code vectors of one 128-element block (elements 0-15, 16-31, ..., 112-127); wb 32-aligned */
#define BN_UNPACK(c, wb)                                                 \
  do {                                                                   \
    const v128_t v0_ = BN_LD(wb, 0), v1_ = BN_LD(wb, 16);                \
    c[0] = BN_CODES(v0_, 6);                                             \
    c[1] = BN_CODES(v1_, 6);                                             \
    c[2] = BN_CODES(v0_, 4);                                             \
    c[3] = BN_CODES(v1_, 4);                                             \
    c[4] = BN_CODES(v0_, 2);                                             \
    c[5] = BN_CODES(v1_, 2);                                             \
    c[6] = wasm_v128_and(v0_, BN_MASK3);                                 \
    c[7] = wasm_v128_and(v1_, BN_MASK3);                                 \
  } while (0)

/* i16 sum over one block of q . codes (q 128-aligned): 8 dots of <= 2*2*127 per lane, so <= 4064 */
static inline v128_t bn_block_dot(const v128_t c[8], uintptr_t q) {
  v128_t s0 = BN_DOT16(BN_LD(q, 0), c[0]);
  v128_t s1 = BN_DOT16(BN_LD(q, 16), c[1]);
  s0 = wasm_i16x8_add(s0, BN_DOT16(BN_LD(q, 32), c[2]));
  s1 = wasm_i16x8_add(s1, BN_DOT16(BN_LD(q, 48), c[3]));
  s0 = wasm_i16x8_add(s0, BN_DOT16(BN_LD(q, 64), c[4]));
  s1 = wasm_i16x8_add(s1, BN_DOT16(BN_LD(q, 80), c[5]));
  s0 = wasm_i16x8_add(s0, BN_DOT16(BN_LD(q, 96), c[6]));
  s1 = wasm_i16x8_add(s1, BN_DOT16(BN_LD(q, 112), c[7]));
  return wasm_i16x8_add(s0, s1);
}

/* decode: one activation row. A group of four rows is one sequential run of memory (the hardware
 * prefetcher follows one stream far better than four: interleaving rows read from four places was
 * twice as slow from DRAM), and each activation vector is loaded once for the four rows.
 *
 * A block's dot is within +-4064 per i16 lane, so 8 blocks sum in i16 (within +-32512) before one
 * widening add: 8% faster decode than widening every block (2B4T, 1 thread, measured).
 * (Masking the low fields in place, as code*4^k, and shifting the scaled sums back saves two
 * instructions a block but ran 7% slower; so did the aligned BN_LD loads here, by 11%.) */
#define BN_MV4(off, sh)                                                                    \
  do {                                                                                     \
    const v128_t q_ = wasm_v128_load(qb + (off));                                         \
    h0 = wasm_i16x8_add(h0, BN_DOT16(q_, wasm_v128_and(wasm_u16x8_shr(va, (sh)), m3)));    \
    h1 = wasm_i16x8_add(h1, BN_DOT16(q_, wasm_v128_and(wasm_u16x8_shr(vb, (sh)), m3)));    \
    h2 = wasm_i16x8_add(h2, BN_DOT16(q_, wasm_v128_and(wasm_u16x8_shr(vc, (sh)), m3)));    \
    h3 = wasm_i16x8_add(h3, BN_DOT16(q_, wasm_v128_and(wasm_u16x8_shr(vd, (sh)), m3)));    \
  } while (0)

/* the four rows of one group (g: the group's first byte) into out[0..3] */
static void bn_matvec_4rows(const uint8_t *g, uint32_t blocks, const int8_t *q, v128_t m3, int32_t *out) {
  v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (uint32_t b0 = 0; b0 < blocks; b0 += 8) {
    const uint32_t b1 = BN_MIN(b0 + 8, blocks);
    v128_t h0 = wasm_i16x8_splat(0), h1 = h0, h2 = h0, h3 = h0;
    for (uint32_t k = b0; k < b1; k++) {
      const uint8_t *wb = g + 128 * k;
      const int8_t *qb = q + 128 * k;
      for (uint32_t half = 0; half < 2; half++, wb += 16, qb += 16) {
        /* bytes 16*half.. of the four rows' blocks: elements 16*half + {0, 32, 64, 96} + 0..15 */
        const v128_t va = wasm_v128_load(wb), vb = wasm_v128_load(wb + 32);
        const v128_t vc = wasm_v128_load(wb + 64), vd = wasm_v128_load(wb + 96);
        BN_MV4(0, 6);
        BN_MV4(32, 4);
        BN_MV4(64, 2);
        BN_MV4(96, 0);
      }
    }
    a0 = wasm_i32x4_add(a0, wasm_i32x4_extadd_pairwise_i16x8(h0));
    a1 = wasm_i32x4_add(a1, wasm_i32x4_extadd_pairwise_i16x8(h1));
    a2 = wasm_i32x4_add(a2, wasm_i32x4_extadd_pairwise_i16x8(h2));
    a3 = wasm_i32x4_add(a3, wasm_i32x4_extadd_pairwise_i16x8(h3));
  }
  out[0] = bn_hsum_i32(a0);
  out[1] = bn_hsum_i32(a1);
  out[2] = bn_hsum_i32(a2);
  out[3] = bn_hsum_i32(a3);
}

/* one row on its own (a group cut by the caller's range, or a row past the last group) */
static inline v128_t bn_matvec_block(const uint8_t *wb, const int8_t *qb, v128_t m3) {
  const v128_t v0 = wasm_v128_load(wb), v1 = wasm_v128_load(wb + 16);
  v128_t s0 = BN_DOT16(wasm_v128_load(qb), wasm_v128_and(wasm_u16x8_shr(v0, 6), m3));
  v128_t s1 = BN_DOT16(wasm_v128_load(qb + 16), wasm_v128_and(wasm_u16x8_shr(v1, 6), m3));
  s0 = wasm_i16x8_add(s0, BN_DOT16(wasm_v128_load(qb + 32), wasm_v128_and(wasm_u16x8_shr(v0, 4), m3)));
  s1 = wasm_i16x8_add(s1, BN_DOT16(wasm_v128_load(qb + 48), wasm_v128_and(wasm_u16x8_shr(v1, 4), m3)));
  s0 = wasm_i16x8_add(s0, BN_DOT16(wasm_v128_load(qb + 64), wasm_v128_and(wasm_u16x8_shr(v0, 2), m3)));
  s1 = wasm_i16x8_add(s1, BN_DOT16(wasm_v128_load(qb + 80), wasm_v128_and(wasm_u16x8_shr(v1, 2), m3)));
  s0 = wasm_i16x8_add(s0, BN_DOT16(wasm_v128_load(qb + 96), wasm_v128_and(v0, m3)));
  s1 = wasm_i16x8_add(s1, BN_DOT16(wasm_v128_load(qb + 112), wasm_v128_and(v1, m3)));
  return wasm_i16x8_add(s0, s1);
}

static int32_t bn_matvec_row(const uint8_t *w, uint32_t stride, uint32_t blocks, const int8_t *q, v128_t m3) {
  v128_t a = wasm_i32x4_splat(0);
  for (uint32_t b0 = 0; b0 < blocks; b0 += 8) {
    const uint32_t b1 = BN_MIN(b0 + 8, blocks);
    v128_t h = wasm_i16x8_splat(0);
    for (uint32_t b = b0; b < b1; b++) h = wasm_i16x8_add(h, bn_matvec_block(w + stride * b, q + 128 * b, m3));
    a = wasm_i32x4_add(a, wasm_i32x4_extadd_pairwise_i16x8(h));
  }
  return bn_hsum_i32(a);
}

/* rows [m0, m1) against one activation row: whole groups of four together, the rest one by one */
__attribute__((noinline)) static void bn_matvec_range(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0, uint32_t m1, const int8_t *q,
                            v128_t m3, int32_t *dots) {
  const uint32_t blocks = cols / 128, rows4 = rows & ~3u;
  for (uint32_t m = m0; m < m1;) {
    if ((m & 3) == 0 && m + 4 <= BN_MIN(m1, rows4)) {
      bn_matvec_4rows(w + (size_t)(m >> 2) * cols, blocks, q, m3, dots + (m - m0));
      m += 4;
      continue;
    }
    uint32_t stride;
    const uint8_t *wr = bn_i2_row(w, rows, cols, m, &stride);
    dots[m - m0] = bn_matvec_row(wr, stride, blocks, q, m3);
    m++;
  }
}

/* several activation rows: each block of a weight row is unpacked once and used for 4 or 8 tokens */
#define BN_TOK 8

/* the 4-token case with its accumulators in registers */
static void bn_matmul_row_4tokens(const uint8_t *w, uint32_t stride, uint32_t blocks, const int8_t *q, uint32_t ldq, int32_t *out,
                                  uint32_t ld_out) {
  v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (uint32_t b = 0; b < blocks; b++) {
    v128_t c[8];
    BN_UNPACK(c, BN_AL(w + stride * b, 32));
    const uintptr_t qb = (uintptr_t)q + 128 * b;
    a0 = wasm_i32x4_add(a0, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, BN_AL(qb, 128))));
    a1 = wasm_i32x4_add(a1, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, BN_AL(qb + ldq, 128))));
    a2 = wasm_i32x4_add(a2, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, BN_AL(qb + 2 * (size_t)ldq, 128))));
    a3 = wasm_i32x4_add(a3, wasm_i32x4_extadd_pairwise_i16x8(bn_block_dot(c, BN_AL(qb + 3 * (size_t)ldq, 128))));
  }
  out[0] = bn_hsum_i32(a0);
  out[ld_out] = bn_hsum_i32(a1);
  out[2 * (size_t)ld_out] = bn_hsum_i32(a2);
  out[3 * (size_t)ld_out] = bn_hsum_i32(a3);
}

/* 8 tokens: a token's block dots sum in i16 over 8 blocks (<= 8 * 4064 per lane) before one
 * widening add (2% faster than widening every block, measured) */
#define BN_TOK_DOT(h, t) h = wasm_i16x8_add(h, bn_block_dot(c, BN_AL(qb + (t) * (size_t)ldq, 128)))

static void bn_matmul_row_8tokens(const uint8_t *w, uint32_t stride, uint32_t blocks, const int8_t *q, uint32_t ldq, int32_t *out,
                                  uint32_t ld_out) {
  v128_t acc[8];
  for (int t = 0; t < 8; t++) acc[t] = wasm_i32x4_splat(0);
  for (uint32_t b0 = 0; b0 < blocks; b0 += 8) {
    const uint32_t b1 = BN_MIN(b0 + 8, blocks);
    v128_t h0 = wasm_i16x8_splat(0), h1 = h0, h2 = h0, h3 = h0, h4 = h0, h5 = h0, h6 = h0, h7 = h0;
    for (uint32_t b = b0; b < b1; b++) {
      v128_t c[8];
      BN_UNPACK(c, BN_AL(w + stride * b, 32));
      const uintptr_t qb = (uintptr_t)q + 128 * b;
      BN_TOK_DOT(h0, 0);
      BN_TOK_DOT(h1, 1);
      BN_TOK_DOT(h2, 2);
      BN_TOK_DOT(h3, 3);
      BN_TOK_DOT(h4, 4);
      BN_TOK_DOT(h5, 5);
      BN_TOK_DOT(h6, 6);
      BN_TOK_DOT(h7, 7);
    }
    const v128_t h[8] = { h0, h1, h2, h3, h4, h5, h6, h7 };
    for (int t = 0; t < 8; t++) acc[t] = wasm_i32x4_add(acc[t], wasm_i32x4_extadd_pairwise_i16x8(h[t]));
  }
  for (int t = 0; t < 8; t++) out[(size_t)t * ld_out] = bn_hsum_i32(acc[t]);
}

/* several activation rows in tiles of 8 tokens (a function of its own: V8 compiles each function
 * when first called, so a decode-only start-up probe does not pay for this one) */
__attribute__((noinline)) static void bn_matmul_tokens(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0,
                                                       uint32_t m1, const bn_qrows *x, v128_t m3, int32_t *dots,
                                                       uint32_t ld_dots) {
  const uint32_t blocks = cols / 128;
  /* token tiles outer: a tile's activations stay in L1 across the caller's few rows */
  for (uint32_t t0 = 0; t0 < x->n; t0 += BN_TOK) {
    const uint32_t nt = BN_MIN(BN_TOK, x->n - t0);
    const int8_t *q = x->q + (size_t)t0 * x->ld;
    if (nt != 8 && nt != 4) {
      /* 2, 3, 5, 6 or 7 tokens: the four-row decode kernel once per token (the rows stay in L1)
       * beats a generic n-token kernel: 53 against 36-45 G MAC/s per core, 16-row tiles, measured */
      for (uint32_t t = 0; t < nt; t++)
        bn_matvec_range(w, rows, cols, m0, m1, q + (size_t)t * x->ld, m3, dots + (size_t)(t0 + t) * ld_dots);
      continue;
    }
    for (uint32_t m = m0; m < m1; m++) {
      uint32_t stride;
      const uint8_t *wr = bn_i2_row(w, rows, cols, m, &stride);
      int32_t *out = dots + (size_t)t0 * ld_dots + (m - m0);
      if (nt == 8) bn_matmul_row_8tokens(wr, stride, blocks, q, x->ld, out, ld_dots);
      else bn_matmul_row_4tokens(wr, stride, blocks, q, x->ld, out, ld_dots);
    }
  }
}

void bn_dot_i2_i8_simd(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0, uint32_t m1, const bn_qrows *x,
                       int32_t *dots, uint32_t ld_dots) {
  /* the batched loads need 32-aligned weight blocks and 128-aligned activation blocks; the memory
   * plan gives both (tensors at 64, xq at 128, strides multiples of 32 and 128): anything else
   * takes the exact scalar path rather than reading the wrong bytes */
  if ((((uintptr_t)w & 31) | ((uintptr_t)x->q & 127) | (x->n > 1 ? (x->ld & 127) : 0)) != 0) {
    bn_dot_i2_i8_ref(w, rows, cols, m0, m1, x, dots, ld_dots);
    return;
  }
  /* a mask built from a run-time value: V8 keeps it in a register, while a v128 constant is
   * rebuilt at every use inside the loop (12% slower measured) */
  const v128_t m3 = wasm_i8x16_splat((int8_t)x->mask3);
  if (x->n == 1) {
    bn_matvec_range(w, rows, cols, m0, m1, x->q, m3, dots);
    return;
  }
  bn_matmul_tokens(w, rows, cols, m0, m1, x, m3, dots, ld_dots);
}

void bn_dot_i2_i8_r16_ref(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0, uint32_t m1, const bn_qrows *x,
                          int32_t *dots, uint32_t ld_dots);
void bn_dot_i2_i8_r16_simd(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0, uint32_t m1, const bn_qrows *x,
                           int32_t *dots, uint32_t ld_dots);

bn_dot_i2_fn bn_dot_i2_select(uint32_t kernel, uint32_t layout) {
  if (layout == BN_LAYOUT_R16) return kernel == BN_KERNEL_REF ? bn_dot_i2_i8_r16_ref : bn_dot_i2_i8_r16_simd;
  return kernel == BN_KERNEL_REF ? bn_dot_i2_i8_ref : bn_dot_i2_i8_simd;
}

int32_t bn_probe_i2(uint32_t kernel, uint32_t layout, const uint8_t *w, uint32_t rows, uint32_t cols, const int8_t *q,
                    uint32_t n, int32_t *dots, uint32_t reps) {
  if (cols % 128 || !n || layout > BN_LAYOUT_R16) return BN_STATUS_BAD_ARG;
  const bn_dot_i2_fn dot = bn_dot_i2_select(kernel, layout);
  const bn_qrows x = { q, 0, 0, cols, n, 3 };
  for (uint32_t r = 0; r < reps; r++)
    for (uint32_t m = 0; m < rows; m += 16) dot(w, rows, cols, m, BN_MIN(m + 16, rows), &x, dots + m, rows);
  return BN_STATUS_OK;
}
