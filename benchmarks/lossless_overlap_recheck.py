"""Decide again, in bfloat16 and in float32, the examples where an overlap run's F differed from A.

``benchmarks/lossless_overlap.py`` runs the strong model with a bf16 body and float32 logits. Where
mode F's action differed from mode A's, this decides the example again through the same node in
the configurations A, F (the check reads the prompt) and F ahead (read-ahead and read-along),
every call on two threads, once with the run's dtype and once with the whole model in float32,
and prints one JSON line per decision. A difference that is gone in float32 is a bf16 near-tie
of the computation order, not the draft's doing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lossless_overlap_recheck.py \\
        --rows benchmarks/results/lossless/overlap/rows_250_2threads.jsonl \\
        > benchmarks/results/lossless/overlap/float32_recheck.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lossless_bfcl import PROPOSER, STRONG
from lossless_overlap import decide

from spec_tool_node import bfcl
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.costs import CostModel

CONFIGS = ("A_2threads", "F_2threads", "F_ahead_2threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=Path, required=True, help="an overlap run's rows (JSONL)")
    parser.add_argument("--only", help="comma-separated example ids (default: every differing one)")
    parser.add_argument("--dtypes", default="bfloat16,float32", help="comma-separated")
    parser.add_argument("--prefill-weight", type=float, default=0.039)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    ids = [r["id"] for r in rows if len({r[c]["action"] for c in r["order"]}) > 1]
    if args.only:
        ids = [i for i in ids if i in args.only.split(",")]
    examples = {ex.id: ex for ex in bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, 50)}
    cost_model = CostModel(prefill_weight=args.prefill_weight)
    for dtype in args.dtypes.split(","):
        options = {"max_new_tokens": 128, "float32_logits": True, "dtype": dtype}
        strong = HFChatModel(model=STRONG, prefix_cache=0, **options)
        loaded = (strong.hf_model, strong.tokenizer)
        models = {
            "proposer": HFChatModel(model=PROPOSER, prefix_cache=0, **options),
            "strong": strong,
            "strong_ahead": HFChatModel(model=STRONG, loaded=loaded, prefix_cache=1, **options),
        }
        for example_id in ids:
            example = examples[example_id]
            decided = {name: decide(example, name, models, cost_model) for name in CONFIGS}
            same = len({d["action"] for d in decided.values()}) == 1
            for name, d in decided.items():
                keep = ("path", "action", "kept_tokens", "draft_tokens")
                print(
                    json.dumps(
                        {"id": example_id, "dtype": dtype, "config": name, "same_as_A": same}
                        | {k: d[k] for k in keep}
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
