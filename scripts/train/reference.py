"""PyTorch evaluation of the EXPORTED model, the bigram baseline, samples, and the CI reference file.

    /usr/bin/python3 scripts/train/reference.py --gguf models/NAME.gguf --out models/NAME.reference.json

Reads the GGUF itself (F16 embedding, I2_S trits + f32 scale, F32 norms), so every number here is
about exactly the shipped weights, computed in float32 with the engine's numerics (model.py),
including its f16 KV cache. Also
writes scripts/train/work/final/report.json and samples.md for the model card.

Reference file format (JSON, `"format": "bitnet-reference-v1"`):

  model, model_sha256         the GGUF it was computed from
  bos_id, eos_id, eot_id, vocab_size, context_length
  heldout                     {protocol, ctx, tokens, nll, ppl}: the FULL held-out split, "BOS
                              windows" (data.py): each held-out document's text tokens cut into
                              chunks of <= ctx-1 tokens, each chunk scored as the sequence BOS + chunk
                              (<= ctx tokens); every text token predicted once. ppl = exp(mean nll), nll in nats.
  bigram                      {smoothing, ppl} of an interpolated Kneser-Ney bigram fit on train.bin,
                              scored on the same held-out targets with the same BOS windows.
  sequences[]                 a seeded sample of those held-out windows, each
                              {tokens: [BOS, t1..tn], target_logprob: [n], argmax: [n], margin: [n]}:
                              feed tokens[0..n-1] (the last token is only a target); position i's
                              logits predict tokens[i+1]: target_logprob[i] = log softmax(logits_i)
                              [tokens[i+1]] (float32 model, float64 log-softmax), argmax[i] = argmax
                              of logits_i, margin[i] = top-1 minus top-2 logit (near ties have a small
                              margin: an engine may legitimately pick the other token there).
  sequences_nll, sequences_ppl, sequences_positions   over all positions of `sequences`
  greedy[]                    {prompt_ids, ids, text}: greedy (argmax) continuations, max_new tokens,
                              stopping at EOS/EOT (stop token included in ids).
  tokenizer_samples[]         {text, ids}: held-out paragraphs and their ids (no BOS) from prepare.ts's
                              encoder; the engine tokenizer must give the same ids.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

from data import eval_windows, evaluate, load_stream, split_docs, work_path
from model import BitNet, Config

ARCH = "bitnet-b1.58"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


# --- GGUF ----------------------------------------------------------------------------------------

def read_gguf(path):
    """(metadata dict, {name: (ggml type, dims, bytes)}) for F32 / F16 / I2_S tensors."""
    buf = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = buf[pos:pos + n].decode("utf-8")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert take("I") == 0x46554747, "not a GGUF file"
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((name, dims, take("I"), take("Q")))
    align = meta.get("general.alignment", 32)
    data0 = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, typ, off in infos:
        n = int(np.prod(dims))
        size = {0: 4 * n, 1: 2 * n, 36: n // 4 + 32}[typ]
        tensors[name] = (typ, dims, buf[data0 + off:data0 + off + size])
    return meta, tensors


def unpack_i2s(b: bytes, n: int):
    """Trits (int8, flattened row-major) and the f32 scale of an I2_S blob (spec §3.3)."""
    a = np.frombuffer(b, dtype=np.uint8, count=n // 4).reshape(-1, 32)
    codes = np.stack([(a >> 6) & 3, (a >> 4) & 3, (a >> 2) & 3, a & 3], axis=1)  # [block, j//32, j%32]
    assert codes.max() <= 2, "I2_S code 3"
    return codes.reshape(-1).astype(np.int8) - 1, struct.unpack_from("<f", b, n // 4)[0]


def load_model(path):
    meta, tensors = read_gguf(path)
    assert meta["general.architecture"] == ARCH
    g = lambda k: meta[f"{ARCH}.{k}"]  # noqa: E731
    cfg = Config(vocab=g("vocab_size"), dim=g("embedding_length"), n_layers=g("block_count"),
                 n_heads=g("attention.head_count"), n_kv_heads=g("attention.head_count_kv"),
                 ffn=g("feed_forward_length"), ctx=g("context_length"), rope_base=g("rope.freq_base"),
                 eps=g("attention.layer_norm_rms_epsilon"))
    model = BitNet(cfg)
    with torch.no_grad():
        typ, dims, b = tensors["token_embd.weight"]
        assert typ == 1
        model.token_embd.weight.copy_(torch.from_numpy(np.frombuffer(b, "<f2").astype(np.float32)).view(dims[1], dims[0]))
        for name, m in model.norms():
            typ, dims, b = tensors[name]
            assert typ == 0
            m.weight.copy_(torch.from_numpy(np.frombuffer(b, "<f4").copy()))
        for name, m in model.bitlinears():
            typ, dims, b = tensors[name]
            assert typ == 36 and list(m.weight.shape) == [dims[1], dims[0]], name
            t, scale = unpack_i2s(b, dims[0] * dims[1])
            m.frozen = (torch.from_numpy(t.astype(np.float32)).view(dims[1], dims[0]), float(np.float32(scale)))
            m.weight.zero_()  # never used
    for blk in model.blocks:
        blk.kv_f16 = True  # the engine keeps K and V in f16: evaluate what it computes
    model.eval()
    return meta, model


# --- bigram baseline -----------------------------------------------------------------------------

def kn_bigram_nll(train, windows, vocab, d=0.75):
    """Mean NLL of an interpolated Kneser-Ney bigram (discount d, continuation distribution mixed
    with 1e-3 uniform so that every token has mass) on the targets of `windows`."""
    prev, nxt = train[:-1], train[1:]
    pair = prev * vocab + nxt
    uniq, cnt = np.unique(pair, return_counts=True)
    up, un = uniq // vocab, uniq % vocab
    c_prev = np.bincount(prev, minlength=vocab).astype(np.float64)
    n1_prev = np.bincount(up, minlength=vocab).astype(np.float64)        # distinct followers of v
    n1_next = np.bincount(un, minlength=vocab).astype(np.float64)        # distinct predecessors of w
    p_cont = 0.999 * n1_next / n1_next.sum() + 0.001 / vocab
    table = dict(zip(uniq.tolist(), cnt.tolist()))
    total, n = 0.0, 0
    for x, y in windows:
        for v, w in zip(x.tolist(), y.tolist()):
            if c_prev[v] > 0:
                c = table.get(v * vocab + w, 0)
                p = max(c - d, 0) / c_prev[v] + d * n1_prev[v] / c_prev[v] * p_cont[w]
            else:
                p = p_cont[w]
            total -= math.log(p)
            n += 1
    return total / n


# --- text ----------------------------------------------------------------------------------------

def byte_decoder():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, extra = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def decoder(tokens, types):
    dec = byte_decoder()

    def decode(ids):
        out = bytearray()
        for i in ids:
            out += tokens[i].encode() if types[i] != 1 else bytes(dec[ch] for ch in tokens[i])
        return out.decode("utf-8", errors="replace")
    return decode


def encode_texts(texts, tokenizer_json):
    r = subprocess.run(["deno", "run", "--allow-read", os.path.join(HERE, "encode.ts"), tokenizer_json],
                       input=json.dumps(texts), capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(r.stdout)


@torch.no_grad()
def generate(model, ids, n, stop, temperature=0.0, top_p=1.0, gen=None):
    ids = list(ids)
    out = []
    for _ in range(n):
        logits = model(torch.tensor([ids[-model.cfg.ctx:]]))[0, -1].double()
        if temperature == 0.0:
            t = int(logits.argmax())
        else:
            p = torch.softmax(logits / temperature, -1)
            sp, si = p.sort(descending=True)
            keep = (sp.cumsum(0) - sp) < top_p
            sp = sp * keep
            t = int(si[torch.multinomial(sp / sp.sum(), 1, generator=gen)])
        ids.append(t)
        out.append(t)
        if t in stop:
            break
    return out


TEXT_PROMPTS = ["The jury said", "It was late in the afternoon when", "The new plan", "She looked at him and",
                "In the United States,"]
CHAT_PROMPTS = [("You are a helpful assistant.", "How are you today?"),
                (None, "Tell me about the city."),
                (None, "What did the committee decide?")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=work_path())
    ap.add_argument("--report-dir", default=work_path("final"))
    ap.add_argument("--sequences", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.report_dir, exist_ok=True)

    meta, model = load_model(args.gguf)
    cfg = model.cfg
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    bos, eos, eot = (meta[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "eot"))
    decode = decoder(tokens, types)
    held = split_docs(load_stream(os.path.join(args.data, "heldout.bin")), bos, eos)
    windows = eval_windows(held, cfg.ctx, bos)

    nll, n = evaluate(model, windows)
    print(f"held-out (exported weights): nll {nll:.4f} ppl {math.exp(nll):.3f} over {n} tokens", flush=True)
    train = load_stream(os.path.join(args.data, "train.bin"))
    bg = kn_bigram_nll(train, windows, cfg.vocab)
    print(f"bigram KN: nll {bg:.4f} ppl {math.exp(bg):.3f}", flush=True)

    # Reference sequences: one full-length window from each of `--sequences` seeded documents.
    rng = np.random.default_rng(args.seed)
    per_doc, k = [], 0
    for d in held:
        full = [k + j for j, s in enumerate(range(0, len(d), cfg.ctx - 1)) if s + cfg.ctx - 1 <= len(d)]
        k += (len(d) + cfg.ctx - 2) // (cfg.ctx - 1)
        if full:
            per_doc.append(full)
    docs = sorted(rng.choice(len(per_doc), size=min(args.sequences, len(per_doc)), replace=False).tolist())
    picks = [int(rng.choice(per_doc[i])) for i in docs]
    seqs, tot, cnt = [], 0.0, 0
    with torch.no_grad():
        for p in picks:
            x, y = windows[p]
            logits = model(torch.from_numpy(x)[None])[0].double()
            lp = torch.log_softmax(logits, -1)
            tgt = lp[torch.arange(len(y)), torch.from_numpy(y)]
            top2 = logits.topk(2, -1).values
            seqs.append({"tokens": [int(bos)] + y.tolist(),
                         "target_logprob": [round(float(v), 6) for v in tgt],
                         "argmax": logits.argmax(-1).tolist(),
                         "margin": [round(float(v), 5) for v in (top2[:, 0] - top2[:, 1])]})
            tot -= float(tgt.sum())
            cnt += len(y)
    print(f"reference sequences: {len(seqs)}, {cnt} positions, ppl {math.exp(tot / cnt):.3f}", flush=True)

    # Samples: greedy and sampled continuations, plain text and chat.
    gen = torch.Generator().manual_seed(args.seed)
    stop = {eos, eot}
    samples, greedy = [], []
    prompts = [("text", p, [bos] + ids) for p, ids in zip(TEXT_PROMPTS, encode_texts(TEXT_PROMPTS, os.path.join(args.data, "tokenizer.json")))]
    for sysmsg, user in CHAT_PROMPTS:
        segs = ([f"System: {sysmsg}"] if sysmsg else []) + [f"User: {user}", "Assistant: "]
        enc = encode_texts(segs, os.path.join(args.data, "tokenizer.json"))
        ids = [bos]
        for i, e in enumerate(enc):
            ids += e + ([eot] if i < len(enc) - 1 else [])
        prompts.append(("chat", (sysmsg, user), ids))
    for kind, p, ids in prompts:
        g = generate(model, ids, 60, stop)
        greedy.append({"prompt_ids": ids, "ids": g, "text": decode(g)})
        smp = [decode(generate(model, ids, 60, stop, temperature=0.8, top_p=0.95, gen=gen)) for _ in range(2)]
        samples.append({"kind": kind, "prompt": p, "greedy": decode(g), "sampled": smp})
        print(f"[{kind}] {p!r}\n  greedy: {decode(g)!r}\n  sampled: {smp!r}", flush=True)

    # Tokenizer samples: first paragraphs of a few held-out documents.
    held_text = open(os.path.join(args.data, "heldout.txt")).read().split("\n\n")
    paras = [doc.split("\n")[0] for doc in held_text[:34:4]]
    tok_samples = [{"text": t, "ids": ids} for t, ids in zip(paras, encode_texts(paras, os.path.join(args.data, "tokenizer.json")))]

    sha = hashlib.sha256(open(args.gguf, "rb").read()).hexdigest()
    ref = {
        "format": "bitnet-reference-v1",
        "model": os.path.basename(args.gguf), "model_sha256": sha,
        "bos_id": bos, "eos_id": eos, "eot_id": eot, "vocab_size": cfg.vocab, "context_length": cfg.ctx,
        "heldout": {"protocol": "BOS windows: each held-out document's text tokens in chunks of <= ctx-1, "
                                "each scored as BOS + chunk; every text token predicted once",
                    "ctx": cfg.ctx, "tokens": n, "nll": round(nll, 6), "ppl": round(math.exp(nll), 4)},
        "bigram": {"smoothing": "interpolated Kneser-Ney, discount 0.75, fit on train.bin", "ppl": round(math.exp(bg), 4)},
        "sequences_positions": cnt, "sequences_nll": round(tot / cnt, 6), "sequences_ppl": round(math.exp(tot / cnt), 4),
        "sequences": seqs,
        "greedy": greedy,
        "tokenizer_samples": tok_samples,
    }
    with open(args.out, "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    report = {"heldout_ppl": math.exp(nll), "heldout_nll": nll, "heldout_tokens": n, "bigram_ppl": math.exp(bg),
              "sequences_ppl": math.exp(tot / cnt), "samples": samples, "gguf_bytes": os.path.getsize(args.gguf),
              "gguf_sha256": sha}
    with open(os.path.join(args.report_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.report_dir, "samples.md"), "w") as f:
        for s in samples:
            f.write(f"### {s['kind']}: {s['prompt']!r}\n\n- greedy: {s['greedy']!r}\n")
            for t in s["sampled"]:
                f.write(f"- sampled (T=0.8, top-p 0.95): {t!r}\n")
            f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
