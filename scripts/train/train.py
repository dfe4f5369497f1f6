"""Quantization-aware training of the embedded BitNet b1.58 model (CPU, 2 threads, fully seeded).

    /usr/bin/python3 scripts/train/train.py --out scripts/train/work/final [--dim 256 --layers 6 ...]

Reads train.bin / heldout.bin / tokenizer.json from scripts/train/work (prepare.ts). Training
windows are `BOS` + `ctx` consecutive stream tokens (a window that starts at a document's own BOS
takes it as is); each "epoch" visits every ctx-aligned chunk once, from a seeded random phase, in a
seeded random order. AdamW, linear warmup then cosine decay to 10% of the peak LR, weight decay on
the matrices only, gradient clipping at 1.0. Logs to OUT/log.txt; at the end writes OUT/ckpt.pt
and the export-ready tensors OUT/model.json + OUT/model.bin (read by export.ts):

  model.json = {"config": {...}, "steps": n, "train_seconds": s, "heldout_loss": x,
                "tensors": [{"name": gguf name, "dtype": "f32" | "i8", "shape": [rows, cols] (torch
                             order, row = output), "offset": bytes into model.bin, "nbytes": n,
                             "scale": beta (i8 only)}]}
  model.bin  = the tensors back to back, little endian: f32 values or int8 trits in {-1, 0, 1}.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch

from data import eval_windows, evaluate, load_stream, load_tokenizer, split_docs, work_path
from model import BitLinear, BitNet, Config, ffn_size, weight_trits


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=work_path())
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=0, help="0: 2B4T's ratio rounded to 256")
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--rope-base", type=float, default=10000.0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-windows", type=int, default=96, help="held-out windows for the periodic eval")
    p.add_argument("--quick", action="store_true", help="probe run: final eval on the subset, nothing saved")
    return p.parse_args()


class Sampler:
    """Epochs over ctx-aligned chunks of the training stream, seeded phase and order."""

    def __init__(self, stream, ctx, bos, seed):
        self.stream, self.ctx, self.bos = stream, ctx, bos
        self.rng = np.random.default_rng(seed)
        self.order, self.pos, self.epoch = [], 0, 0

    def _new_epoch(self):
        phase = int(self.rng.integers(0, self.ctx))
        starts = np.arange(phase, len(self.stream) - self.ctx - 1, self.ctx)
        self.order = self.rng.permutation(starts)
        self.pos = 0
        self.epoch += 1

    def batch(self, n):
        xs, ys = [], []
        for _ in range(n):
            if self.pos >= len(self.order):
                self._new_epoch()
            s = int(self.order[self.pos])
            self.pos += 1
            if self.stream[s] == self.bos:
                seq = self.stream[s:s + self.ctx + 1]
            else:
                seq = np.concatenate([[self.bos], self.stream[s:s + self.ctx]])
            xs.append(seq[:-1])
            ys.append(seq[1:])
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    p = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def export(model: BitNet, path_json: str, path_bin: str, extra: dict):
    tensors, offset = [], 0
    with open(path_bin, "wb") as f:
        def put(name, arr, dtype, scale=None):
            nonlocal offset
            b = np.ascontiguousarray(arr).astype("<f4" if dtype == "f32" else "i1").tobytes()
            f.write(b)
            t = {"name": name, "dtype": dtype, "shape": list(arr.shape), "offset": offset, "nbytes": len(b)}
            if scale is not None:
                t["scale"] = scale
            tensors.append(t)
            offset += len(b)

        with torch.no_grad():
            put("token_embd.weight", model.token_embd.weight.float().numpy(), "f32")
            for name, m in model.norms():
                put(name, m.weight.float().numpy(), "f32")
            for name, m in model.bitlinears():
                t, beta = weight_trits(m.weight.float())
                put(name, t.to(torch.int8).numpy(), "i8", float(np.float32(beta.item())))
    with open(path_json, "w") as f:
        json.dump({"config": model.cfg.to_dict(), **extra, "tensors": tensors}, f, indent=1)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    tok = load_tokenizer(os.path.join(args.data, "tokenizer.json"))
    bos, eos = tok["bos_id"], tok["eos_id"]
    train = load_stream(os.path.join(args.data, "train.bin"))
    held = split_docs(load_stream(os.path.join(args.data, "heldout.bin")), bos, eos)
    windows = eval_windows(held, args.ctx, bos)
    sub = [windows[i] for i in np.random.default_rng(0).permutation(len(windows))[:args.eval_windows]]

    cfg = Config(vocab=len(tok["tokens"]), dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                 n_kv_heads=args.kv_heads, ffn=args.ffn or ffn_size(args.dim), ctx=args.ctx,
                 rope_base=args.rope_base)
    for n in (cfg.dim, cfg.ffn):
        assert n % 256 == 0, f"dim/ffn {n} must be a multiple of 256 (I2_S blocks of 128, TQ blocks of 256)"
    model = BitNet(cfg)
    model.init_weights(args.seed)
    n_tern = sum(m.weight.numel() for _, m in model.bitlinears())
    n_all = sum(p.numel() for p in model.parameters())

    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    sampler = Sampler(train, args.ctx, bos, args.seed)

    log = open(os.path.join(args.out, "log.txt"), "a")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    say(f"config {json.dumps(cfg.to_dict())} args {json.dumps(vars(args))}")
    say(f"params: {n_all} total, {n_tern} ternary, {cfg.vocab * cfg.dim} embedding; train tokens {len(train)}; "
        f"held-out windows {len(windows)} ({sum(len(y) for _, y in windows)} tokens)")
    t0 = time.time()
    run_loss, run_n = 0.0, 0
    for step in range(args.steps):
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        xs, ys = sampler.batch(args.batch)
        loss = model.loss(xs, ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += loss.item()
        run_n += 1
        if (step + 1) % 25 == 0:
            el = time.time() - t0
            say(f"step {step + 1} loss {run_loss / run_n:.4f} lr {lr:.2e} epoch {sampler.epoch} "
                f"elapsed {el:.0f}s tok/s {(step + 1) * args.batch * args.ctx / el:.0f}")
            run_loss, run_n = 0.0, 0
        if (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            te = time.time()
            l, n = evaluate(model, sub)
            t0 += time.time() - te  # eval time does not count as training time
            say(f"eval step {step + 1} heldout-subset loss {l:.4f} ppl {math.exp(l):.2f} ({n} tokens)")
    train_s = time.time() - t0
    if args.quick:
        l, n = evaluate(model, sub)
        say(f"final step {args.steps} heldout-subset loss {l:.4f} ppl {math.exp(l):.2f} ({n} tokens) "
            f"train time {train_s:.0f}s")
        return
    l, n = evaluate(model, windows)
    say(f"final step {args.steps} heldout loss {l:.4f} ppl {math.exp(l):.2f} ({n} tokens) train time {train_s:.0f}s")
    torch.save({"config": cfg.to_dict(), "args": vars(args), "model": model.state_dict()},
               os.path.join(args.out, "ckpt.pt"))
    export(model, os.path.join(args.out, "model.json"), os.path.join(args.out, "model.bin"),
           {"steps": args.steps, "train_seconds": round(train_s), "heldout_loss": l, "heldout_tokens": n,
            "params_total": n_all, "params_ternary": n_tern, "args": vars(args)})
    say("done")


if __name__ == "__main__":
    main()
