#!/usr/bin/env bash
# The real verifier run of the training issue, on this 2-core CPU. Every stage is cached and
# resumable: rerun the script and it continues where it stopped (drafts are appended per example,
# training resumes from its last checkpoint). Outputs go to runs/ (ignored) and the small results
# to benchmarks/results/verifier/.
#
#   bash benchmarks/verifier_run.sh            # whole pipeline
#   STAGE=mine-heldout bash benchmarks/verifier_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CLI="$PY -m spec_tool_node.cli"
RUNS=${RUNS:-runs}
PROPOSER=${PROPOSER:-qwen2.5-coder-0.5b-instruct}
VERIFIER_BASE=${VERIFIER_BASE:-smollm2-135m-instruct}
TRAIN_CATEGORIES=${TRAIN_CATEGORIES:-live_simple,live_multiple,live_irrelevance,live_parallel,live_parallel_multiple}
TRAIN_PER_CATEGORY=${TRAIN_PER_CATEGORY:-80}
HELDOUT_CATEGORIES=${HELDOUT_CATEGORIES:-simple_python,multiple,parallel,irrelevance}
HELDOUT_PER_CATEGORY=${HELDOUT_PER_CATEGORY:-25}
STAGE=${STAGE:-all}
mkdir -p "$RUNS/data" "$RUNS/drafts"

run() { [[ "$STAGE" == all || "$STAGE" == "$1" ]]; }

if run data; then
  $CLI data bfcl --split train --categories "$TRAIN_CATEGORIES" --limit-per-category "$TRAIN_PER_CATEGORY" --out "$RUNS/data/train.jsonl"
  $CLI data bfcl --split heldout --categories "$HELDOUT_CATEGORIES" --limit-per-category "$HELDOUT_PER_CATEGORY" --out "$RUNS/data/heldout.jsonl"
fi
if run mine-heldout; then
  $CLI train mine --proposer "$PROPOSER" --data "$RUNS/data/heldout.jsonl" --cache "$RUNS/drafts/heldout.jsonl" --signals
fi
if run mine-train; then
  $CLI train mine --proposer "$PROPOSER" --data "$RUNS/data/train.jsonl" --cache "$RUNS/drafts/train.jsonl"
fi
if run verifier; then
  $CLI train verifier --base "$VERIFIER_BASE" --data "$RUNS/data/train.jsonl" --drafts "$RUNS/drafts/train.jsonl" \
    --out "$RUNS/verifier" --max-steps "${STEPS:-60}" --batch-size 4 --grad-accum 2 --learning-rate 3e-4 \
    --lora-r 8 --lora-alpha 16 --target-modules q_proj,v_proj --max-length "${MAX_LENGTH:-512}" --save-steps 10
fi
