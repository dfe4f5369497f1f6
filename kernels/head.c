/*
 * head.c: token embedding lookup and the LM head, an embedding-shaped [n_vocab][dim] matrix (for
 * tied models token_embd itself) of type F32, F16, Q8_0 or Q7.
 *
 * - F32/F16: canonical float dot (exact f16 decode).
 * - Q8_0: rows of dim/32 blocks {f16 d, int8 q[32]}; the activation becomes int8 blocks of 32 with
 *   an f32 scale absmax/127 (round half to even); block products accumulate in block order.
 * - Q7 (this engine's fast layout, made at load from F16): bytes u = w + 64 with w in [-63, 63]
 *   and an f32 scale per 32-block. The activation is int8 blocks as for Q8_0, so one relaxed
 *   i16 dot (u is the 7-bit operand) gives exact pair sums; 64 * sum(q) per block undoes the offset.
 * Logits rows are [n_out][n_vocab]; vocabulary rows are split across threads. No allocation.
 */
#include "bn_impl.h"

#define BN_HEAD_XS 4096 /* the F16 head's scaled activation row lives on the stack up to this dim */

static inline float bn_f16_at(const uint8_t *p) { return bn_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

void bn_embed_row(const bn_config *cfg, const void *embd, uint32_t token, float *out) {
  const uint32_t dim = cfg->dim;
  if (cfg->embd_type == BN_TYPE_F32) {
    const float *row = (const float *)embd + (size_t)token * dim;
    for (uint32_t i = 0; i < dim; i++) out[i] = row[i];
  } else if (cfg->embd_type == BN_TYPE_F16) {
    const uint16_t *row = (const uint16_t *)embd + (size_t)token * dim;
    for (uint32_t i = 0; i < dim; i++) out[i] = bn_f16_to_f32(row[i]);
  } else if (cfg->embd_type == BN_TYPE_F16P) {
    bn_embed_f16p((const uint16_t *)embd, cfg->n_vocab, dim, token, out);
  } else if (cfg->embd_type == BN_TYPE_Q8_0) {
    const uint8_t *row = (const uint8_t *)embd + (size_t)token * (dim / 32) * 34;
    for (uint32_t k = 0; k < dim / 32; k++) {
      const float d = bn_f16_at(row + 34 * k);
      const int8_t *q = (const int8_t *)(row + 34 * k + 2);
      for (uint32_t i = 0; i < 32; i++) out[32 * k + i] = (float)q[i] * d;
    }
  } else {
    uint32_t stride;
    const uint8_t *row = (const uint8_t *)embd + bn_q7_row_offset(cfg->n_vocab, dim, token, &stride);
    uint32_t sst;
    const float *scales = (const float *)((const uint8_t *)embd + (size_t)cfg->n_vocab * dim) +
                          bn_q7_scale_index(cfg->n_vocab, dim / 32, token, &sst);
    for (uint32_t i = 0; i < dim; i++)
      out[i] = (float)((int32_t)row[(i / 32) * stride + i % 32] - 64) * scales[(i / 32) * sst];
  }
}

/* output row j: y = rmsnorm(x[out_idx[j]]; output_norm) into xb[j]; for int8 heads also its blocks */
void bn_head_prepare(const bn_ctx *c, const bn_ops *ops, uint32_t j) {
  const bn_config *cfg = &c->config;
  const bn_state *s = &c->state;
  const uint32_t dim = cfg->dim, ld = BN_MAX(cfg->dim, cfg->ffn_dim);
  float *y = s->xb + (size_t)j * ld;
  ops->rmsnorm(y, s->x + (size_t)c->batch.out_idx[j] * dim, c->weights.output_norm, dim, cfg->norm_eps);
  if (cfg->head_type == BN_TYPE_F16P) bn_f16p_prepare(y, dim, s->hxs + (size_t)j * (2 * dim + 4));
  if (cfg->head_type != BN_TYPE_Q8_0 && cfg->head_type != BN_TYPE_Q7) return;
  bn_head_blocks(y, dim, s->hq + (size_t)j * dim, s->hscale + (size_t)j * (dim / 32), s->hsum + (size_t)j * (dim / 32) * 4);
}

void bn_head_blocks(const float *y, uint32_t dim, int8_t *q, float *qs, int32_t *qsum) {
  for (uint32_t k = 0; k < dim / 32; k++) {
    float amax = 0.0f;
    for (uint32_t i = 0; i < 32; i++) {
      const float a = __builtin_fabsf(y[32 * k + i]);
      amax = a > amax ? a : amax;
    }
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (uint32_t i = 0; i < 32; i++) {
      q[32 * k + i] = (int8_t)__builtin_rintf(y[32 * k + i] * id);
      sum += q[32 * k + i];
    }
    qs[k] = d;
    /* a ready-made i32x4 per block: the Q7 kernel starts its lane sums from it */
    qsum[4 * k] = -64 * sum;
    qsum[4 * k + 1] = qsum[4 * k + 2] = qsum[4 * k + 3] = 0;
  }
}

/* ---- Q7 rows: _ref and SIMD share the lane structure documented in bn_ops.head_q7 ---- */

static inline float bn_fold4(const float a[4]) { return (a[0] + a[2]) + (a[1] + a[3]); }

void bn_head_q7_ref(const uint8_t *w, const float *dw, uint32_t dim, uint32_t v0, uint32_t v1, const int8_t *q,
                    const float *dq, const int32_t *qsum, uint32_t n_out, float *logits, uint32_t nv) {
  const uint32_t nb = dim / 32;
  for (uint32_t v = v0; v < v1; v++) {
    uint32_t stride, sst;
    const uint8_t *row = w + bn_q7_row_offset(nv, dim, v, &stride);
    const float *dwv = dw + bn_q7_scale_index(nv, nb, v, &sst);
    for (uint32_t j = 0; j < n_out; j++) {
      const int8_t *qj = q + (size_t)j * dim;
      float acc[4] = { 0, 0, 0, 0 };
      for (uint32_t k = 0; k < nb; k++) {
        int32_t lane[4] = { 0, 0, 0, 0 };
        for (uint32_t i = 0; i < 32; i++) lane[(i % 16) / 4] += (int32_t)row[stride * k + i] * qj[32 * k + i];
        lane[0] += qsum[((size_t)j * nb + k) * 4];
        const float sc = dwv[(size_t)sst * k] * dq[(size_t)j * nb + k];
        for (int l = 0; l < 4; l++) acc[l] = acc[l] + (float)lane[l] * sc;
      }
      logits[(size_t)j * nv + v] = bn_fold4(acc);
    }
  }
}

#if BN_RELAXED
/* lane sums of one block, from the offset: two relaxed dot-adds (one vpdpbusd each on AVX-VNNI; the
 * 7-bit u is the operand whose range makes the instruction exact) */
#define BN_Q7_SUMS(x0, x1, u0, u1, offset)                                                          \
  wasm_i32x4_relaxed_dot_i8x16_i7x16_add((x1), (u1), wasm_i32x4_relaxed_dot_i8x16_i7x16_add((x0), (u0), (offset)))
#else
/* u*q pair sums as pmaddubsw makes them: products fit i16 (127*127), pairs too (2*127*127) */
static inline v128_t bn_q7_pairs(v128_t q, v128_t u) {
  const v128_t lo = wasm_i16x8_mul(wasm_i16x8_extend_low_i8x16(q), wasm_u16x8_extend_low_u8x16(u));
  const v128_t hi = wasm_i16x8_mul(wasm_i16x8_extend_high_i8x16(q), wasm_u16x8_extend_high_u8x16(u));
  /* pairwise add of adjacent i16 lanes = the even lanes plus the odd lanes */
  const v128_t ev = wasm_i8x16_shuffle(lo, hi, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
  const v128_t od = wasm_i8x16_shuffle(lo, hi, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  return wasm_i16x8_add(ev, od);
}
/* i16 lane pairs summed into i32 lanes by a dot with ones (pmaddwd) */
#define BN_Q7_SUMS(x0, x1, u0, u1, offset)                                                          \
  wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_dot_i16x8(bn_q7_pairs((x0), (u0)), ones),                \
                                wasm_i32x4_dot_i16x8(bn_q7_pairs((x1), (u1)), ones)), (offset))
#endif

/* the ones of the simd128 build's pmaddwd in a register (a splat of a run-time 1) rather than a
 * constant V8 reloads at every use: +2% decode with the Q7 head (2B4T, 1 thread, measured) */
static volatile const int32_t bn_one = 1;

/* lane sums of one block (as i32x4) from the offset vector [-64*sum(q), 0, 0, 0] */
static inline v128_t bn_q7_sums(v128_t x0, v128_t x1, const uint8_t *u, v128_t offset, v128_t ones) {
  (void)ones;
  return BN_Q7_SUMS(x0, x1, wasm_v128_load(u), wasm_v128_load(u + 16), offset);
}

static inline v128_t bn_q7_block(const uint8_t *u, const int8_t *q, const int32_t *offset, v128_t ones) {
  return bn_q7_sums(wasm_v128_load(q), wasm_v128_load(q + 16), u, wasm_v128_load(offset), ones);
}

/* one row (first block at r0, block stride st): per block, (lane sums) * (dw * dq) into the lanes */
#define BN_Q7_STEP(acc, k, lane)                                                                            \
  acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(bn_q7_block(r0 + st * (k), qj + 32 * (k), sj + 4 * (k), ones)), \
                                           wasm_i32x4_shuffle(sc, sc, lane, lane, lane, lane)))

static inline float bn_fold4_v(v128_t a) {
  return (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
         (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
}

/* (dwv: the row's first block scale, sst apart) */
static float bn_q7_row_simd(const uint8_t *r0, uint32_t st, const float *dwv, uint32_t sst, uint32_t nb,
                            const int8_t *qj, const float *dqj, const int32_t *sj, v128_t ones) {
  v128_t a = wasm_f32x4_splat(0);
  uint32_t k = 0;
  for (; k + 4 <= nb; k += 4) { /* four block scales dw*dq at once */
    const float *d = dwv + (size_t)sst * k;
    const v128_t dw4 = sst == 1 ? wasm_v128_load(d) : wasm_f32x4_make(d[0], d[sst], d[2 * sst], d[3 * sst]);
    const v128_t sc = wasm_f32x4_mul(dw4, wasm_v128_load(dqj + k));
    BN_Q7_STEP(a, k, 0);
    BN_Q7_STEP(a, k + 1, 1);
    BN_Q7_STEP(a, k + 2, 2);
    BN_Q7_STEP(a, k + 3, 3);
  }
  for (; k < nb; k++) {
    const v128_t sc = wasm_f32x4_splat(dwv[(size_t)sst * k] * dqj[k]);
    BN_Q7_STEP(a, k, 0);
  }
  return bn_fold4_v(a);
}

/* row r of a group of four (g: its first byte): the same sums as bn_q7_row_simd, the activation
 * block and its offset loaded once for the four rows, the four rows' block scales in one load */
#define BN_Q7_G(r, acc)                                                                                 \
  acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(bn_q7_sums(x0, x1, gb + 32 * (r), off, ones)), \
                                           wasm_i32x4_shuffle(sc, sc, r, r, r, r)))

static void bn_q7_group_simd(const uint8_t *g, const float *dwg, uint32_t nb, const int8_t *qj, const float *dqj,
                             const int32_t *sj, v128_t ones, float *out) {
  v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (uint32_t k = 0; k < nb; k++) {
    const uint8_t *gb = g + 128 * k;
    const v128_t x0 = wasm_v128_load(qj + 32 * k), x1 = wasm_v128_load(qj + 32 * k + 16);
    const v128_t off = wasm_v128_load(sj + 4 * k);
    const v128_t sc = wasm_f32x4_mul(wasm_v128_load(dwg + 4 * k), wasm_v128_load32_splat(dqj + k));
    BN_Q7_G(0, a0);
    BN_Q7_G(1, a1);
    BN_Q7_G(2, a2);
    BN_Q7_G(3, a3);
  }
  out[0] = bn_fold4_v(a0);
  out[1] = bn_fold4_v(a1);
  out[2] = bn_fold4_v(a2);
  out[3] = bn_fold4_v(a3);
}

void bn_head_q7_simd(const uint8_t *w, const float *dw, uint32_t dim, uint32_t v0, uint32_t v1, const int8_t *q,
                     const float *dq, const int32_t *qsum, uint32_t n_out, float *logits, uint32_t nv) {
  const uint32_t nb = dim / 32, nv4 = nv & ~3u;
  const v128_t ones = wasm_i16x8_splat((int16_t)bn_one);
  for (uint32_t j = 0; j < n_out; j++) {
    const int8_t *qj = q + (size_t)j * dim;
    const float *dqj = dq + (size_t)j * nb;
    const int32_t *sj = qsum + (size_t)j * nb * 4;
    float *lj = logits + (size_t)j * nv;
    for (uint32_t v = v0; v < v1;) {
      if ((v & 3) == 0 && v + 4 <= BN_MIN(v1, nv4)) {
        bn_q7_group_simd(w + (size_t)v * dim, dw + (size_t)v * nb, nb, qj, dqj, sj, ones, lj + v);
        v += 4;
        continue;
      }
      uint32_t st, sst;
      const uint8_t *r0 = w + bn_q7_row_offset(nv, dim, v, &st);
      const float *dwv = dw + bn_q7_scale_index(nv, nb, v, &sst);
      lj[v] = bn_q7_row_simd(r0, st, dwv, sst, nb, qj, dqj, sj, ones);
      v++;
    }
  }
}

void bn_head_rows(const bn_ctx *c, const bn_ops *ops, uint32_t v0, uint32_t v1) {
  const bn_config *cfg = &c->config;
  const bn_state *s = &c->state;
  const bn_batch *b = &c->batch;
  const uint32_t dim = cfg->dim, ld = BN_MAX(cfg->dim, cfg->ffn_dim), nv = cfg->n_vocab;
  if (cfg->head_type == BN_TYPE_Q7) {
    const uint8_t *w = (const uint8_t *)c->weights.output;
    const float *dw = (const float *)(w + (size_t)nv * dim);
    /* chunks of 64 rows keep each row's bytes in L1 across the n_out activation rows */
    for (uint32_t v = v0; v < v1; v += 64)
      ops->head_q7(w, dw, dim, v, BN_MIN(v + 64, v1), s->hq, s->hscale, s->hsum, b->n_out, b->logits, nv);
    return;
  }
  if (cfg->head_type == BN_TYPE_F16P) {
    /* rows in chunks of 64 (their bytes stay in cache across the n_out activation rows) */
    const uint16_t *w = (const uint16_t *)c->weights.output;
    const uint32_t chunk = b->n_out == 1 ? v1 - v0 : 64;
    for (uint32_t vc = v0; vc < v1; vc += chunk) {
      const uint32_t ve = BN_MIN(vc + chunk, v1);
      for (uint32_t j = 0; j < b->n_out; j++) {
        const float *xs = s->hxs + (size_t)j * (2 * dim + 4);
        ops->head_f16p(w, dim, vc, ve, s->xb + (size_t)j * ld, xs[2 * dim] != 0.0f ? xs : 0, b->logits + (size_t)j * nv,
                       nv);
      }
    }
    return;
  }
  if (cfg->head_type == BN_TYPE_F16 && dim <= BN_HEAD_XS) {
    /* rows in chunks of 64 (their bytes stay in cache across the n_out activation rows), each
     * activation row times 2^112 for dot_f32_f16s: the same logits as dot_f32_f16, faster */
    float xs[BN_HEAD_XS];
    const uint16_t *w = (const uint16_t *)c->weights.output;
    const uint32_t chunk = b->n_out == 1 ? v1 - v0 : 64;
    for (uint32_t vc = v0; vc < v1; vc += chunk) {
      const uint32_t ve = BN_MIN(vc + chunk, v1);
      for (uint32_t j = 0; j < b->n_out; j++) {
        const float *y = s->xb + (size_t)j * ld;
        float *lj = b->logits + (size_t)j * nv;
        if (bn_scale_2p112(y, dim, xs))
          for (uint32_t v = vc; v < ve; v++) lj[v] = ops->dot_f32_f16s(xs, w + (size_t)v * dim, dim);
        else
          for (uint32_t v = vc; v < ve; v++) lj[v] = ops->dot_f32_f16(y, w + (size_t)v * dim, dim);
      }
    }
    return;
  }
  for (uint32_t v = v0; v < v1; v++) {
    for (uint32_t j = 0; j < b->n_out; j++) {
      const float *y = s->xb + (size_t)j * ld;
      float r;
      if (cfg->head_type == BN_TYPE_F32) {
        r = ops->dot_f32(y, (const float *)c->weights.output + (size_t)v * dim, dim);
      } else if (cfg->head_type == BN_TYPE_F16) {
        r = ops->dot_f32_f16(y, (const uint16_t *)c->weights.output + (size_t)v * dim, dim);
      } else {
        const uint8_t *row = (const uint8_t *)c->weights.output + (size_t)v * (dim / 32) * 34;
        r = ops->dot_q8_0_row(row, s->hq + (size_t)j * dim, s->hscale + (size_t)j * (dim / 32), dim / 32);
      }
      b->logits[(size_t)j * nv + v] = r;
    }
  }
}
