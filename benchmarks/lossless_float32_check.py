"""Re-check, in float32, the examples where mode F's output differed from mode A's in bfloat16.

The side-by-side run (``benchmarks/lossless_bfcl.py``) ran the strong model in bfloat16 with
float32 logits. Where F's output differed from A's, this runs the strong model entirely in
float32, mode A and mode F on the same draft text (the proposer's, from the run's row), and says
whether they now agree.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/lossless_float32_check.py \
        --rows benchmarks/results/lossless/forms/side_by_side.jsonl --only parallel_43 \
        >> benchmarks/results/lossless/forms/float32_check.jsonl

With ``--eval-cache`` (an ``eval --modes F`` cache) and ``--data`` (its examples) the rows are
built from the cached strong actions and continuations instead:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/lossless_float32_check.py \
        --eval-cache benchmarks/results/first_decision/cache \
        --data benchmarks/results/first_decision/train_first.jsonl \
        >> benchmarks/results/first_decision/float32_check.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spec_tool_node import bfcl
from spec_tool_node.actions import tool_schemas
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation.collector import context_of
from spec_tool_node.example_files import Example
from spec_tool_node.jsonl import read_records

ROWS = Path("benchmarks/results/lossless/side_by_side.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=Path, default=ROWS, help="side-by-side rows (JSONL)")
    parser.add_argument("--only", help="comma-separated example ids (default: every differing row)")
    parser.add_argument("--eval-cache", type=Path, help="an `eval --modes F` cache folder")
    parser.add_argument("--data", type=Path, help="with --eval-cache: its examples (JSONL)")
    args = parser.parse_args()
    if args.eval_cache:
        if not args.data:
            parser.error("--eval-cache needs --data")
        rows = _cached_rows(args.eval_cache)
        data = read_records(args.data, strict=True)
        examples = {ex.id: ex for ex in map(Example.model_validate, data)}
    else:
        rows = list(read_records(args.rows, strict=True))
        examples = {ex.id: ex for ex in bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, 50)}
    differing = [r for r in rows if r["F"]["raw_text"] != r["A"]["raw_text"]]
    if args.only:
        differing = [r for r in differing if r["id"] in args.only.split(",")]
    strong = HFChatModel(
        model="qwen2.5-coder-1.5b-instruct", dtype="float32", max_new_tokens=128, prefix_cache=0
    )
    for row in differing:
        ex = examples[row["id"]]
        tools = [{"type": "function", "function": f} for f in tool_schemas(ex.tools).values()]
        context = context_of(ex)
        a = strong.bind_tools(tools).invoke(context).response_metadata["raw_text"]
        draft = row["draft"]["raw_text"] + (row["draft"].get("end_text") or "")
        f = strong.continue_draft(context, draft, tools).response_metadata["raw_text"]
        print(
            json.dumps(
                {
                    "id": row["id"],
                    "bf16": {"A": row["A"]["raw_text"], "F": row["F"]["raw_text"]},
                    "float32": {"A": a, "F": f, "same": a == f},
                }
            ),
            flush=True,
        )


def _cached_rows(cache: Path) -> list[dict]:
    """Side-by-side rows from an eval cache: each example's strong action (A), its continuation
    of the draft (F) and the draft text the continuation checked."""
    acts = {r["id"]: r["act"] for f in cache.glob("strong--*.jsonl") for r in read_records(f)}
    return [
        {"id": r["id"], "A": acts[r["id"]], "F": r["continued"], "draft": {"raw_text": r["of"]}}
        for f in cache.glob("continued--*.jsonl")
        for r in read_records(f)
        if r["id"] in acts
    ]


if __name__ == "__main__":
    main()
