/*
 * abi.c: the field offsets of bn_ctx by name, so TypeScript writes structs by name and a layout
 * change on either side is caught at start-up instead of corrupting memory.
 */
#include "bn_impl.h"

typedef struct {
  const char *name;
  uint32_t offset;
} bn_abi_field;

#define F(path) { #path, (uint32_t)__builtin_offsetof(bn_ctx, path) }

static const bn_abi_field bn_fields[] = {
  F(config.dim), F(config.n_layers), F(config.n_heads), F(config.n_kv_heads), F(config.head_dim),
  F(config.ffn_dim), F(config.n_vocab), F(config.n_ctx), F(config.n_slots), F(config.max_batch),
  F(config.max_out), F(config.act), F(config.embd_type), F(config.head_type), F(config.norm_eps),
  F(weights.token_embd), F(weights.output), F(weights.output_norm), F(weights.rope_cos), F(weights.rope_sin),
  F(weights.layers),
  F(state.x), F(state.xb), F(state.xq), F(state.xscale), F(state.xsum), F(state.q), F(state.att), F(state.hb),
  F(state.hb2), F(state.scores), F(state.hq), F(state.hscale), F(state.hsum), F(state.hxs), F(state.k_cache), F(state.v_cache),
  F(state.n_threads), F(state.prof),
  F(batch.n_tokens), F(batch.n_out), F(batch.tokens), F(batch.pos), F(batch.slot), F(batch.out_idx),
  F(batch.logits),
  F(mm.w), F(mm.rows), F(mm.cols), F(mm.n), F(mm.x), F(mm.y), F(mm.ydot),
  F(kernel), F(layout),
  F(pool.cmd_gen), F(pool.done_gen), F(pool.abort), F(pool.cmd), F(pool.status), F(pool.nth), F(pool.spin),
};

_Static_assert(sizeof(bn_layer) == 11 * 4, "bn_layer is 11 pointers");
_Static_assert(sizeof(bn_pool) % 64 == 0, "bn_pool keeps its words on separate lines");

/* [sizeof(bn_ctx), sizeof(bn_layer), n_fields, (name ptr, offset) * n_fields] */
const uint32_t *bn_abi_layout(void) {
  static uint32_t table[3 + 2 * (sizeof(bn_fields) / sizeof(bn_fields[0]))];
  const uint32_t n = sizeof(bn_fields) / sizeof(bn_fields[0]);
  table[0] = sizeof(bn_ctx);
  table[1] = sizeof(bn_layer);
  table[2] = n;
  for (uint32_t i = 0; i < n; i++) {
    table[3 + 2 * i] = (uint32_t)(uintptr_t)bn_fields[i].name;
    table[4 + 2 * i] = bn_fields[i].offset;
  }
  return table;
}

uint32_t bn_build_variant(void) { return BN_RELAXED ? BN_KERNEL_RELAXED : BN_KERNEL_SIMD128; }

static int bn_type_ok(uint32_t t) {
  return t == BN_TYPE_F32 || t == BN_TYPE_F16 || t == BN_TYPE_Q8_0 || t == BN_TYPE_Q7 || t == BN_TYPE_F16P;
}

int32_t bn_ctx_check(const bn_ctx *c) {
  const bn_config *g = &c->config;
  if (!g->dim || g->dim % 128 || !g->ffn_dim || g->ffn_dim % 128 || !g->head_dim || g->head_dim % 16 ||
      !g->n_kv_heads || g->n_heads % g->n_kv_heads || g->n_heads * g->head_dim != g->dim || !g->n_layers ||
      !g->n_vocab || !g->n_ctx || !g->n_slots || !g->max_batch || g->max_out > g->max_batch ||
      c->pool.nth < 1 || c->state.n_threads < (uint32_t)c->pool.nth || g->act > BN_ACT_SILU ||
      !bn_type_ok(g->embd_type) || !bn_type_ok(g->head_type) ||
      c->kernel > BN_KERNEL_RELAXED || (c->kernel != BN_KERNEL_REF && c->kernel != bn_build_variant()) ||
      c->layout > BN_LAYOUT_R16)
    return BN_STATUS_BAD_CONFIG;
  return BN_STATUS_OK;
}
