/*
 * head.c: token embedding lookup and the LM head (embedding-shaped [n_vocab][dim] matrix of type
 * F32, F16 or Q8_0; for tied models it is token_embd itself).
 *
 * Q8_0 rows are dim/32 blocks of {f16 d, int8 q[32]} (34 bytes); the head's activation is then
 * quantized to int8 blocks of 32 with an f32 scale absmax/127 (round half to even), and each row's
 * dot accumulates block products in block order. F16/F32 heads use the canonical float dot.
 * Logits rows are [n_out][n_vocab]; vocabulary rows are split across threads. No allocation.
 */
#include "bn_impl.h"

static inline float bn_f16_at(const uint8_t *p) { return bn_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

void bn_embed_row(const bn_config *cfg, const void *embd, uint32_t token, float *out) {
  const uint32_t dim = cfg->dim;
  if (cfg->embd_type == BN_TYPE_F32) {
    const float *row = (const float *)embd + (size_t)token * dim;
    for (uint32_t i = 0; i < dim; i++) out[i] = row[i];
  } else if (cfg->embd_type == BN_TYPE_F16) {
    const uint16_t *row = (const uint16_t *)embd + (size_t)token * dim;
    for (uint32_t i = 0; i < dim; i++) out[i] = bn_f16_to_f32(row[i]);
  } else {
    const uint8_t *row = (const uint8_t *)embd + (size_t)token * (dim / 32) * 34;
    for (uint32_t k = 0; k < dim / 32; k++) {
      const float d = bn_f16_at(row + 34 * k);
      const int8_t *q = (const int8_t *)(row + 34 * k + 2);
      for (uint32_t i = 0; i < 32; i++) out[32 * k + i] = (float)q[i] * d;
    }
  }
}

/* output row j: y = rmsnorm(x[out_idx[j]]; output_norm) into xb[j]; for a Q8_0 head also its int8 blocks */
void bn_head_prepare(const bn_ctx *c, const bn_ops *ops, uint32_t j) {
  const bn_config *cfg = &c->config;
  const bn_state *s = &c->state;
  const uint32_t dim = cfg->dim, ld = BN_MAX(cfg->dim, cfg->ffn_dim);
  float *y = s->xb + (size_t)j * ld;
  ops->rmsnorm(y, s->x + (size_t)c->batch.out_idx[j] * dim, c->weights.output_norm, dim, cfg->norm_eps);
  if (cfg->head_type != BN_TYPE_Q8_0) return;
  int8_t *q = s->hq + (size_t)j * dim;
  float *qs = s->hscale + (size_t)j * (dim / 32);
  for (uint32_t k = 0; k < dim / 32; k++) {
    float amax = 0.0f;
    for (uint32_t i = 0; i < 32; i++) {
      const float a = __builtin_fabsf(y[32 * k + i]);
      amax = a > amax ? a : amax;
    }
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    for (uint32_t i = 0; i < 32; i++) q[32 * k + i] = (int8_t)__builtin_rintf(y[32 * k + i] * id);
    qs[k] = d;
  }
}

void bn_head_rows(const bn_ctx *c, const bn_ops *ops, uint32_t v0, uint32_t v1) {
  const bn_config *cfg = &c->config;
  const bn_state *s = &c->state;
  const bn_batch *b = &c->batch;
  const uint32_t dim = cfg->dim, ld = BN_MAX(cfg->dim, cfg->ffn_dim), nv = cfg->n_vocab;
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
