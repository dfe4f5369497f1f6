/*
 * attention.c: causal grouped-query attention of one token for one or two query heads that share
 * a KV head, over its slot's KV cache.
 *
 * Cache layout: [n_layers][n_slots][n_kv_heads][n_ctx][head_dim] f16 for K and for V; query head h
 * reads KV head h / (n_heads / n_kv_heads). Positions 0..pos of the token's slot must be written
 * (earlier steps, or earlier tokens of this batch). Per head: scores q.k_p / sqrt(head_dim) in the
 * canonical order (dot_f32_f16), softmax with bn_expf and the canonical sum, and the output
 * sum_p (e_p / sum) * v_p accumulated in position order for each element. Two heads of a group share
 * each K and V load and its f16 conversion (ops->scores_f16s, ops->values_f16s). `scores` is the
 * calling thread's own [2][n_ctx] floats. No allocation, no I/O.
 */
#include "bn_impl.h"

#define BN_ATT_QS 512 /* the largest head_dim whose scaled query rows live on the stack */

/* softmax of row s[0..n) in place, then each weight times 2^112 (exact: weights are in [0, 1]) */
static void bn_softmax_2p112(const bn_ops *ops, float *s, uint32_t n) {
  float m = -__builtin_inff();
  for (uint32_t p = 0; p < n; p++) m = s[p] > m ? s[p] : m;
  ops->exp_sub(s, n, m);
  const float inv = 1.0f / ops->sum(s, n), k112 = bn_2p112();
  for (uint32_t p = 0; p < n; p++) s[p] = (s[p] * inv) * k112;
}

void bn_attention_heads(const bn_ctx *c, const bn_ops *ops, uint32_t layer, uint32_t t, uint32_t h0, uint32_t nh,
                        float *scores) {
  const bn_config *cfg = &c->config;
  const bn_state *s = &c->state;
  const uint32_t hd = cfg->head_dim, kvh = h0 / (cfg->n_heads / cfg->n_kv_heads), n_ctx = cfg->n_ctx;
  const uint32_t pos = (uint32_t)c->batch.pos[t], slot = (uint32_t)c->batch.slot[t], n = pos + 1;
  const size_t base = (((size_t)layer * cfg->n_slots + slot) * cfg->n_kv_heads + kvh) * n_ctx * hd;
  const uint16_t *kc = s->k_cache + base, *vc = s->v_cache + base;
  const float scale = 1.0f / __builtin_sqrtf((float)hd);
  float *sc[2] = { scores, scores + n_ctx };
  float *out[2];
  const float *q[2];
  for (uint32_t i = 0; i < nh; i++) {
    q[i] = s->q + (size_t)t * cfg->dim + (h0 + i) * hd;
    out[i] = s->att + (size_t)t * cfg->dim + (h0 + i) * hd;
  }

  /* q times 2^112 for the pre-scaled dots (the same scores as dot_f32_f16, faster), when it fits */
  float qs[2][BN_ATT_QS];
  int scaled = hd <= BN_ATT_QS;
  for (uint32_t i = 0; i < nh && scaled; i++) scaled = bn_scale_2p112(q[i], hd, qs[i]);
  if (scaled) {
    ops->scores_f16s(qs[0], nh > 1 ? qs[1] : 0, kc, hd, n, scale, sc[0], sc[1]);
  } else {
    for (uint32_t i = 0; i < nh; i++)
      for (uint32_t p = 0; p < n; p++) sc[i][p] = ops->dot_f32_f16(q[i], kc + (size_t)p * hd, hd) * scale;
  }
  for (uint32_t i = 0; i < nh; i++) bn_softmax_2p112(ops, sc[i], n);
  ops->values_f16s(sc[0], nh > 1 ? sc[1] : 0, vc, hd, n, out[0], nh > 1 ? out[1] : 0);
}
