"""Batched against unbatched collection of the proposer's greedy drafts on BFCL held-out examples.

Two measurements on the same machine, in one run:

1. Throughput: the first ``--batch-size`` of the examples below drafted once one at a time and
   once as one batch, back to back: generated tokens per second of each.
2. Identical actions: the evaluation collector drafts the first ``--limit`` held-out examples of
   each category in left-padded batches of ``--batch-size`` (``collect(batch_size=...)``) into a
   fresh cache, and each draft's action is compared with the committed BFCL cache's draft of the
   same example, which the collector wrote one example at a time with the same model and settings.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/batch_collect.py --limit 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from spec_tool_node import bfcl
from spec_tool_node.actions import tool_schemas
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation import ModelKeys, collect, model_key
from spec_tool_node.evaluation.collector import context_of
from spec_tool_node.training.data import load_draft_cache

PROPOSER = "qwen2.5-coder-0.5b-instruct"
COMMITTED = Path("benchmarks/results/bfcl/cache")


def throughput(model: HFChatModel, examples: list[Any]) -> dict[str, Any]:
    """Generated tokens per second for the same prompts one at a time and as one batch."""
    contexts = [context_of(ex) for ex in examples]
    tool_sets = [
        [{"type": "function", "function": f} for f in tool_schemas(ex.tools).values()]
        for ex in examples
    ]
    start = time.perf_counter()
    alone = [
        (model.bind_tools(tools) if tools else model).invoke(context)
        for context, tools in zip(contexts, tool_sets, strict=True)
    ]
    alone_s = time.perf_counter() - start
    start = time.perf_counter()
    together = model.invoke_many(contexts, tool_sets)
    together_s = time.perf_counter() - start
    tokens = [sum(m.usage_metadata["output_tokens"] for m in ms) for ms in (alone, together)]
    return {
        "prompts": len(examples),
        "one_at_a_time": {"seconds": alone_s, "tokens": tokens[0], "tok_s": tokens[0] / alone_s},
        "batched": {"seconds": together_s, "tokens": tokens[1], "tok_s": tokens[1] / together_s},
        "speedup": (tokens[1] / together_s) / (tokens[0] / alone_s),
        "same_replies": sum(
            a.response_metadata["raw_text"] == b.response_metadata["raw_text"]
            for a, b in zip(alone, together, strict=True)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=10, help="examples per category")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/batching"))
    args = parser.parse_args()
    examples = bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, args.limit)
    examples.sort(key=lambda ex: len(json.dumps(ex.tools)) + len(json.dumps(ex.messages)))
    model = HFChatModel(model=PROPOSER, max_new_tokens=128, batch_size=args.batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    speed = throughput(model, examples[: args.batch_size])
    (args.out / "throughput.json").write_text(json.dumps(speed, indent=2) + "\n")
    print(json.dumps(speed, indent=2), flush=True)
    keys = ModelKeys(proposer=model_key(PROPOSER))
    start = time.perf_counter()
    collection = collect(
        examples, args.out / "cache", proposer=model, keys=keys, modes="B",
        batch_size=args.batch_size, progress=False,
    )  # fmt: skip
    collect_s = time.perf_counter() - start
    committed = load_draft_cache(keys.path(COMMITTED, "proposer"))
    rows, same = [], 0
    for ex in examples:
        mine, theirs = collection[ex.id].draft, committed[ex.id]["draft"]
        same += mine["action"] == theirs["action"]
        rows.append({"id": ex.id, "batched": mine["action"], "one_at_a_time": theirs["action"]})
    result = {
        "examples": len(examples),
        "batch_size": args.batch_size,
        "same_action_as_committed_unbatched": same,
        "differences": [r for r in rows if r["batched"] != r["one_at_a_time"]],
        "collect_seconds": collect_s,
        "throughput": speed,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "differences"}, indent=2))


if __name__ == "__main__":
    main()
