"""Write mined BFCL multi-turn decisions as `spec-tool-node train calibrate` reads them.

    .venv/bin/python benchmarks/multi_turn_drafts.py --split train --categories multi_turn_base \
        --limit 71 --cache benchmarks/results/probe/cache_train_multi_turn --out runs/probe/mt_train

Each BFCL multi-turn task is replayed along its ground truth into one example per decision
(``bfcl.load_multi_turn``); ``benchmarks/probe_mine.py`` caches the proposer's draft of each. This
writes ``examples.jsonl`` (the decisions) and ``drafts.jsonl`` (``{"id", "draft", "valid",
"right"}``, right when the draft matches the decision's ground-truth action), so the multi-turn
threshold is calibrated with the same command a user runs on their own logged conversations.
Only decisions after an assistant or tool message are written (``cascade.is_multi_turn``): a
task's first decision is a single-turn one, whose threshold the single-turn data sets.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from langchain_core.messages import convert_to_messages

from spec_tool_node import bfcl
from spec_tool_node.actions import action_from_canonical
from spec_tool_node.bfcl.matching import matches
from spec_tool_node.cascade import is_multi_turn
from spec_tool_node.evaluation.collector import ModelKeys, load_collection, model_key
from spec_tool_node.jsonl import write_text

PROPOSER = "qwen2.5-coder-0.5b-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--split", choices=["train", "heldout"], required=True)
    parser.add_argument("--categories", default="multi_turn_base")
    parser.add_argument("--limit", type=int, help="first N decisions per category")
    parser.add_argument("--cache", type=Path, required=True, help="probe_mine.py's cache")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    examples = []
    for category in args.categories.split(","):
        chosen = bfcl.load_split(args.split, [category])
        examples += chosen[: args.limit] if args.limit else chosen
    collection = load_collection(args.cache, ModelKeys(proposer=model_key(PROPOSER)))
    rows, kept = [], []
    for e in examples:
        record = collection.records.get(e.id)
        if record is None or not record.draft:
            continue
        if not is_multi_turn(convert_to_messages(e.messages)):
            continue
        draft = record.draft
        valid = bool(draft.get("valid"))
        right = valid and matches(action_from_canonical(draft["action"]), e.gold)
        rows.append({"id": e.id, "draft": draft["action"], "valid": valid, "right": right})
        kept.append(e)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "examples.jsonl", "".join(e.model_dump_json() + "\n" for e in kept))
    write_text(args.out / "drafts.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    valid = [r for r in rows if r["valid"]]
    print(
        f"{len(rows)} multi-turn decisions with a draft ({len(examples)} asked), "
        f"{len(valid)} valid, {sum(r['right'] for r in valid)} right -> {args.out}"
    )


if __name__ == "__main__":
    main()
