/*
 * bn.h: the public interface of the WASM module (everything TypeScript sees).
 *
 * Memory: one shared WebAssembly.Memory, laid out by TypeScript (engine/model/memory_plan.ts). The
 * module never allocates: TypeScript writes a bn_ctx (config, weight pointers, scratch pointers,
 * batch) into memory and passes its address. Every field is 4 bytes (wasm32 pointers, u32, f32)
 * so the TypeScript side can mirror the structs as flat u32 arrays; bn_abi_layout() returns the
 * field offsets so that mirror is checked at start-up.
 *
 * Threads: N workers instantiate this module over the same memory, each with its own stack, and
 * sit in bn_worker_loop(). The host (the HTTP isolate) posts a command by bumping
 * pool.cmd_gen; every worker runs it with {ith, nth}; thread 0 publishes pool.done_gen.
 */
#ifndef BN_H
#define BN_H

#include <stdint.h>

#define BN_EXPORT(name) __attribute__((export_name(#name), visibility("default")))

typedef enum {
  BN_STATUS_OK = 0,
  BN_STATUS_ABORTED = 1,   /* the abort word was set; the step's outputs are undefined */
  BN_STATUS_BAD_ARG = 2,   /* a batch field out of range (token, position, slot) */
  BN_STATUS_BAD_CONFIG = 3 /* the config cannot be run (shape or type not supported) */
} bn_status;

enum { BN_KERNEL_REF = 0, BN_KERNEL_SIMD128 = 1, BN_KERNEL_RELAXED = 2 };
/* how the ternary (I2_S) matrices are laid out in memory: rows regrouped in fours for the 128-bit
 * kernels (matmul_i2.c), or in sixteens for the kernels V8 fuses into 256-bit code (matmul_i2_r16.c) */
enum { BN_LAYOUT_R4 = 0, BN_LAYOUT_R16 = 1 };
enum { BN_ACT_RELU2 = 0, BN_ACT_SILU = 1 };
/* ggml type ids used for the embedding and LM head, plus this engine's layouts made at load:
 * BN_TYPE_Q7 (from F16): [n_vocab][dim] bytes w+64 for w in [-63, 63], then n_vocab*dim/32 f32
 * block scales (both with rows in fours: bn_impl.h, bn_q7_row_offset, bn_q7_scale_index);
 * BN_TYPE_F16P (from F16, exact): the F16 values with rows in fours, scaled by a power of two per
 * four, then one shift byte per four rows (bn_impl.h, bn_f16p_index) */
enum { BN_TYPE_F32 = 0, BN_TYPE_F16 = 1, BN_TYPE_Q8_0 = 8, BN_TYPE_Q7 = 200, BN_TYPE_F16P = 201 };
enum { BN_CMD_NONE = 0, BN_CMD_FORWARD = 1, BN_CMD_QUIT = 2, BN_CMD_MATMUL_TEST = 3, BN_CMD_SWEEP = 4 };

/* Parts of a forward step for the step profile (state.prof). Per thread the profile holds
 * BN_PROF_STRIDE doubles: [0] the step's first clock reading, [1] its last, [2] the last mark,
 * [3] the part being timed, then per part (ms of work, ms waiting in the barrier after it). The
 * clock is the host's env.bn_clock (ms since the epoch); the host zeroes the per-part sums after
 * each step, the kernels only add to them. */
enum {
  BN_PART_EMBED = 0,
  BN_PART_NORM = 1,      /* the four RMSNorms of each layer */
  BN_PART_QUANT = 2,     /* per-token int8 activation quantization */
  BN_PART_QKV = 3,       /* Q, K, V matmuls, RoPE, K/V into the f16 cache */
  BN_PART_ATTN = 4,      /* attention over the cache */
  BN_PART_WO = 5,
  BN_PART_GATE_UP = 6,
  BN_PART_ACT = 7,       /* act(gate) * up */
  BN_PART_DOWN = 8,
  BN_PART_HEAD_PREP = 9, /* final norm (and the head's activation blocks) */
  BN_PART_HEAD = 10,     /* LM head */
  BN_PART_COUNT = 11
};
#define BN_PROF_STRIDE (4 + 2 * BN_PART_COUNT)

/* Model shape. dim, ffn_dim multiples of 128 (I2_S blocks); head_dim multiple of 16. */
typedef struct {
  uint32_t dim;        /* residual width (2560) */
  uint32_t n_layers;   /* 30 */
  uint32_t n_heads;    /* 20 */
  uint32_t n_kv_heads; /* 5 */
  uint32_t head_dim;   /* 128 */
  uint32_t ffn_dim;    /* 6912 */
  uint32_t n_vocab;    /* 128256 */
  uint32_t n_ctx;      /* positions per slot */
  uint32_t n_slots;    /* sequences with their own KV cache */
  uint32_t max_batch;  /* tokens per forward step */
  uint32_t max_out;    /* logits rows per forward step */
  uint32_t act;        /* BN_ACT_* */
  uint32_t embd_type;  /* BN_TYPE_* of token_embd */
  uint32_t head_type;  /* BN_TYPE_* of the LM head */
  float norm_eps;
} bn_config;

/* One transformer block. Ternary weights are I2_S blobs: rows*cols/4 code bytes, then an f32 scale. */
typedef struct {
  const float *attn_norm;     /* [dim] */
  const float *attn_sub_norm; /* [dim] */
  const float *ffn_norm;      /* [dim] */
  const float *ffn_sub_norm;  /* [ffn_dim] */
  const uint8_t *wq;          /* [dim][dim] */
  const uint8_t *wk;          /* [kv_dim][dim] */
  const uint8_t *wv;          /* [kv_dim][dim] */
  const uint8_t *wo;          /* [dim][dim] */
  const uint8_t *w_gate;      /* [ffn_dim][dim] */
  const uint8_t *w_up;        /* [ffn_dim][dim] */
  const uint8_t *w_down;      /* [dim][ffn_dim] */
} bn_layer;

typedef struct {
  const void *token_embd;    /* [n_vocab][dim] of embd_type */
  const void *output;        /* [n_vocab][dim] of head_type (== token_embd when tied) */
  const float *output_norm;  /* [dim] */
  const float *rope_cos;     /* [n_ctx][head_dim/2] */
  const float *rope_sin;     /* [n_ctx][head_dim/2] */
  const bn_layer *layers;    /* [n_layers] */
} bn_weights;

/* Scratch and caches, sized for max_batch tokens / max_out logits rows / nth threads. */
typedef struct {
  float *x;        /* [max_batch][dim] residual stream */
  float *xb;       /* [max_batch][max(dim, ffn_dim)] normed activations */
  int8_t *xq;      /* [max_batch][max(dim, ffn_dim)] int8 activations */
  float *xscale;   /* [max_batch] 127 / absmax */
  int32_t *xsum;   /* [max_batch] sum of xq row */
  float *q;        /* [max_batch][dim] queries after RoPE */
  float *att;      /* [max_batch][dim] attention output */
  float *hb;       /* [max_batch][ffn_dim] gate, then the FFN hidden state */
  float *hb2;      /* [max_batch][ffn_dim] up */
  float *scores;   /* [n_threads][2][n_ctx] attention probabilities, two rows per thread */
  int8_t *hq;      /* [max_out][dim] LM head activations (Q8_0 head only) */
  float *hscale;   /* [max_out][dim/32] LM head activation block scales */
  int32_t *hsum;   /* [max_out][dim/32][4] {-64 * sum of each activation block, 0, 0, 0} (Q7 head offset) */
  float *hxs;      /* [max_out][2 * dim + 4] F16P head activations: x * 2^102, x * 2^112, then 1 when they
                    * are exact (every |x| < 2^16), else 0 (head_f16.c) */
  uint16_t *k_cache; /* [n_layers][n_slots][n_kv_heads][n_ctx][head_dim] f16 */
  uint16_t *v_cache; /* same */
  uint32_t n_threads; /* rows of `scores` */
  double *prof;       /* [n_threads][BN_PROF_STRIDE] step profile, or 0 (off) */
} bn_state;

/* One forward step: n tokens (any mix of sequences), logits for n_out of them. */
typedef struct {
  uint32_t n_tokens;
  uint32_t n_out;
  const int32_t *tokens;  /* [n_tokens] */
  const int32_t *pos;     /* [n_tokens] position within its slot */
  const int32_t *slot;    /* [n_tokens] KV cache slot */
  const int32_t *out_idx; /* [n_out] batch rows whose logits are wanted, ascending */
  float *logits;          /* [n_out][n_vocab] */
} bn_batch;

/* Test and benchmark commands. MATMUL_TEST: Y[n][m] = W . X[n] on an I2_S matrix (checks kernels
 * against _ref). SWEEP: every thread reads its share of rows*cols bytes at w (memory bandwidth);
 * ydot[ith] gets a checksum so the reads cannot be optimized away. */
typedef struct {
  const uint8_t *w;
  uint32_t rows, cols, n;
  const float *x; /* [n][cols] */
  float *y;       /* [n][rows] */
  int32_t *ydot;  /* [n][rows] raw integer dots (code . q) */
} bn_matmul_test;

/* Synchronisation words, each on its own 64-byte line. */
typedef struct {
  int32_t cmd_gen;  int32_t pad0[15];
  int32_t done_gen; int32_t pad1[15];
  int32_t abort;    int32_t pad2[15];
  int32_t bar_count; int32_t pad3[15];
  int32_t bar_gen;  int32_t pad4[15];
  int32_t bar_sleepers; int32_t pad5[15];
  int32_t cmd;
  int32_t status;
  int32_t nth;
  int32_t spin;     /* barrier spin iterations before sleeping */
  int32_t abort_latch[2]; /* the abort word as thread 0 saw it, per layer parity */
  int32_t pad6[10];
} bn_pool;

typedef struct {
  bn_config config;
  bn_weights weights;
  bn_state state;
  bn_batch batch;
  bn_matmul_test mm;
  uint32_t kernel; /* BN_KERNEL_* */
  uint32_t layout; /* BN_LAYOUT_* of every ternary matrix */
  bn_pool pool;
} bn_ctx;

/* exports */
BN_EXPORT(bn_abi_layout) const uint32_t *bn_abi_layout(void);
BN_EXPORT(bn_build_variant) uint32_t bn_build_variant(void);
BN_EXPORT(bn_ctx_check) int32_t bn_ctx_check(const bn_ctx *ctx);
BN_EXPORT(bn_worker_loop) int32_t bn_worker_loop(bn_ctx *ctx, int32_t ith);
BN_EXPORT(bn_repack_tq2_0) int32_t bn_repack_tq2_0(const uint8_t *src, uint8_t *dst, uint32_t n, float *scale);
BN_EXPORT(bn_repack_tq1_0) int32_t bn_repack_tq1_0(const uint8_t *src, uint8_t *dst, uint32_t n, float *scale);
BN_EXPORT(bn_i2s_check) int32_t bn_i2s_check(const uint8_t *w, uint32_t n);
BN_EXPORT(bn_i2s_interleave)
void bn_i2s_interleave(uint8_t *w, uint32_t rows, uint32_t cols, uint8_t *tmp, uint32_t layout);
BN_EXPORT(bn_i2s_place)
void bn_i2s_place(const uint8_t *src, uint8_t *dst, uint32_t rows, uint32_t cols, uint32_t nbytes, uint32_t layout);
/* timing probe: `reps` passes of the (kernel, layout) ternary dot over a [rows][cols] matrix at w
 * with n int8 rows at q (ld cols), in the forward pass's 16-row tiles; dots [n][rows] */
BN_EXPORT(bn_probe_i2)
int32_t bn_probe_i2(uint32_t kernel, uint32_t layout, const uint8_t *w, uint32_t rows, uint32_t cols, const int8_t *q,
                    uint32_t n, int32_t *dots, uint32_t reps);
BN_EXPORT(bn_quantize_q8_0_f16) void bn_quantize_q8_0_f16(const uint16_t *src, uint8_t *dst, uint32_t n);
BN_EXPORT(bn_quantize_q7_f16)
void bn_quantize_q7_f16(const uint16_t *src, uint8_t *dst_w, float *dst_s, uint32_t row0, uint32_t rows, uint32_t dim,
                        uint32_t nv);
/* rows [row0, row0 + rows) of an F16 [nv][dim] matrix (src: those rows; whole groups of four: row0
 * and, unless they end the matrix, rows multiples of 4) into the F16P layout of the whole matrix at
 * dst (bn_impl.h, bn_f16p_index); the values must be finite. BN_STATUS_BAD_ARG for a range that
 * splits a group. */
BN_EXPORT(bn_f16p_place)
int32_t bn_f16p_place(const uint16_t *src, uint16_t *dst, uint32_t row0, uint32_t rows, uint32_t dim, uint32_t nv);
/* test probe: ops(kernel)->dot_f32_f16(a, b, n), or ->dot_f32_f16s when prescaled */
BN_EXPORT(bn_dot_f32_f16_probe)
float bn_dot_f32_f16_probe(uint32_t kernel, const float *a, const uint16_t *b, uint32_t n, int32_t prescaled);
BN_EXPORT(bn_f16_check) int32_t bn_f16_check(const uint16_t *src, uint32_t n);
/* test probes (probe.c): single ops of the `kernel` variant. head_f16p: logits[v0, v1) of an F16P
 * matrix against x (hxs: 2*dim+4 floats of scratch); attention: scores (times `scale`) then values
 * of one head (qs1 == 0) or two, queries given times 2^112, the scores turned into the values'
 * weights as they are (the caller picks values in range); rmsnorm: y = rmsnorm(x) * w */
BN_EXPORT(bn_head_f16p_probe)
void bn_head_f16p_probe(uint32_t kernel, const uint16_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *x,
                        float *hxs, float *logits, uint32_t nv);
BN_EXPORT(bn_embed_f16p_probe) void bn_embed_f16p_probe(const uint16_t *w, uint32_t nv, uint32_t dim, uint32_t v, float *out);
BN_EXPORT(bn_attention_probe)
void bn_attention_probe(uint32_t kernel, const float *qs0, const float *qs1, const uint16_t *k, const uint16_t *v,
                        uint32_t hd, uint32_t n, float scale, float *s0, float *s1, float *o0, float *o1);
BN_EXPORT(bn_rmsnorm_probe) void bn_rmsnorm_probe(uint32_t kernel, float *y, const float *x, const float *w, uint32_t n, float eps);
/* logits [v0, v1) of a Q7 matrix (bn_quantize_q7_f16's layout at w) against the activation row y
 * (quantized into q, qs, qsum: dim, dim/32 and dim/8 words of scratch) */
BN_EXPORT(bn_head_q7_probe)
void bn_head_q7_probe(uint32_t kernel, const uint8_t *w, uint32_t dim, uint32_t v0, uint32_t v1, const float *y,
                      int8_t *q, float *qs, int32_t *qsum, float *logits, uint32_t nv);
/* BN_PROF_STRIDE: doubles per thread in state.prof (the host checks its copy of the part list) */
BN_EXPORT(bn_prof_stride) uint32_t bn_prof_stride(void);

#endif
