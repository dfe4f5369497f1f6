#!/usr/bin/env bash
# Size search for the embedded model: short runs of about the same compute (~7 minutes each on 2
# idle cores: steps = 7 min x the size's measured tokens/s / 2048 tokens per step), compared by
# held-out loss on a fixed 96-window subset. Results: work/search/*/log.txt.
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
run() { # name steps args...
  local name=$1 steps=$2
  shift 2
  grep -q "^final" "work/search/$name/log.txt" 2>/dev/null && return 0
  rm -rf "work/search/$name"
  $PY train.py --out "work/search/$name" --steps "$steps" --warmup 50 --batch 8 --lr 3e-3 --quick \
    --eval-every 100000 "$@"
}
run d256-l4 685 --dim 256 --layers 4 --heads 4 --kv-heads 2
run d256-l8 387 --dim 256 --layers 8 --heads 4 --kv-heads 2
run d512-l4 320 --dim 512 --layers 4 --heads 8 --kv-heads 2
grep -H "^final" work/search/*/log.txt
