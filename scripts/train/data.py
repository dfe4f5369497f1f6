"""Token streams written by prepare.ts and the evaluation protocol shared by train.py and reference.py.

Streams are uint16 little-endian token ids; every document is `BOS text EOS`.

Held-out evaluation ("BOS windows"): each held-out document's text tokens (without BOS/EOS) are cut
into consecutive chunks of at most `ctx - 1` tokens; each chunk is scored as the sequence
`BOS chunk` (at most ctx tokens, so it fits the model's context as one prompt), i.e. inputs
`[BOS] + chunk[:-1]`, targets `chunk`. Every held-out text token is predicted exactly once, with the
context the engine has when it is given that sequence as a prompt (one BOS, then text).
Perplexity = exp(mean negative log-likelihood over all those targets).
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F


def load_stream(path: str) -> np.ndarray:
    return np.fromfile(path, dtype="<u2").astype(np.int64)


def load_tokenizer(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def split_docs(stream: np.ndarray, bos: int, eos: int):
    """Text tokens of each `BOS text EOS` document."""
    starts = np.flatnonzero(stream == bos)
    docs = []
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else len(stream)
        d = stream[s + 1:e]
        if len(d) and d[-1] == eos:
            d = d[:-1]
        docs.append(d)
    return docs


def eval_windows(docs, ctx: int, bos: int):
    """List of (inputs, targets) int64 arrays: `BOS chunk` windows as described above."""
    out = []
    for d in docs:
        for s in range(0, len(d), ctx - 1):
            chunk = d[s:s + ctx - 1]
            seq = np.concatenate([[bos], chunk])
            out.append((seq[:-1], seq[1:]))
    return out


def batches(windows, batch: int):
    """Pads windows of unequal length (targets -100) into batches of at most `batch` rows."""
    for i in range(0, len(windows), batch):
        ws = windows[i:i + batch]
        T = max(len(x) for x, _ in ws)
        xs = torch.zeros(len(ws), T, dtype=torch.long)
        ys = torch.full((len(ws), T), -100, dtype=torch.long)
        for j, (x, y) in enumerate(ws):
            xs[j, :len(x)] = torch.from_numpy(x)
            ys[j, :len(y)] = torch.from_numpy(y)
        yield xs, ys


@torch.no_grad()
def evaluate(model, windows, batch: int = 16):
    """(mean NLL in nats, number of scored tokens) over `windows`."""
    model.eval()
    total, n = 0.0, 0
    for xs, ys in batches(windows, batch):
        logits = model(xs)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), ys.reshape(-1),
                                 ignore_index=-100, reduction="sum").item()
        n += int((ys != -100).sum())
    model.train()
    return total / n, n


def work_path(*parts) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "work", *parts)
