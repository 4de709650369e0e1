"""Label mined training-side drafts (a collector cache) into a flat draft file like `train mine`'s.

    .venv/bin/python benchmarks/probe_label.py --cache benchmarks/results/probe/cache_train \
        --out benchmarks/results/probe_v2/drafts_mined.jsonl

Each line says whether the proposer's greedy draft is valid and right against BFCL's possible
answers; ``probe_mine.py --role strong --drafts`` reads it (with ``drafts_train.jsonl``) to act on
the wrong drafts first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spec_tool_node import bfcl
from spec_tool_node.evaluation.collector import ModelKeys, load_collection, model_key
from spec_tool_node.jsonl import write_records
from spec_tool_node.training.data import labelled_draft

PROPOSER = "qwen2.5-coder-0.5b-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="training-side collector cache")
    parser.add_argument("--out", type=Path, required=True, help="flat draft file to write")
    parser.add_argument("--proposer", default=PROPOSER)
    args = parser.parse_args()
    examples = {e.id: e for e in bfcl.load_split("train", bfcl.TRAIN_SINGLE_TURN)}
    collection = load_collection(args.cache, ModelKeys(proposer=model_key(args.proposer)))
    lines = [
        labelled_draft(examples[i], c.draft, signals=False)
        for i, c in collection.records.items()
        if c.draft is not None
    ]
    write_records(args.out, lines)
    print(
        f"{len(lines)} drafts: {sum(x['valid'] for x in lines)} valid, "
        f"{sum(x['right'] for x in lines)} right -> {args.out}"
    )


if __name__ == "__main__":
    main()
