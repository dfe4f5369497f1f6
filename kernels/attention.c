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

#define BN_ATT_QS 512 /* the largest head_dim whose scaled query row lives on the stack */

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

  /* q times 2^112 for dot_f32_f16s (the same scores as dot_f32_f16, faster), when it fits */
  float qs[BN_ATT_QS];
  const int scaled = hd <= BN_ATT_QS && bn_scale_2p112(q, hd, qs);
  float m = -__builtin_inff();
  for (uint32_t p = 0; p <= pos; p++) {
    const uint16_t *k = kc + (size_t)p * hd;
    const float v = (scaled ? ops->dot_f32_f16s(qs, k, hd) : ops->dot_f32_f16(q, k, hd)) * scale;
    scores[p] = v;
    m = v > m ? v : m;
  }
  ops->exp_sub(scores, pos + 1, m);
  const float inv = 1.0f / ops->sum(scores, pos + 1);

  float *out = s->att + (size_t)t * cfg->dim + h * hd;
  for (uint32_t i = 0; i < hd; i++) out[i] = 0.0f;
  /* weights p * inv are in [0, 1], so times 2^112 exactly: axpy_f16s then needs no re-bias multiply */
  const float k112 = bn_2p112();
  for (uint32_t p = 0; p <= pos; p++) ops->axpy_f16s(out, (scores[p] * inv) * k112, vc + (size_t)p * hd, hd);
}
