"""BitNet b1.58 2B4T architecture at small scale, with the numerics the engine runs (spec §2).

Shared by train.py (quantization-aware training: fake-quant + straight-through estimator) and
reference.py (evaluation of the exported ternary weights, which it loads into the same module).

    x = E[tok]
    per layer:  h = RMSNorm(x; attn_norm); q,k,v = BitLinear(h); NEOX RoPE on q,k;
                a = causal GQA attention, scale 1/sqrt(head_dim); a = RMSNorm(a; attn_sub_norm)
                x += BitLinear_o(a)
                h = RMSNorm(x; ffn_norm); f = relu(BitLinear_gate(h))^2 * BitLinear_up(h)
                f = RMSNorm(f; ffn_sub_norm); x += BitLinear_down(f)
    logits = RMSNorm(x; output_norm) @ E^T          (tied, E is not quantized)

BitLinear: activations per token s = 127/max(max|x|, 1e-5), q = clamp(round(x*s), -128, 127)
(round half to even); weights per tensor beta = max(mean|W|, 1e-5), t = clamp(round(W/beta), -1, 1);
y = (q/s) @ (t*beta)^T. No biases anywhere.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab: int = 4096
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn: int = 768
    ctx: int = 256
    rope_base: float = 10000.0
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self):
        return asdict(self)


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [K, M] (feature-major: one column per token), w [N, K] -> [N, M].

    Written as a 1-wide convolution so that it runs on oneDNN: Debian's python3-torch links the
    reference (netlib) BLAS, which makes F.linear/bmm ~25x slower than oneDNN's convolutions.
    """
    return F.conv1d(x.unsqueeze(0), w.unsqueeze(-1))[0]


def act_quant(x: torch.Tensor) -> torch.Tensor:
    """Per-token int8 absmax fake quantization (values q/s); tokens are columns of x [K, M]."""
    s = 127.0 / x.abs().amax(dim=0, keepdim=True).clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127) / s


def weight_trits(w: torch.Tensor):
    """Ternary codes t in {-1,0,1} (same dtype as w) and the per-tensor absmean scale beta."""
    beta = w.abs().mean().clamp(min=1e-5)
    return (w / beta).round().clamp(-1, 1), beta


class BitLinear(nn.Module):
    """y = actquant(x) @ (t*beta)^T with straight-through gradients to the latent weight.

    When `frozen` holds (trits, beta) the layer computes with those instead (reference evaluation).
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.frozen = None

    def forward(self, x):
        if self.frozen is not None:
            t, beta = self.frozen
            return linear(act_quant(x), t) * beta
        xq = x + (act_quant(x) - x).detach()
        t, beta = weight_trits(self.weight)
        w = self.weight + (t * beta - self.weight).detach()
        return linear(xq, w)


class RMSNorm(nn.Module):
    """Over the feature dimension (dim 0 of [K, M])."""

    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return self.weight[:, None] * (x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + self.eps))


def rope_tables(cfg: Config, n: int):
    """cos, sin [half, n] of angle pos * base^(-2i/head_dim), computed in float64."""
    half = cfg.head_dim // 2
    inv = 1.0 / (cfg.rope_base ** (torch.arange(0, half, dtype=torch.float64) * 2.0 / cfg.head_dim))
    ang = inv[:, None] * torch.arange(n, dtype=torch.float64)[None, :]
    return ang.cos().float(), ang.sin().float()


def rope_neox(x, cos, sin):
    """x [H, D, B, T]; pairs (i, i + D/2) rotated; cos/sin [D/2, T]."""
    half = x.shape[1] // 2
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    x1, x2 = x[:, :half], x[:, half:]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=1)


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.kv_f16 = False  # reference evaluation sets it to match the engine's f16 KV cache
        kv = cfg.n_kv_heads * cfg.head_dim
        self.attn_norm = RMSNorm(cfg.dim, cfg.eps)
        self.attn_q = BitLinear(cfg.dim, cfg.dim)
        self.attn_k = BitLinear(cfg.dim, kv)
        self.attn_v = BitLinear(cfg.dim, kv)
        self.attn_sub_norm = RMSNorm(cfg.dim, cfg.eps)
        self.attn_output = BitLinear(cfg.dim, cfg.dim)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.eps)
        self.ffn_gate = BitLinear(cfg.dim, cfg.ffn)
        self.ffn_up = BitLinear(cfg.dim, cfg.ffn)
        self.ffn_sub_norm = RMSNorm(cfg.ffn, cfg.eps)
        self.ffn_down = BitLinear(cfg.ffn, cfg.dim)

    def attention(self, h, B, T, cos, sin, mask):
        """Causal GQA attention of h [dim, B*T] -> [dim, B*T]; query head j uses KV head j // g.

        Both products are grouped 1-wide convolutions (one group per (sequence, head)), again to
        stay on oneDNN: scores S[g, j, t] = k_j . q_t, out[g, :, t] = sum_j P[g, j, t] v_j.
        """
        cfg = self.cfg
        hd, nh, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        g = nh // nkv
        q = rope_neox(self.attn_q(h).view(nh, hd, B, T), cos, sin)
        k = rope_neox(self.attn_k(h).view(nkv, hd, B, T), cos, sin)
        v = self.attn_v(h).view(nkv, hd, B, T)
        if self.kv_f16:  # the engine's KV cache: f16, saturated at +-65504
            k, v = (t.clamp(-65504.0, 65504.0).half().float() for t in (k, v))
        qin = q.permute(2, 0, 1, 3).reshape(1, B * nh * hd, T)                       # [1, (b,h,c), t]
        kw = k.permute(2, 0, 3, 1).repeat_interleave(g, dim=1).reshape(B * nh * T, hd, 1)  # [(b,h,j), c]
        s = F.conv1d(qin, kw, groups=B * nh).view(B * nh, T, T)                       # [(b,h), j, t]
        p = (s * (1.0 / math.sqrt(hd)) + mask).softmax(dim=1)
        vw = v.permute(2, 0, 1, 3).repeat_interleave(g, dim=1).reshape(B * nh * hd, T, 1)  # [(b,h,c), j]
        o = F.conv1d(p.view(1, B * nh * T, T), vw, groups=B * nh)                     # [1, (b,h,c), t]
        return o.view(B, nh, hd, T).permute(1, 2, 0, 3).reshape(cfg.dim, B * T)

    def forward(self, x, B, T, cos, sin, mask):
        x = x + self.attn_output(self.attn_sub_norm(self.attention(self.attn_norm(x), B, T, cos, sin, mask)))
        h = self.ffn_norm(x)
        f = F.relu(self.ffn_gate(h)).square() * self.ffn_up(h)
        return x + self.ffn_down(self.ffn_sub_norm(f))


class BitNet(nn.Module):
    """Activations are feature-major, [dim, B*T] (column = token), all the way to the logits."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.token_embd = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.output_norm = RMSNorm(cfg.dim, cfg.eps)
        cos, sin = rope_tables(cfg, cfg.ctx)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def init_weights(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.token_embd.weight.normal_(0.0, 0.02, generator=g)
            for blk in self.blocks:
                for m in blk.modules():
                    if isinstance(m, BitLinear):
                        m.weight.normal_(0.0, 0.02, generator=g)

    def logits_fm(self, tokens):
        """tokens [B, T] -> logits [vocab, B*T]."""
        B, T = tokens.shape
        x = self.token_embd(tokens.reshape(-1)).t().contiguous()
        mask = torch.full((T, T), float("-inf")).tril(-1)  # [j, t]: -inf where j > t
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        for blk in self.blocks:
            x = blk(x, B, T, cos, sin, mask)
        return linear(self.output_norm(x), self.token_embd.weight)

    def forward(self, tokens):
        """tokens [B, T] -> logits [B, T, vocab]."""
        B, T = tokens.shape
        return self.logits_fm(tokens).t().reshape(B, T, -1)

    def loss(self, tokens, targets):
        """Mean cross-entropy without ever transposing the logits."""
        return F.cross_entropy(self.logits_fm(tokens).unsqueeze(0), targets.reshape(1, -1))

    def bitlinears(self):
        """(gguf name, module) for every ternary projection."""
        for i, blk in enumerate(self.blocks):
            for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
                yield f"blk.{i}.{n}.weight", getattr(blk, n)

    def norms(self):
        """(gguf name, module) for every RMSNorm."""
        for i, blk in enumerate(self.blocks):
            for n in ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"):
                yield f"blk.{i}.{n}.weight", getattr(blk, n)
        yield "output_norm.weight", self.output_norm


def ffn_size(dim: int) -> int:
    """2B4T's FFN ratio (6912/2560 = 2.7) rounded to a multiple of 256."""
    return max(256, round(dim * 6912 / 2560 / 256) * 256)
