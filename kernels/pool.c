/*
 * pool.c: the worker loop and the barrier (ggml style: every worker runs the same pass with
 * {ith, nth} and crosses a generation-counting barrier between dependent steps).
 *
 * Waiting: spin `pool.spin` polls, then sleep in memory.atomic.wait32. The last thread through a
 * barrier notifies only when somebody sleeps. Workers never return to JavaScript between
 * commands; BN_CMD_QUIT ends the loop. No allocation, no I/O.
 */
#include "bn_impl.h"

#define BN_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define BN_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define BN_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

static void bn_wait_change(int32_t *word, int32_t seen, int32_t spin, int32_t *sleepers) {
  for (int32_t i = 0; i < spin; i++)
    if (BN_LOAD(word) != seen) return;
  if (sleepers) BN_ADD(sleepers, 1);
  while (BN_LOAD(word) == seen) __builtin_wasm_memory_atomic_wait32(word, seen, -1);
  if (sleepers) BN_ADD(sleepers, -1);
}

void bn_barrier(bn_pool *p, int nth) {
  if (nth <= 1) return;
  const int32_t gen = BN_LOAD(&p->bar_gen);
  if (BN_ADD(&p->bar_count, 1) == nth) {
    BN_STORE(&p->bar_count, 0);
    BN_ADD(&p->bar_gen, 1);
    if (BN_LOAD(&p->bar_sleepers) > 0) __builtin_wasm_memory_atomic_notify(&p->bar_gen, 0x7fffffff);
    return;
  }
  bn_wait_change(&p->bar_gen, gen, p->spin, &p->bar_sleepers);
}

/* test command: y = W . x for the rows of mm, rows split across threads */
static int32_t bn_matmul_test_run(bn_ctx *c, const bn_ops *ops, int ith, int nth) {
  bn_matmul_test *mm = &c->mm;
  if (mm->cols % 128 || mm->n > c->config.max_batch || mm->cols > BN_MAX(c->config.dim, c->config.ffn_dim))
    return BN_STATUS_BAD_ARG;
  bn_state *s = &c->state;
  const uint32_t ld = BN_MAX(c->config.dim, c->config.ffn_dim);
  if (ith == 0)
    for (uint32_t t = 0; t < mm->n; t++)
      ops->quantize_i8(mm->x + (size_t)t * mm->cols, mm->cols, s->xq + (size_t)t * ld, s->xscale + t, s->xsum + t);
  bn_barrier(&c->pool, nth);
  const bn_qrows x = { s->xq, s->xscale, s->xsum, ld, mm->n, 3 };
  float beta;
  __builtin_memcpy(&beta, mm->w + (size_t)mm->rows * mm->cols / 4, 4);
  uint32_t m0, m1;
  bn_split(mm->rows, ith, nth, 1, &m0, &m1);
  if (m1 > m0) {
    bn_dot_i2_select(c->kernel, c->layout)(mm->w, mm->rows, mm->cols, m0, m1, &x, mm->ydot + m0, mm->rows);
    for (uint32_t t = 0; t < mm->n; t++)
      for (uint32_t m = m0; m < m1; m++) {
        const int32_t d = mm->ydot[(size_t)t * mm->rows + m] - s->xsum[t];
        mm->y[(size_t)t * mm->rows + m] = ((float)d / s->xscale[t]) * beta;
      }
  }
  return BN_STATUS_OK;
}

/* bandwidth probe: stream this thread's share of the region with 16-byte loads */
static int32_t bn_sweep_run(bn_ctx *c, int ith, int nth) {
  const uint32_t bytes = c->mm.rows * c->mm.cols;
  uint32_t lo, hi;
  bn_split(bytes / 64, ith, nth, 1, &lo, &hi);
  v128_t a0 = wasm_i32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
  for (const uint8_t *p = c->mm.w + (size_t)lo * 64, *e = c->mm.w + (size_t)hi * 64; p < e; p += 64) {
    a0 = wasm_v128_xor(a0, wasm_v128_load(p));
    a1 = wasm_v128_xor(a1, wasm_v128_load(p + 16));
    a2 = wasm_v128_xor(a2, wasm_v128_load(p + 32));
    a3 = wasm_v128_xor(a3, wasm_v128_load(p + 48));
  }
  const v128_t a = wasm_v128_xor(wasm_v128_xor(a0, a1), wasm_v128_xor(a2, a3));
  c->mm.ydot[ith] = wasm_i32x4_extract_lane(a, 0) ^ wasm_i32x4_extract_lane(a, 3);
  return BN_STATUS_OK;
}

int32_t bn_worker_loop(bn_ctx *ctx, int32_t ith) {
  bn_pool *p = &ctx->pool;
  const bn_ops *ops = bn_ops_select(ctx->kernel);
  int32_t seen = 0;
  for (;;) {
    bn_wait_change(&p->cmd_gen, seen, p->spin, 0);
    seen = BN_LOAD(&p->cmd_gen);
    const int32_t cmd = p->cmd, nth = p->nth;
    if (cmd == BN_CMD_QUIT) return 0;
    int32_t status = BN_STATUS_BAD_ARG;
    if (cmd == BN_CMD_FORWARD) status = bn_forward(ctx, ops, ith, nth);
    else if (cmd == BN_CMD_MATMUL_TEST) status = bn_matmul_test_run(ctx, ops, ith, nth);
    else if (cmd == BN_CMD_SWEEP) status = bn_sweep_run(ctx, ith, nth);
    bn_barrier(p, nth);
    if (ith == 0) {
      p->status = status;
      BN_STORE(&p->done_gen, seen);
      __builtin_wasm_memory_atomic_notify(&p->done_gen, 0x7fffffff);
    }
  }
}
