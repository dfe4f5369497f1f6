/*
 * repack.c: load-time conversions into the compute layouts, done once, exactly.
 *
 * TQ2_0 (66-byte blocks of 256: qs[64], f16 d; element 128h + 32l + m in byte 32h+m at bits 2l)
 * and TQ1_0 (54-byte blocks: qs[48], qh[4], f16 d; base-3 digits, spec §3.4) become I2_S
 * (element j of a 128-block in byte j%32 at bits 6-2*(j/32), then the f32 scale). The codes
 * {0,1,2} are the same in all three; the repack is exact only if every block with a nonzero trit
 * has the same d, which is then the tensor's scale: otherwise BN_STATUS_BAD_CONFIG and the loader
 * refuses the file as lossy. Also: checking I2_S codes (3 is not a valid code) and F16 values
 * (inf/nan are refused), regrouping I2_S rows in fours (bn_i2_row) or sixteens (bn_i2_r16_at), and
 * quantizing an F16 matrix to Q8_0 or to the Q7 head layout (head.c).
 * No allocation, no I/O.
 */
#include "bn_impl.h"

static inline uint16_t bn_u16_at(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* common block scale: returns 0 on a mismatch; *have tracks whether one was seen */
static int bn_scale_merge(uint16_t d, int nonzero, uint16_t *common, int *have) {
  if (!nonzero) return 1;
  if (!*have) { *common = d; *have = 1; return 1; }
  return *common == d;
}

static void bn_i2s_finish(uint8_t *dst, uint32_t n, uint16_t common, int have, float *scale) {
  const float beta = have ? bn_f16_to_f32(common) : 0.0f;
  __builtin_memcpy(dst + n / 4, &beta, 4);
  for (uint32_t i = 4; i < 32; i++) dst[n / 4 + i] = 0;
  *scale = beta;
}

int32_t bn_repack_tq2_0(const uint8_t *src, uint8_t *dst, uint32_t n, float *scale) {
  if (n % 256) return BN_STATUS_BAD_ARG;
  uint16_t common = 0;
  int have = 0;
  for (uint32_t blk = 0; blk < n / 256; blk++) {
    const uint8_t *b = src + 66 * blk;
    uint8_t *o = dst + 64 * blk; /* two I2_S blocks of 32 bytes */
    int nonzero = 0;
    for (uint32_t i = 0; i < 64; i++) {
      const uint8_t v = b[i];
      /* reverse the order of the four 2-bit fields: bits 2l -> bits 6-2l */
      o[i] = (uint8_t)(((v & 3) << 6) | (((v >> 2) & 3) << 4) | (((v >> 4) & 3) << 2) | ((v >> 6) & 3));
      if (v != 0x55) nonzero = 1; /* 0x55 = four codes of 1 = four zero trits */
      if (((v & 3) == 3) | (((v >> 2) & 3) == 3) | (((v >> 4) & 3) == 3) | ((v >> 6) == 3)) return BN_STATUS_BAD_CONFIG;
    }
    if (!bn_scale_merge(bn_u16_at(b + 64), nonzero, &common, &have)) return BN_STATUS_BAD_CONFIG;
  }
  bn_i2s_finish(dst, n, common, have, scale);
  return BN_STATUS_OK;
}

/* trit n (0 = most significant) of a base-3 byte stored as ceil(q * 256 / 243) */
static inline uint32_t bn_trit(uint8_t byte, uint32_t n) {
  static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
  const uint8_t q = (uint8_t)(byte * pow3[n]);
  return ((uint32_t)q * 3) >> 8;
}

static inline void bn_put_code(uint8_t *dst, uint32_t e, uint32_t code) {
  const uint32_t blk = e >> 7, j = e & 127;
  dst[blk * 32 + (j & 31)] |= (uint8_t)(code << (6 - 2 * (j >> 5)));
}

int32_t bn_repack_tq1_0(const uint8_t *src, uint8_t *dst, uint32_t n, float *scale) {
  if (n % 256) return BN_STATUS_BAD_ARG;
  for (uint32_t i = 0; i < n / 4; i++) dst[i] = 0;
  uint16_t common = 0;
  int have = 0;
  for (uint32_t blk = 0; blk < n / 256; blk++) {
    const uint8_t *b = src + 54 * blk;
    const uint32_t e0 = blk * 256;
    int nonzero = 0;
    uint32_t code;
#define BN_PUT(e, byte, t)                              \
  do {                                                  \
    code = bn_trit((byte), (t));                        \
    if (code > 2) return BN_STATUS_BAD_CONFIG;          \
    nonzero |= code != 1;                               \
    bn_put_code(dst, e0 + (e), code);                   \
  } while (0)
    for (uint32_t t = 0; t < 5; t++)
      for (uint32_t m = 0; m < 32; m++) BN_PUT(t * 32 + m, b[m], t);
    for (uint32_t t = 0; t < 5; t++)
      for (uint32_t m = 0; m < 16; m++) BN_PUT(160 + t * 16 + m, b[32 + m], t);
    for (uint32_t t = 0; t < 4; t++)
      for (uint32_t j = 0; j < 4; j++) BN_PUT(240 + t * 4 + j, b[48 + j], t);
#undef BN_PUT
    if (!bn_scale_merge(bn_u16_at(b + 52), nonzero, &common, &have)) return BN_STATUS_BAD_CONFIG;
  }
  bn_i2s_finish(dst, n, common, have, scale);
  return BN_STATUS_OK;
}

int32_t bn_i2s_check(const uint8_t *w, uint32_t n) {
  /* a byte holds a code 3 iff some 2-bit field has both bits set */
  v128_t bad = wasm_i8x16_splat(0);
  const v128_t lo = wasm_i8x16_splat(0x55);
  uint32_t i = 0;
  for (; i + 16 <= n / 4; i += 16) {
    const v128_t v = wasm_v128_load(w + i);
    bad = wasm_v128_or(bad, wasm_v128_and(wasm_v128_and(v, wasm_u8x16_shr(v, 1)), lo));
  }
  int any = wasm_v128_any_true(bad);
  for (; i < n / 4; i++) any |= (w[i] & (w[i] >> 1) & 0x55) != 0;
  return any ? BN_STATUS_BAD_CONFIG : BN_STATUS_OK;
}

/* 4x4 transpose of 2-bit fields across four rows' bytes (16 bytes each, SWAR with 16-bit shifts:
 * the masks keep each byte's fields its own): afterwards r[s] holds at bits 2f the field that r[f]
 * held at bits 2s */
static inline void bn_transpose2(v128_t r[4]) {
  for (int i = 0; i < 2; i++) { /* fields 2,3 of r[i] <-> fields 0,1 of r[i + 2] */
    const v128_t t = wasm_v128_and(wasm_v128_xor(wasm_u16x8_shr(r[i], 4), r[i + 2]), wasm_i8x16_splat(0x0f));
    r[i + 2] = wasm_v128_xor(r[i + 2], t);
    r[i] = wasm_v128_xor(r[i], wasm_i16x8_shl(t, 4));
  }
  for (int i = 0; i < 4; i += 2) { /* fields 1,3 of r[i] <-> fields 0,2 of r[i + 1] */
    const v128_t t = wasm_v128_and(wasm_v128_xor(wasm_u16x8_shr(r[i], 2), r[i + 1]), wasm_i8x16_splat(0x33));
    r[i + 1] = wasm_v128_xor(r[i + 1], t);
    r[i] = wasm_v128_xor(r[i], wasm_i16x8_shl(t, 2));
  }
}

/* one group of 16 row-major I2_S rows (src, cols/4 bytes each) into the rows-in-sixteens layout at
 * dst (bn_i2_r16_at): bytes 16h..16h+15 of block b hold, in the field at bits 6-2j, columns
 * 128b + 32j + 16h + i, which is chunk 8b + 2j + h; the transpose turns four rows' bytes into the
 * four fields of that chunk's quad */
static void bn_i2s_place_group16(const uint8_t *src, uint8_t *dst, uint32_t cols) {
  const uint32_t rb = cols / 4;
  for (uint32_t k = 0; k < 4; k++)
    for (uint32_t b = 0; b < cols / 128; b++)
      for (uint32_t h = 0; h < 2; h++) {
        v128_t r[4];
        for (uint32_t f = 0; f < 4; f++) r[f] = wasm_v128_load(src + (4 * k + f) * rb + 32 * b + 16 * h);
        bn_transpose2(r);
        for (uint32_t j = 0; j < 4; j++) wasm_v128_store(dst + 64 * (8 * b + 2 * j + h) + 16 * k, r[3 - j]);
      }
}

/* nbytes of a row-major I2_S matrix (or a chunk of one starting at a group of rows: `rows` rows,
 * then for the last chunk the rows past the last group and the scale) from src to dst, the whole
 * groups regrouped for `layout` (in fours, bn_i2_row, or in sixteens, bn_i2_r16_at), the rest
 * copied as is; no overlap */
void bn_i2s_place(const uint8_t *src, uint8_t *dst, uint32_t rows, uint32_t cols, uint32_t nbytes, uint32_t layout) {
  const uint32_t rb = cols / 4, nb = cols / 128;
  uint32_t i;
  if (layout == BN_LAYOUT_R16) {
    for (uint32_t g = 0; g < rows / 16; g++) bn_i2s_place_group16(src + (size_t)g * 4 * cols, dst + (size_t)g * 4 * cols, cols);
    i = rows / 16 * 4 * cols;
  } else {
    for (uint32_t g = 0; g < rows / 4; g++) {
      const uint8_t *from = src + (size_t)g * cols;
      uint8_t *to = dst + (size_t)g * cols;
      for (uint32_t k = 0; k < nb; k++)
        for (uint32_t r = 0; r < 4; r++) {
          const uint8_t *f = from + r * rb + 32 * k;
          uint8_t *t = to + (4 * k + r) * 32;
          wasm_v128_store(t, wasm_v128_load(f));
          wasm_v128_store(t + 16, wasm_v128_load(f + 16));
        }
    }
    i = rows / 4 * cols;
  }
  for (; i + 16 <= nbytes; i += 16) wasm_v128_store(dst + i, wasm_v128_load(src + i));
  for (; i < nbytes; i++) dst[i] = src[i];
}

/* the same in place, through tmp (a group: cols bytes for fours, 4*cols for sixteens; not overlapping) */
void bn_i2s_interleave(uint8_t *w, uint32_t rows, uint32_t cols, uint8_t *tmp, uint32_t layout) {
  const uint32_t g_rows = layout == BN_LAYOUT_R16 ? 16 : 4, g_bytes = g_rows / 4 * cols;
  for (uint32_t g = 0; g < rows / g_rows; g++) {
    uint8_t *grp = w + (size_t)g * g_bytes;
    for (uint32_t i = 0; i < g_bytes; i += 16) wasm_v128_store(tmp + i, wasm_v128_load(grp + i));
    bn_i2s_place(tmp, grp, g_rows, cols, g_bytes, layout);
  }
}

void bn_quantize_q8_0_f16(const uint16_t *src, uint8_t *dst, uint32_t n) {
  for (uint32_t k = 0; k < n / 32; k++) {
    float v[32], amax = 0.0f;
    for (uint32_t i = 0; i < 32; i++) {
      v[i] = bn_f16_to_f32(src[32 * k + i]);
      const float a = __builtin_fabsf(v[i]);
      amax = a > amax ? a : amax;
    }
    const uint16_t dh = bn_f32_to_f16(amax / 127.0f);
    const float d = bn_f16_to_f32(dh), id = d > 0.0f ? 1.0f / d : 0.0f;
    uint8_t *o = dst + 34 * k;
    o[0] = (uint8_t)(dh & 0xff);
    o[1] = (uint8_t)(dh >> 8);
    for (uint32_t i = 0; i < 32; i++) {
      float r = __builtin_rintf(v[i] * id);
      r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
      o[2 + i] = (uint8_t)(int8_t)r;
    }
  }
}

/* rows [row0, row0 + rows) of an F16 [nv][dim] matrix (src: those rows) into the Q7 layout at dst_w
 * (rows in fours, bn_q7_row_offset) and dst_s (block scales in fours too, bn_q7_scale_index) */
void bn_quantize_q7_f16(const uint16_t *src, uint8_t *dst_w, float *dst_s, uint32_t row0, uint32_t rows, uint32_t dim,
                        uint32_t nv) {
  /* SIMD in both builds (load time, not a variant): per 32 values d = absmax/63, u = rint(v/d) + 64 */
  const bn_f16k_t f16k = bn_f16k();
  const uint32_t nb = dim / 32;
  for (uint32_t b = 0; b < rows * nb; b++) {
    const uint32_t v = row0 + b / nb, k = b % nb;
    uint32_t stride;
    uint8_t *out = dst_w + bn_q7_row_offset(nv, dim, v, &stride) + (size_t)stride * k;
    v128_t x[8];
    for (int h = 0; h < 4; h++) bn_f16x8_to_f32x4x2(wasm_v128_load(src + 32 * b + 8 * h), &f16k, &x[2 * h], &x[2 * h + 1]);
    v128_t m = wasm_f32x4_abs(x[0]);
    for (int i = 1; i < 8; i++) m = wasm_f32x4_pmax(m, wasm_f32x4_abs(x[i]));
    m = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
    m = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
    const float amax = wasm_f32x4_extract_lane(m, 0);
    const float d = amax / 63.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    const v128_t vid = wasm_f32x4_splat(id), lo = wasm_i32x4_splat(-63), hi = wasm_i32x4_splat(63);
    v128_t q[8];
    for (int i = 0; i < 8; i++) {
      const v128_t r = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(x[i], vid)));
      q[i] = wasm_i32x4_add(wasm_i32x4_min(wasm_i32x4_max(r, lo), hi), wasm_i32x4_splat(64));
    }
    const v128_t u0 = wasm_u8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(q[0], q[1]), wasm_i16x8_narrow_i32x4(q[2], q[3]));
    const v128_t u1 = wasm_u8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(q[4], q[5]), wasm_i16x8_narrow_i32x4(q[6], q[7]));
    wasm_v128_store(out, u0);
    wasm_v128_store(out + 16, u1);
    uint32_t sst;
    dst_s[bn_q7_scale_index(nv, nb, v, &sst) + (size_t)sst * k] = d;
  }
}

int32_t bn_f16_check(const uint16_t *src, uint32_t n) {
  /* an f16 is inf or nan iff its exponent bits are all set */
  const v128_t e = wasm_i16x8_splat(0x7c00);
  v128_t bad = wasm_i16x8_splat(0);
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) bad = wasm_v128_or(bad, wasm_i16x8_eq(wasm_v128_and(wasm_v128_load(src + i), e), e));
  int any = wasm_v128_any_true(bad);
  for (; i < n; i++) any |= (src[i] & 0x7c00) == 0x7c00;
  return any ? BN_STATUS_BAD_CONFIG : BN_STATUS_OK;
}
