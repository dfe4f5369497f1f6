/*
 * matmul_i2_r16.c: the ternary matmul on rows in sixteens, written so that V8's revectorizer
 * (--experimental-wasm-revectorize) fuses it into 256-bit AVX2 code.
 *
 * Layout (BN_LAYOUT_R16, made at load by bn_i2s_place; bn_i2_r16_at in bn_impl.h): rows 16g..16g+15
 * share 4*cols bytes at g*4*cols. Per 16 columns c (64 bytes, one cache line): four 16-byte quads;
 * byte i of quad k holds column 16c+i of rows 16g+4k+f at bits 2f..2f+1 (code = trit + 1). Rows
 * past the last group of 16 keep the file's I2_S layout, the f32 scale stays at rows*cols/4.
 *
 * How it fuses: with Deno's explicit bounds checks V8 pairs two SIMD128 operations into one
 * 256-bit operation only when both halves come from the same 16-byte load (reference/wasm-256bit.md).
 * Here one weight load feeds rows 4k and 4k+1 through the masks 0x03 and 0x0c (the second row
 * scaled by 4), a 16-bit shift by 4 brings rows 4k+2 and 4k+3 under the same masks, and one
 * activation load feeds both halves: relaxed i32x4 dot-add becomes `vpdpbusd ymm` (AVX-VNNI). The
 * masks and a zero are built from run-time values (bn_r16_bits) so that clang neither folds them
 * into constants that V8 would rebuild at every use nor drops the adds that seed V8's packing
 * (the fused accumulators are read through `acc + zero` after the loop); do-while loops keep clang
 * from peeling a zero-trip copy of the epilogue. tests/kernels/revec_test.ts proves with
 * --trace-wasm-revectorize that V8 fuses each hot kernel.
 *
 * Output: dots[t*ld + (m-m0)] = sum_j code[m][j] * q[t][j], exact integers, identical for _ref,
 * SIMD128 and relaxed, fused or not: a masked code is at most 2*4 = 8, a valid 7-bit operand, and
 * a row's four-lane sum is exact in i32 (|sum| <= 8 * 128 * cols). No allocation, no I/O.
 */
#include "bn_impl.h"

void bn_dot_i2_i8_r16_ref(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0, uint32_t m1,
                          const bn_qrows *x, int32_t *dots, uint32_t ld_dots) {
  for (uint32_t m = m0; m < m1; m++)
    for (uint32_t t = 0; t < x->n; t++) {
      const int8_t *q = x->q + (size_t)t * x->ld;
      int32_t acc = 0;
      for (uint32_t j = 0; j < cols; j++) {
        uint32_t shift;
        const uint8_t *b = bn_i2_r16_at(w, rows, cols, m, j, &shift);
        acc += (int32_t)((*b >> shift) & 3) * q[j];
      }
      dots[(size_t)t * ld_dots + (m - m0)] = acc;
    }
}

/* {0xff, 0}: read at run time, see the contract comment */
volatile const int32_t bn_r16_bits[2] = { 0xff, 0 };

typedef struct {
  v128_t lo, hi; /* bytes 0x03 (rows 4k, 4k+2) and 0x0c (rows 4k+1, 4k+3, scaled by 4) */
  v128_t zero;
} bn_r16k;

static inline bn_r16k bn_r16k_make(void) {
  const v128_t all = wasm_i8x16_splat((int8_t)bn_r16_bits[0]);
  const bn_r16k k = { wasm_v128_and(all, wasm_i8x16_splat(0x03)), wasm_v128_and(all, wasm_i8x16_splat(0x0c)),
                      wasm_i32x4_splat(bn_r16_bits[1]) };
  return k;
}

#if BN_RELAXED
/* a + the four-byte dot products of x (int8) and u (0..8) per i32 lane: `vpdpbusd` with AVX-VNNI */
#define BN_DOTADD(x, u, a) wasm_i32x4_relaxed_dot_i8x16_i7x16_add((x), (u), (a))
#else
/* plain SIMD128: the same sum per row, with i16 pairs (a different lane grouping, the same total) */
static inline v128_t BN_DOTADD(v128_t x, v128_t u, v128_t a) {
  a = wasm_i32x4_add(a, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(x), wasm_i16x8_extend_low_i8x16(u)));
  return wasm_i32x4_add(a, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(x), wasm_i16x8_extend_high_i8x16(u)));
}
#endif

/* one quad (w: its 16 bytes) against one activation vector x into the rows' accumulators */
#define BN_QUAD(x, w, r0, r1, r2, r3)                 \
  do {                                                \
    r0 = BN_DOTADD((x), wasm_v128_and((w), k.lo), r0); \
    r1 = BN_DOTADD((x), wasm_v128_and((w), k.hi), r1); \
    const v128_t s_ = wasm_u16x8_shr((w), 4);         \
    r2 = BN_DOTADD((x), wasm_v128_and(s_, k.lo), r2);  \
    r3 = BN_DOTADD((x), wasm_v128_and(s_, k.hi), r3);  \
  } while (0)

static inline int32_t bn_hsum4(v128_t v) {
  return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
         wasm_i32x4_extract_lane(v, 3);
}

/* rows a (mask lo) and b (mask hi, x4) of one pair out of their fused accumulators: the add of the
 * two seeds V8's packing; the difference of the sums is exactly 4x row b's dot */
static inline void bn_r16_pair_out(v128_t a, v128_t b, const bn_r16k *k, int32_t *out) {
  a = wasm_i32x4_add(a, k->zero);
  b = wasm_i32x4_add(b, k->zero);
  const int32_t da = bn_hsum4(a);
  out[0] = da;
  out[1] = (bn_hsum4(wasm_i32x4_add(a, b)) - da) >> 2;
}

/* decode: the 16 rows of group g against one activation row; each activation vector is loaded
 * once for 16 rows (eight accumulator pairs, no ymm spills; 8 rows ran 15% slower, measured) */
__attribute__((noinline)) static void bn_r16_rows16(const uint8_t *g, const int8_t *q, uint32_t chunks, int32_t *out) {
  const bn_r16k k = bn_r16k_make(); /* here, not passed in: V8 cannot pair two loads of a stack copy */
  v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  v128_t b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
  uint32_t c = 0;
  do {
    const v128_t x = wasm_v128_load(q + 16 * c);
    const uint8_t *wc = g + 64 * c;
    const v128_t w0 = wasm_v128_load(wc), w1 = wasm_v128_load(wc + 16);
    const v128_t w2 = wasm_v128_load(wc + 32), w3 = wasm_v128_load(wc + 48);
    BN_QUAD(x, w0, a0, a1, a2, a3);
    BN_QUAD(x, w1, a4, a5, a6, a7);
    BN_QUAD(x, w2, b0, b1, b2, b3);
    BN_QUAD(x, w3, b4, b5, b6, b7);
    c++;
  } while (c < chunks);
  bn_r16_pair_out(a0, a1, &k, out);
  bn_r16_pair_out(a2, a3, &k, out + 2);
  bn_r16_pair_out(a4, a5, &k, out + 4);
  bn_r16_pair_out(a6, a7, &k, out + 6);
  bn_r16_pair_out(b0, b1, &k, out + 8);
  bn_r16_pair_out(b2, b3, &k, out + 10);
  bn_r16_pair_out(b4, b5, &k, out + 12);
  bn_r16_pair_out(b6, b7, &k, out + 14);
}

/* batched: 8 rows (two quads from g) against two activation rows. Each unpacked weight serves two
 * tokens and each activation load eight rows: 16 accumulators and 4 unpacked weights fit V8's 16
 * ymm registers with no spills. Measured against it, on weights in L2: 4 rows x 4 tokens (the same
 * registers) 5-20% slower, 16 rows x 1 token 25% slower, this loop unrolled twice 35% slower */
__attribute__((noinline)) static void bn_r16_rows8_tok2(const uint8_t *g, const int8_t *q0, const int8_t *q1,
                                                        uint32_t chunks, int32_t *out0, int32_t *out1) {
  const bn_r16k k = bn_r16k_make();
  v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  v128_t b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
  uint32_t c = 0;
  do {
    const uint8_t *wc = g + 64 * c;
    const v128_t v = wasm_v128_load(wc), w = wasm_v128_load(wc + 16);
    const v128_t v0 = wasm_v128_and(v, k.lo), v1 = wasm_v128_and(v, k.hi);
    const v128_t vs = wasm_u16x8_shr(v, 4);
    const v128_t v2 = wasm_v128_and(vs, k.lo), v3 = wasm_v128_and(vs, k.hi);
    const v128_t w0 = wasm_v128_and(w, k.lo), w1 = wasm_v128_and(w, k.hi);
    const v128_t ws = wasm_u16x8_shr(w, 4);
    const v128_t w2 = wasm_v128_and(ws, k.lo), w3 = wasm_v128_and(ws, k.hi);
    const v128_t x = wasm_v128_load(q0 + 16 * c), y = wasm_v128_load(q1 + 16 * c);
    a0 = BN_DOTADD(x, v0, a0);
    a1 = BN_DOTADD(x, v1, a1);
    a2 = BN_DOTADD(x, v2, a2);
    a3 = BN_DOTADD(x, v3, a3);
    a4 = BN_DOTADD(x, w0, a4);
    a5 = BN_DOTADD(x, w1, a5);
    a6 = BN_DOTADD(x, w2, a6);
    a7 = BN_DOTADD(x, w3, a7);
    b0 = BN_DOTADD(y, v0, b0);
    b1 = BN_DOTADD(y, v1, b1);
    b2 = BN_DOTADD(y, v2, b2);
    b3 = BN_DOTADD(y, v3, b3);
    b4 = BN_DOTADD(y, w0, b4);
    b5 = BN_DOTADD(y, w1, b5);
    b6 = BN_DOTADD(y, w2, b6);
    b7 = BN_DOTADD(y, w3, b7);
    c++;
  } while (c < chunks);
  bn_r16_pair_out(a0, a1, &k, out0);
  bn_r16_pair_out(a2, a3, &k, out0 + 2);
  bn_r16_pair_out(a4, a5, &k, out0 + 4);
  bn_r16_pair_out(a6, a7, &k, out0 + 6);
  bn_r16_pair_out(b0, b1, &k, out1);
  bn_r16_pair_out(b2, b3, &k, out1 + 2);
  bn_r16_pair_out(b4, b5, &k, out1 + 4);
  bn_r16_pair_out(b6, b7, &k, out1 + 6);
}

void bn_dot_i2_i8_r16_simd(const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0, uint32_t m1,
                           const bn_qrows *x, int32_t *dots, uint32_t ld_dots) {
  const uint32_t chunks = cols / 16, full = BN_MIN(m1, rows & ~15u);
  for (uint32_t m = m0; m < m1;) {
    if ((m & 15) != 0 || m + 16 > full) {
      /* a group cut by the range, or a row past the last group: the exact scalar row. Forward
       * passes never come here (every ternary row count is a multiple of 16, split in tiles of 16) */
      bn_dot_i2_i8_r16_ref(w, rows, cols, m, m + 1, x, dots + (m - m0), ld_dots);
      m++;
      continue;
    }
    /* tokens inner: the group's 4*cols bytes stay in L1 while every token pair passes over them */
    const uint8_t *g = w + (size_t)(m >> 4) * 4 * cols;
    int32_t *o = dots + (m - m0);
    uint32_t t = 0;
    for (; t + 2 <= x->n; t += 2) {
      const int8_t *q0 = x->q + (size_t)t * x->ld, *q1 = q0 + x->ld;
      int32_t *o0 = o + (size_t)t * ld_dots, *o1 = o0 + ld_dots;
      bn_r16_rows8_tok2(g, q0, q1, chunks, o0, o1);
      bn_r16_rows8_tok2(g + 32, q0, q1, chunks, o0 + 8, o1 + 8);
    }
    if (t < x->n) bn_r16_rows16(g, x->q + (size_t)t * x->ld, chunks, o + (size_t)t * ld_dots);
    m += 16;
  }
}
