/*
 * forward.c: one forward step of a BitNet b1.58 model over a batch of tokens from any mix of
 * sequences (prefill chunks and decode tokens alike), run by every worker with {ith, nth}.
 *
 * Per layer (spec §2.1), one barrier after each step:
 *   norm+quant -> Q,K,V (+RoPE, K/V into the f16 cache) -> attention -> sub-norm+quant -> x += O
 *   -> norm+quant -> gate, up -> relu^2(gate)*up, sub-norm, quant -> x += down
 * then the final norm of the rows that want logits, and the LM head.
 * Work is split by rows (matmuls), by heads (Q/K/V, attention) or by tokens (norms); every
 * output element is computed by exactly one thread in a fixed order, so results do not depend on
 * the thread count. No allocation, no I/O.
 */
#include "bn_impl.h"

#define BN_ROW_TILE 16 /* rows per dot call */
#define BN_TOK_TILE 32 /* activation rows per dot call */

static inline float bn_i2s_scale(const uint8_t *w, uint32_t rows, uint32_t cols) {
  float beta;
  __builtin_memcpy(&beta, w + (size_t)rows * cols / 4, 4);
  return beta;
}

/* y[t][m] (=|+=) ((dot - sum_t) / scale_t) * beta for rows [m0, m1) of W, every activation row t */
static void bn_matmul_rows(bn_dot_i2_fn dot, const uint8_t *w, uint32_t rows, uint32_t cols, uint32_t m0,
                           uint32_t m1, const bn_qrows *x, float *y, uint32_t ldy, int accumulate) {
  const float beta = bn_i2s_scale(w, rows, cols);
  int32_t dots[BN_TOK_TILE * BN_ROW_TILE];
  for (uint32_t mb = m0; mb < m1; mb += BN_ROW_TILE) {
    const uint32_t me = BN_MIN(mb + BN_ROW_TILE, m1);
    for (uint32_t t0 = 0; t0 < x->n; t0 += BN_TOK_TILE) {
      const uint32_t nt = BN_MIN(BN_TOK_TILE, x->n - t0);
      const bn_qrows xs = { x->q + (size_t)t0 * x->ld, x->scale + t0, x->sum + t0, x->ld, nt, x->mask3 };
      dot(w, rows, cols, mb, me, &xs, dots, BN_ROW_TILE);
      for (uint32_t t = 0; t < nt; t++) {
        float *yr = y + (size_t)(t0 + t) * ldy;
        for (uint32_t m = mb; m < me; m++) {
          const float v = ((float)(dots[t * BN_ROW_TILE + (m - mb)] - xs.sum[t]) / xs.scale[t]) * beta;
          yr[m] = accumulate ? yr[m] + v : v;
        }
      }
    }
  }
}

/* NEOX RoPE on one head vector: pairs (i, i + half) */
static void bn_rope(float *v, uint32_t head_dim, const float *cosr, const float *sinr) {
  const uint32_t half = head_dim / 2;
  for (uint32_t i = 0; i < half; i++) {
    const float a = v[i], b = v[i + half];
    v[i] = a * cosr[i] - b * sinr[i];
    v[i + half] = a * sinr[i] + b * cosr[i];
  }
}

static int32_t bn_batch_valid(const bn_ctx *c) {
  const bn_config *cfg = &c->config;
  const bn_batch *b = &c->batch;
  if (b->n_tokens == 0 || b->n_tokens > cfg->max_batch || b->n_out > cfg->max_out) return 0;
  for (uint32_t t = 0; t < b->n_tokens; t++)
    if (b->tokens[t] < 0 || (uint32_t)b->tokens[t] >= cfg->n_vocab || b->pos[t] < 0 ||
        (uint32_t)b->pos[t] >= cfg->n_ctx || b->slot[t] < 0 || (uint32_t)b->slot[t] >= cfg->n_slots)
      return 0;
  for (uint32_t j = 0; j < b->n_out; j++)
    if (b->out_idx[j] < 0 || (uint32_t)b->out_idx[j] >= b->n_tokens) return 0;
  return 1;
}

/* xb = rmsnorm(src) and its int8 quantization, for the tokens of this thread */
static void bn_norm_quant(const bn_ctx *c, const bn_ops *ops, const float *src, uint32_t ld_src, const float *w,
                          uint32_t n, int ith, int nth) {
  const bn_state *s = &c->state;
  const uint32_t ld = BN_MAX(c->config.dim, c->config.ffn_dim);
  uint32_t t0, t1;
  bn_split(c->batch.n_tokens, ith, nth, 1, &t0, &t1);
  for (uint32_t t = t0; t < t1; t++) {
    float *xb = s->xb + (size_t)t * ld;
    bn_prof_mark(c, ith, BN_PART_NORM);
    ops->rmsnorm(xb, src + (size_t)t * ld_src, w, n, c->config.norm_eps);
    bn_prof_mark(c, ith, BN_PART_QUANT);
    ops->quantize_i8(xb, n, s->xq + (size_t)t * ld, s->xscale + t, s->xsum + t);
  }
}

/* Q, K, V for one head-sized block of rows: unit u < n_heads is a query head, then K heads, then V heads */
static void bn_qkv_unit(const bn_ctx *c, bn_dot_i2_fn dot, const bn_layer *L, uint32_t l, uint32_t u,
                        const bn_qrows *x) {
  const bn_config *cfg = &c->config;
  const bn_state *s = &c->state;
  const bn_batch *b = &c->batch;
  const uint32_t hd = cfg->head_dim, kv_dim = cfg->n_kv_heads * hd, half = hd / 2;
  if (u < cfg->n_heads) {
    bn_matmul_rows(dot, L->wq, cfg->dim, cfg->dim, u * hd, (u + 1) * hd, x, s->q, cfg->dim, 0);
    for (uint32_t t = 0; t < b->n_tokens; t++) {
      const size_t r = (size_t)b->pos[t] * half;
      bn_rope(s->q + (size_t)t * cfg->dim + u * hd, hd, c->weights.rope_cos + r, c->weights.rope_sin + r);
    }
    return;
  }
  const int is_k = u < cfg->n_heads + cfg->n_kv_heads;
  const uint32_t kvh = u - cfg->n_heads - (is_k ? 0 : cfg->n_kv_heads);
  float *tmp = is_k ? s->att : s->hb; /* free until the attention step */
  bn_matmul_rows(dot, is_k ? L->wk : L->wv, kv_dim, cfg->dim, kvh * hd, (kvh + 1) * hd, x, tmp, cfg->dim, 0);
  uint16_t *cache = is_k ? s->k_cache : s->v_cache;
  for (uint32_t t = 0; t < b->n_tokens; t++) {
    float *v = tmp + (size_t)t * cfg->dim + kvh * hd;
    if (is_k) {
      const size_t r = (size_t)b->pos[t] * half;
      bn_rope(v, hd, c->weights.rope_cos + r, c->weights.rope_sin + r);
    }
    uint16_t *dst = cache + ((((size_t)l * cfg->n_slots + (uint32_t)b->slot[t]) * cfg->n_kv_heads + kvh) * cfg->n_ctx +
                             (uint32_t)b->pos[t]) * hd;
    for (uint32_t i = 0; i < hd; i++) dst[i] = bn_f32_to_f16(v[i]);
  }
}

int32_t bn_forward(bn_ctx *c, const bn_ops *ops, int ith, int nth) {
  const bn_config *cfg = &c->config;
  const bn_state *s = &c->state;
  const bn_batch *b = &c->batch;
  if (!bn_batch_valid(c)) return BN_STATUS_BAD_ARG;
  const uint32_t dim = cfg->dim, ffn = cfg->ffn_dim, n = b->n_tokens, ld = BN_MAX(dim, ffn);
  const bn_qrows xq = { s->xq, s->xscale, s->xsum, ld, n, 3 };
  const bn_dot_i2_fn dot = bn_dot_i2_select(c->kernel, c->layout);
  uint32_t lo, hi;

  /* embeddings */
  bn_prof_begin(c, ith, BN_PART_EMBED);
  bn_split(n, ith, nth, 1, &lo, &hi);
  for (uint32_t t = lo; t < hi; t++) bn_embed_row(cfg, c->weights.token_embd, (uint32_t)b->tokens[t], s->x + (size_t)t * dim);
  bn_sync(c, ith, nth, BN_PART_NORM);

  for (uint32_t l = 0; l < cfg->n_layers; l++) {
    const bn_layer *L = &c->weights.layers[l];
    /* h = rmsnorm(x; attn_norm), quantized; thread 0 latches the abort word for this layer */
    if (ith == 0) c->pool.abort_latch[l & 1] = __atomic_load_n(&c->pool.abort, __ATOMIC_SEQ_CST);
    bn_norm_quant(c, ops, s->x, dim, L->attn_norm, dim, ith, nth);
    bn_sync(c, ith, nth, BN_PART_QKV);
    if (c->pool.abort_latch[l & 1]) return BN_STATUS_ABORTED;

    /* q, k, v (+ RoPE; k and v go to the cache as f16) */
    bn_prof_mark(c, ith, BN_PART_QKV);
    bn_split(cfg->n_heads + 2 * cfg->n_kv_heads, ith, nth, 1, &lo, &hi);
    for (uint32_t u = lo; u < hi; u++) bn_qkv_unit(c, dot, L, l, u, &xq);
    bn_sync(c, ith, nth, BN_PART_ATTN);

    /* causal GQA attention: units of (token, two query heads of one KV group), dealt round-robin so
     * that the long and the short ones of a prefill spread evenly */
    bn_prof_mark(c, ith, BN_PART_ATTN);
    {
      const uint32_t group = cfg->n_heads / cfg->n_kv_heads, per_group = (group + 1) / 2;
      const uint32_t units = n * cfg->n_kv_heads * per_group;
      for (uint32_t u = (uint32_t)ith; u < units; u += (uint32_t)nth) {
        const uint32_t t = u / (cfg->n_kv_heads * per_group), r = u % (cfg->n_kv_heads * per_group);
        const uint32_t h0 = (r / per_group) * group + 2 * (r % per_group);
        bn_attention_heads(c, ops, l, t, h0, BN_MIN(2, group - 2 * (r % per_group)),
                           s->scores + (size_t)ith * 2 * cfg->n_ctx);
      }
    }
    bn_sync(c, ith, nth, BN_PART_NORM);

    /* a = rmsnorm(attention; attn_sub_norm), quantized; x += O . a */
    bn_norm_quant(c, ops, s->att, dim, L->attn_sub_norm, dim, ith, nth);
    bn_sync(c, ith, nth, BN_PART_WO);
    bn_prof_mark(c, ith, BN_PART_WO);
    bn_split(dim, ith, nth, BN_ROW_TILE, &lo, &hi);
    bn_matmul_rows(dot, L->wo, dim, dim, lo, hi, &xq, s->x, dim, 1);
    bn_sync(c, ith, nth, BN_PART_NORM);

    /* h = rmsnorm(x; ffn_norm), quantized; gate and up */
    bn_norm_quant(c, ops, s->x, dim, L->ffn_norm, dim, ith, nth);
    bn_sync(c, ith, nth, BN_PART_GATE_UP);
    bn_prof_mark(c, ith, BN_PART_GATE_UP);
    bn_split(2 * ffn, ith, nth, BN_ROW_TILE, &lo, &hi);
    if (lo < ffn) bn_matmul_rows(dot, L->w_gate, ffn, dim, lo, BN_MIN(hi, ffn), &xq, s->hb, ffn, 0);
    if (hi > ffn) bn_matmul_rows(dot, L->w_up, ffn, dim, BN_MAX(lo, ffn) - ffn, hi - ffn, &xq, s->hb2, ffn, 0);
    bn_sync(c, ith, nth, BN_PART_ACT);

    /* f = act(gate) * up; rmsnorm(f; ffn_sub_norm), quantized */
    bn_split(n, ith, nth, 1, &lo, &hi);
    for (uint32_t t = lo; t < hi; t++) {
      bn_prof_mark(c, ith, BN_PART_ACT);
      float *g = s->hb + (size_t)t * ffn;
      const float *u = s->hb2 + (size_t)t * ffn;
      if (cfg->act == BN_ACT_RELU2) {
        for (uint32_t i = 0; i < ffn; i++) {
          const float r = g[i] > 0.0f ? g[i] : 0.0f;
          g[i] = (r * r) * u[i];
        }
      } else {
        for (uint32_t i = 0; i < ffn; i++) g[i] = (g[i] / (1.0f + bn_expf(-g[i]))) * u[i];
      }
      float *xb = s->xb + (size_t)t * ld;
      bn_prof_mark(c, ith, BN_PART_NORM);
      ops->rmsnorm(xb, g, L->ffn_sub_norm, ffn, cfg->norm_eps);
      bn_prof_mark(c, ith, BN_PART_QUANT);
      ops->quantize_i8(xb, ffn, s->xq + (size_t)t * ld, s->xscale + t, s->xsum + t);
    }
    bn_sync(c, ith, nth, BN_PART_DOWN);

    /* x += down . f */
    bn_prof_mark(c, ith, BN_PART_DOWN);
    bn_split(dim, ith, nth, BN_ROW_TILE, &lo, &hi);
    bn_matmul_rows(dot, L->w_down, dim, ffn, lo, hi, &xq, s->x, dim, 1);
    bn_sync(c, ith, nth, BN_PART_NORM);
  }

  /* final norm of the rows that want logits, then the LM head over vocabulary rows */
  bn_prof_mark(c, ith, BN_PART_HEAD_PREP);
  bn_split(b->n_out, ith, nth, 1, &lo, &hi);
  for (uint32_t j = lo; j < hi; j++) bn_head_prepare(c, ops, j);
  bn_sync(c, ith, nth, BN_PART_HEAD);
  bn_prof_mark(c, ith, BN_PART_HEAD);
  bn_split(cfg->n_vocab, ith, nth, 64, &lo, &hi);
  bn_head_rows(c, ops, lo, hi);
  bn_prof_end(c, ith);
  return BN_STATUS_OK;
}
