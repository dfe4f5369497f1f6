/*
 * attention.c: causal grouped-query attention of one (token, head) pair over its slot's KV cache.
 *
 * Cache layout: [n_layers][n_slots][n_kv_heads][n_ctx][head_dim] f16 for K and for V; query head h
 * reads KV head h / (n_heads / n_kv_heads). Positions 0..pos of the token's slot must be written
 * (earlier steps, or earlier tokens of this batch). Scores are scaled by 1/sqrt(head_dim), softmax
 * uses bn_expf and the canonical sum; the output is sum_p (p_p / sum) * v_p accumulated in position
 * order. `scores` is the calling thread's own row of n_ctx floats. No allocation, no I/O.
 */
#include "bn_impl.h"

void bn_attention_token(const bn_ctx *c, const bn_ops *ops, uint32_t layer, uint32_t t, uint32_t h,
                        float *scores) {
  const bn_config *cfg = &c->config;
  const bn_state *s = &c->state;
  const uint32_t hd = cfg->head_dim, kvh = h / (cfg->n_heads / cfg->n_kv_heads);
  const uint32_t pos = (uint32_t)c->batch.pos[t], slot = (uint32_t)c->batch.slot[t];
  const size_t base = (((size_t)layer * cfg->n_slots + slot) * cfg->n_kv_heads + kvh) * cfg->n_ctx * hd;
  const uint16_t *kc = s->k_cache + base, *vc = s->v_cache + base;
  const float *q = s->q + (size_t)t * cfg->dim + h * hd;
  const float scale = 1.0f / __builtin_sqrtf((float)hd);

  float m = -__builtin_inff();
  for (uint32_t p = 0; p <= pos; p++) {
    const float v = ops->dot_f32_f16(q, kc + (size_t)p * hd, hd) * scale;
    scores[p] = v;
    m = v > m ? v : m;
  }
  ops->exp_sub(scores, pos + 1, m);
  const float inv = 1.0f / ops->sum(scores, pos + 1);

  float *out = s->att + (size_t)t * cfg->dim + h * hd;
  for (uint32_t i = 0; i < hd; i++) out[i] = 0.0f;
  for (uint32_t p = 0; p <= pos; p++) ops->axpy_f16(out, scores[p] * inv, vc + (size_t)p * hd, hd);
}
