"""Calibrate mode G's threshold on training-side drafts (never on the held-out examples).

The proposer drafts the training-side BFCL examples of the verifier's training data
(``benchmarks/results/verifier/drafts_train.jsonl``: live_simple, live_multiple,
live_irrelevance, live_parallel*) greedily in left-padded batches, keeping each token's log-prob
from the drafting pass. Each draft gets the gate's signal (exp of the mean log-prob over its
argument-value tokens, :func:`~spec_tool_node.verifiers.gate.gate_signal`) and, for comparison,
the whole-draft mean, and is labelled right or wrong against BFCL's possible answers. The threshold
is the lowest one at which accepted valid drafts are right at ``--precision`` (the verifier's
calibration rule). Rows are appended per batch, so a rerun continues.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/gate_calibrate.py --limit 120
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from spec_tool_node import bfcl
from spec_tool_node.actions import action_from_message, resolve_action, tool_schemas
from spec_tool_node.bfcl.matching import match_details
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation.collector import context_of, message_record
from spec_tool_node.training.verifier import auroc, calibrate
from spec_tool_node.verifiers.gate import gate_signal

PROPOSER = "qwen2.5-coder-0.5b-instruct"
TRAIN_DRAFTS = Path("benchmarks/results/verifier/drafts_train.jsonl")


def train_examples(limit: int) -> list[Any]:
    """The first ``limit`` ids of the verifier's training drafts, round-robin over categories."""
    ids = [json.loads(line)["id"] for line in TRAIN_DRAFTS.read_text().splitlines()]
    by_category: dict[str, list[str]] = {}
    for example_id in ids:
        by_category.setdefault(re.sub(r"_\d+(-\d+)*$", "", example_id), []).append(example_id)
    rounds = max(map(len, by_category.values()))
    order = [v[i] for i in range(rounds) for v in by_category.values() if i < len(v)]
    wanted = order[:limit]
    examples = {
        ex.id: ex for ex in bfcl.load_split("train", list(by_category)) if ex.id in set(wanted)
    }
    return [examples[i] for i in wanted if i in examples]


def row(ex: Any, message: Any, wall: float) -> dict[str, Any]:
    tools = tool_schemas(ex.tools)
    record = message_record(message, tools, wall_s=wall)
    right = False
    if record["valid"]:
        action = resolve_action(action_from_message(message), tools)
        right = match_details(action, ex.gold, ex.tools)[0]
    logprobs = [e["logprob"] for e in message.response_metadata["logprobs"]["content"]]
    return {
        "id": ex.id,
        "action": record["action"],
        "valid": record["valid"],
        "right": right,
        "gate": gate_signal(message),
        "whole": math.exp(sum(logprobs) / len(logprobs)) if logprobs else None,
        "wall_s": wall,
    }


def collect(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(x)["id"] for x in out.read_text().splitlines()} if out.exists() else set()
    todo = [ex for ex in train_examples(args.limit) if ex.id not in done]
    print(f"{len(done)} done, {len(todo)} to do", flush=True)
    if not todo:
        return
    proposer = HFChatModel(
        model=PROPOSER, max_new_tokens=128, prefix_cache=0, float32_logits=True, batch_size=8
    )
    todo.sort(key=lambda ex: len(json.dumps(ex.tools)) + len(json.dumps(ex.messages)))
    with out.open("a", encoding="utf-8") as sink:
        for start in range(0, len(todo), args.batch):
            chunk = todo[start : start + args.batch]
            tool_sets = [
                [{"type": "function", "function": f} for f in tool_schemas(ex.tools).values()]
                for ex in chunk
            ]
            begin = time.perf_counter()
            replies = proposer.invoke_many(
                [context_of(ex) for ex in chunk], tool_sets, return_logprobs=True
            )
            wall = (time.perf_counter() - begin) / len(chunk)
            for ex, message in zip(chunk, replies, strict=True):
                sink.write(json.dumps(row(ex, message, wall)) + "\n")
            sink.flush()
            print(f"{start + len(chunk)}/{len(todo)} {wall:.1f} s per draft", flush=True)


def report(args: argparse.Namespace) -> dict[str, Any]:
    rows = [json.loads(x) for x in Path(args.out).read_text().splitlines()]
    valid = [r for r in rows if r["valid"]]
    labels = [r["right"] for r in valid]
    result: dict[str, Any] = {
        "drafts": len(rows),
        "valid": len(valid),
        "right": sum(labels),
        "auroc_argument_values": auroc([r["gate"] for r in valid], labels),
        "auroc_whole_draft": auroc([r["whole"] for r in valid], labels),
        "target_precision": args.precision,
    }
    threshold = calibrate([r["gate"] for r in valid], labels, precision=args.precision)
    accepted = [r for r in valid if r["gate"] >= threshold]
    result.update(
        gate_threshold=threshold,
        accept_rate_valid=len(accepted) / len(valid) if valid else float("nan"),
        precision_on_train=sum(r["right"] for r in accepted) / len(accepted) if accepted else None,
    )
    print(json.dumps(result, indent=2))
    Path(args.out).with_name("calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=280)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", type=float, default=0.9)
    parser.add_argument("--out", default="benchmarks/results/gate/train_signals.jsonl")
    parser.add_argument("--report", action="store_true", help="only calibrate from the rows")
    args = parser.parse_args()
    if not args.report:
        collect(args)
    report(args)


if __name__ == "__main__":
    main()
