#!/usr/bin/env bash
# The real verifier run of the training issue, on this 2-core CPU. Every stage is cached and
# resumable: rerun the script and it continues where it stopped (drafts are appended per example,
# training resumes from its last checkpoint). Outputs go to runs/ (ignored) and the small results
# to benchmarks/results/verifier/.
#
#   bash benchmarks/verifier_run.sh            # whole pipeline
#   STAGE=mine-heldout bash benchmarks/verifier_run.sh
#
# The committed bundle was built with
#   VERIFIER_BASE=smollm2-135m-instruct VERIFIER_OUT=runs/verifier4 STEPS=60 SAVE_STEPS=30 LR=3e-4 \
#     bash benchmarks/verifier_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CLI="$PY -m spec_tool_node.cli"
RUNS=${RUNS:-runs}
PROPOSER=${PROPOSER:-qwen2.5-coder-0.5b-instruct}
VERIFIER_BASE=${VERIFIER_BASE:-qwen2.5-coder-0.5b-instruct}
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
VERIFIER_OUT=${VERIFIER_OUT:-$RUNS/verifier}
if run verifier; then
  $CLI train verifier --base "$VERIFIER_BASE" --data "$RUNS/data/train.jsonl" --drafts "$RUNS/drafts/train.jsonl" \
    --out "$VERIFIER_OUT" --max-steps "${STEPS:-80}" --batch-size "${BATCH:-4}" --grad-accum "${GRAD_ACCUM:-1}" \
    --learning-rate "${LR:-2e-4}" --lora-r "${LORA_R:-16}" --lora-alpha "$((2 * ${LORA_R:-16}))" \
    --target-modules "${TARGETS:-q_proj,k_proj,v_proj,o_proj}" --max-length "${MAX_LENGTH:-768}" --save-steps "${SAVE_STEPS:-20}"
fi
RESULTS=${RESULTS:-benchmarks/results/verifier}
if run eval; then
  # held-out AUROC, calibrated threshold, precision/recall against the two baselines
  $PY benchmarks/verifier_eval.py --examples "$RUNS/data/heldout.jsonl" --drafts "$RUNS/drafts/heldout.jsonl" \
    --verifier-base "$VERIFIER_BASE" --verifier-adapter "$VERIFIER_OUT/adapter" \
    --judge qwen2.5-coder-1.5b-instruct --strong-likelihood qwen2.5-coder-1.5b-instruct \
    --max-length "${MAX_LENGTH:-768}" --out "$RESULTS"
fi
if run bundle; then
  # the card records what was run and what was measured; the threshold is the calibrated one
  $PY - "$RESULTS/metrics.json" "$VERIFIER_OUT/adapter/training.json" "$RESULTS/card.json" "$VERIFIER_BASE" <<'PY'
import json, sys
metrics, training = (json.load(open(p)) for p in sys.argv[1:3])
base = sys.argv[4]
cfg = training["config"]
pairs = [json.loads(line) for line in open(sys.argv[2].rsplit("/", 2)[0] + "/pairs.jsonl")]
mix = {}
for p in pairs:
    mix[p["source"]] = mix.get(p["source"], 0) + 1
card = {
    "how it was made": {
        "command": f"VERIFIER_BASE={base} VERIFIER_OUT={sys.argv[2].rsplit('/', 2)[0]} "
        f"STEPS={cfg['max_steps']} BATCH={cfg['batch_size']} GRAD_ACCUM={cfg['grad_accum']} "
        f"LR={cfg['learning_rate']} LORA_R={cfg['lora_r']} MAX_LENGTH={cfg['max_length']} "
        f"SAVE_STEPS={cfg['save_steps']} bash benchmarks/verifier_run.sh (stages data, "
        "mine-heldout, mine-train, verifier, eval, bundle)",
        "verifier base": f"{base}, LoRA r={cfg['lora_r']} alpha={cfg['lora_alpha']} "
        f"on {cfg['target_modules']}, {training['global_step']} steps, batch "
        f"{cfg['batch_size']}x{cfg['grad_accum']}, lr {cfg['learning_rate']}, at most "
        f"{cfg['max_length']} tokens per prompt, loss on the ACCEPT/REJECT pair only",
        "hard negatives from": "qwen2.5-coder-0.5b-instruct drafts (greedy) on the training examples",
        "training data": "BFCL v4 train split: first 80 of live_simple, live_multiple, "
        "live_irrelevance; live_parallel (16), live_parallel_multiple (24) = 280 examples",
        "split": "train = live_* + even multi-turn ids; held-out = non-live single-turn + odd "
        "multi-turn ids (spec_tool_node.bfcl.split_of)",
        "pairs": f"{len(pairs)} balanced 50/50 ({sum(p['accept'] for p in pairs)} accept); "
        f"mix {dict(sorted(mix.items()))}",
        "steps": training["global_step"],
    },
    "held-out metrics (first 25 of simple_python, multiple, parallel, irrelevance; valid drafts "
    "only)": metrics["signals"],
    "held-out drafts": {k: v for k, v in metrics.items() if k.startswith("n_")},
}
json.dump(card, open(sys.argv[3], "w"), indent=2)
print(json.dumps(card, indent=2))
PY
  THRESHOLD=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['signals']['trained verifier']['threshold'])" "$RESULTS/metrics.json")
  $CLI bundle --out "$RESULTS/bundle" --mode D --threshold "$THRESHOLD" \
    --proposer "$PROPOSER" --strong qwen2.5-coder-1.5b-instruct \
    --verifier "$VERIFIER_BASE@$VERIFIER_OUT/adapter" --verifier-max-length "${MAX_LENGTH:-768}" \
    --card "$RESULTS/card.json"
fi
