/*
 * probe.c: test probes of single ops (tests/kernels/), each on the op table of the given kernel
 * variant (BN_KERNEL_*), so every variant is checked against the scalar _ref twins. Not used by the
 * forward pass. No allocation, no I/O.
 */
#include "bn_impl.h"

void bn_head_f16p_probe(uint32_t kernel, const uint16_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *x,
                        float *hxs, float *logits, uint32_t nv) {
  bn_f16p_prepare(x, dim, hxs);
  bn_ops_select(kernel)->head_f16p(w, dim, v0, v1, x, hxs[2 * dim] != 0.0f ? hxs : 0, logits, nv);
}

void bn_embed_f16p_probe(const uint16_t *w, uint32_t nv, uint32_t dim, uint32_t v, float *out) {
  bn_embed_f16p(w, nv, dim, v, out);
}

void bn_attention_probe(uint32_t kernel, const float *qs0, const float *qs1, const uint16_t *k, const uint16_t *v,
                        uint32_t hd, uint32_t n, float scale, float *s0, float *s1, float *o0, float *o1) {
  const bn_ops *ops = bn_ops_select(kernel);
  ops->scores_f16s(qs0, qs1, k, hd, n, scale, s0, s1);
  ops->values_f16s(s0, qs1 ? s1 : 0, v, hd, n, o0, qs1 ? o1 : 0);
}

void bn_rmsnorm_probe(uint32_t kernel, float *y, const float *x, const float *w, uint32_t n, float eps) {
  bn_ops_select(kernel)->rmsnorm(y, x, w, n, eps);
}

void bn_head_q7_probe(uint32_t kernel, const uint8_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *y,
                      int8_t *q, float *qs, int32_t *qsum, float *logits, uint32_t nv) {
  bn_head_blocks(y, dim, q, qs, qsum);
  const float *dw = (const float *)(w + (size_t)nv * dim);
  bn_ops_select(kernel)->head_q7(w, dw, dim, v0, v1, q, qs, qsum, 1, logits, nv);
}
