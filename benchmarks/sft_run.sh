#!/usr/bin/env bash
# The short proposer SFT run of the training issue, on this 2-core CPU: LoRA SFT of
# qwen2.5-coder-0.5b-instruct on the training split, then greedy drafts on the same held-out
# examples as the base model's (runs/drafts/heldout.jsonl, from verifier_run.sh), compared per
# category. Each stage resumes (checkpoints every 5 steps; drafts cached per example).
#
#   bash benchmarks/sft_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CLI="$PY -m spec_tool_node.cli"
RUNS=${RUNS:-runs}
BASE=${BASE:-qwen2.5-coder-0.5b-instruct}
STAGE=${STAGE:-all}
run() { [[ "$STAGE" == all || "$STAGE" == "$1" ]]; }

if run sft; then
  $CLI train sft --base "$BASE" --data "$RUNS/data/train.jsonl" --out "$RUNS/sft" \
    --max-steps "${STEPS:-30}" --batch-size 2 --grad-accum 2 --learning-rate 2e-4 \
    --lora-r 8 --lora-alpha 16 --target-modules all-linear --max-length 1024 --save-steps 5
fi
if run mine; then
  $CLI train mine --proposer "$BASE" --adapter "$RUNS/sft/adapter" \
    --data "$RUNS/data/heldout.jsonl" --cache "$RUNS/drafts/heldout-sft.jsonl"
fi
if run compare; then
  $PY benchmarks/sft_compare.py --examples "$RUNS/data/heldout.jsonl" \
    --before "$RUNS/drafts/heldout.jsonl" --after "$RUNS/drafts/heldout-sft.jsonl" \
    --training "$RUNS/sft/adapter/training.json" --out benchmarks/results/sft
fi
