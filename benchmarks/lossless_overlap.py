"""Mode F with the strong model reading the prompt ahead, beside mode A, through the real node.

``CascadeConfig.prefill_ahead`` (on by default) has the strong model read the prompt
(``HFChatModel.prefill``) while the proposer drafts, so its check of the draft reads only the
draft. This measures what that does to mode F's wall time, on BFCL held-out examples taken
round-robin over the categories like ``lossless_bfcl.py``. Each example is decided four times by a
``SpeculativeActionNode`` with the packaged models, in an order that rotates per example:

- ``A``: always strong, one thread (as every other timing here);
- ``F``: mode F, the check reading the prompt itself (``prefill_ahead=False``);
- ``F_ahead``: mode F, the prompt read ahead on a second thread, beside the drafting;
- ``A_2threads``: always strong with two threads: what the second core gives mode A, so the
  overlap is not mistaken for a saving that only F could have;
- ``F_2threads``, ``F_ahead_2threads``: F without and with the read-ahead, every model call
  with two threads (torch's default on this machine: what a user who sets nothing gets).
  ``F_ahead`` configurations also read the draft along as it is written (``DraftWatch``).

``--configs`` picks the configurations (default the first four).

Each decision's wall time is the node's own (the turn's ``wall_s``: drafting, read-ahead and
check as they overlapped). Neither strong model keeps another decision's cache: A and F run with
the prefix cache off, and F_ahead's one-entry cache is emptied before every example. Rows are
appended as they are measured; rerunning the same command continues where it stopped.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lossless_overlap.py --limit 10 \\
        --out benchmarks/results/lossless/overlap/rows.jsonl
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lossless_overlap.py --limit 3 \\
        --configs A_2threads,F_2threads,F_ahead_2threads \\
        --out benchmarks/results/lossless/overlap/rows_2threads.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from lossless_bfcl import PROPOSER, STRONG, balanced, measured_ids

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CostModel
from spec_tool_node.evaluation.collector import context_of
from spec_tool_node.node import SpeculativeActionNode

CONFIGS = ("A", "F", "F_ahead", "A_2threads")
KNOWN = (*CONFIGS, "F_2threads", "F_ahead_2threads")


def decide(
    ex: Any, name: str, models: dict[str, HFChatModel], cost_model: CostModel
) -> dict[str, Any]:
    """One decision of ``ex`` in configuration ``name``: the node's ledger entry, trimmed."""
    mode = "A" if name.startswith("A") else "F"
    ahead = name.startswith("F_ahead")
    strong = models["strong_ahead" if ahead else "strong"]
    if ahead:
        strong.clear_prefix_cache()  # no earlier example's prompt: only this decision's read-ahead
    config = CascadeConfig(mode=mode, prefill_ahead=ahead, cost_model=cost_model)
    node = SpeculativeActionNode(
        proposer=models["proposer"] if mode == "F" else None,
        strong=strong,
        tools=ex.tools,
        config=config,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if name.endswith("_2threads") else threads)
    try:
        turn = node.invoke({"messages": context_of(ex)})["spec_ledger"][-1]
    finally:
        torch.set_num_threads(threads)
    return {
        "path": turn.path,
        "action": turn.action,
        "wall_s": turn.wall_s,
        "cost": turn.cost,
        "kept_tokens": turn.kept_tokens,
        "draft_tokens": turn.draft_tokens,
        "full_draft_kept": turn.full_draft_kept,
        "calls": [c.model_dump(exclude_defaults=True) for c in turn.calls],
    }


def run(args: argparse.Namespace) -> None:
    configs = tuple(c.strip() for c in args.configs.split(","))
    if unknown := [c for c in configs if c not in KNOWN]:
        raise SystemExit(f"--configs: unknown {unknown}; known: {', '.join(KNOWN)}")
    out = Path(args.out)
    done = measured_ids(out)
    todo = [ex for ex in balanced(args.limit) if ex.id not in done]
    print(f"{len(done)} done, {len(todo)} to do", flush=True)
    if not todo:
        return
    options = {"max_new_tokens": args.max_new_tokens, "float32_logits": True}
    proposer = HFChatModel(model=PROPOSER, prefix_cache=0, **options)
    strong = HFChatModel(model=STRONG, prefix_cache=0, **options)
    loaded = (strong.hf_model, strong.tokenizer)
    strong_ahead = HFChatModel(model=STRONG, loaded=loaded, prefix_cache=1, **options)
    models = {"proposer": proposer, "strong": strong, "strong_ahead": strong_ahead}
    cost_model = CostModel(prefill_weight=args.prefill_weight)
    with out.open("a", encoding="utf-8") as sink:
        for ex in todo:
            turn = len(done) % len(configs)
            order = configs[turn:] + configs[:turn]
            row: dict[str, Any] = {
                "id": ex.id,
                "category": ex.meta.get("category"),
                "order": list(order),
                "threads": torch.get_num_threads(),
            }
            for name in order:
                row[name] = decide(ex, name, models, cost_model)
            row["load_1min"] = os.getloadavg()[0]
            sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            sink.flush()
            done.add(ex.id)
            walls = " ".join(f"{n}={row[n]['wall_s']:.1f}s" for n in configs)
            actions = {row[n]["action"] for n in configs}
            print(f"{len(done):3d} {ex.id:24s} actions={len(actions)} {walls}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=10, help="examples per category")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--prefill-weight",
        type=float,
        default=0.0246,
        help="cost of reading a token against writing one (fitted on lossless/quiet)",
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated")
    parser.add_argument("--out", default="benchmarks/results/lossless/overlap/rows.jsonl")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
