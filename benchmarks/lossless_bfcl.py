"""Mode F (lossless draft checking) beside mode A (always strong) on BFCL held-out examples.

For each example, one after the other on this machine: the proposer drafts at batch 1 (as a live
decision does), then the strong model acts alone (mode A, ``invoke``) and continues the draft
(mode F, ``HFChatModel.continue_draft``); A and F alternate which of them runs first, so drifting
load hits both alike. Examples are taken round-robin over the categories (the i-th of each, then
the (i+1)-th), so a run stopped early leaves a balanced sample. On every ``--assisted-every``-th
example the strong model also writes its action with transformers' assisted generation (the
proposer drafting tokens ahead), after A and F. Every row is appended to ``--out``
as soon as it is measured; rerunning the same command continues where it stopped. ``--shard 0/2``
and ``--shard 1/2`` split what is left between two processes appending to the same file.

    nice -n 5 .venv/bin/python benchmarks/lossless_bfcl.py --limit 50 \\
        --out benchmarks/results/lossless/side_by_side.jsonl

Both models run with the prefix cache off, so neither reuses another example's prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from spec_tool_node import bfcl
from spec_tool_node.actions import tool_schemas
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation.collector import context_of, message_record

PROPOSER = "qwen2.5-coder-0.5b-instruct"
STRONG = "qwen2.5-coder-1.5b-instruct"


def balanced(limit: int) -> list[Any]:
    """The first ``limit`` held-out examples of each category, i-th of every category in turn."""
    examples = bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, limit)
    by_category: dict[str, list[Any]] = {}
    for ex in examples:
        by_category.setdefault(ex.meta.get("category", ""), []).append(ex)
    rounds = max(len(v) for v in by_category.values())
    return [v[i] for i in range(rounds) for v in by_category.values() if i < len(v)]


def reply(message: Any, wall: float, tools: dict[str, Any]) -> dict[str, Any]:
    """What a row keeps of one reply: its exact text, its action, tokens and wall seconds."""
    metadata = message.response_metadata
    record = message_record(message, tools, wall_s=wall)
    return {
        "raw_text": metadata.get("raw_text"),
        "end_text": metadata.get("end_text"),
        "action": record["action"],
        "valid": record["valid"],
        "input_tokens": record["input_tokens"],
        "output_tokens": record["output_tokens"],
        "wall_s": wall,
        **({"lossless": metadata["lossless"]} if "lossless" in metadata else {}),
        **({"logprobs": metadata["logprobs"]["content"]} if "logprobs" in metadata else {}),
    }


def timed(call: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


def measured_ids(out: Path) -> set[str]:
    """The ids already in a resumable results file (creating its folder for the first run)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            try:
                done.add(json.loads(line)["id"])
            except (json.JSONDecodeError, KeyError):
                continue  # a half-written last line of a killed run
    return done


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    done = measured_ids(out)
    todo = [ex for ex in balanced(args.limit) if ex.id not in done]
    index, count = args.shard
    todo = todo[index::count]  # this process's share; each row is one append of one line
    print(f"{len(done)} done, {len(todo)} to do", flush=True)
    if not todo:
        return
    options = {"max_new_tokens": args.max_new_tokens, "prefix_cache": 0, "float32_logits": True}
    proposer = HFChatModel(model=PROPOSER, **options)
    strong = HFChatModel(model=STRONG, **options)
    loaded = (strong.hf_model, strong.tokenizer)
    assisted = HFChatModel(model=STRONG, loaded=loaded, assistant=proposer, **options)
    with out.open("a", encoding="utf-8") as sink:
        for ex in todo:
            row = measure(ex, proposer, strong, a_first=len(done) % 2 == 0)
            if args.assisted_every and len(done) % args.assisted_every == 0:
                row["assisted"] = assisted_reply(ex, assisted)
            sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            sink.flush()
            done.add(ex.id)
            same = (row["F"]["raw_text"], row["F"]["end_text"]) == (
                row["A"]["raw_text"],
                row["A"]["end_text"],
            )
            lossless = row["F"]["lossless"]
            print(
                f"{len(done):3d} {ex.id:24s} same={same} kept={lossless['kept_tokens']}/"
                f"{lossless['draft_tokens']} full={lossless['full_draft_kept']} "
                f"draft={row['draft']['wall_s']:.1f}s A={row['A']['wall_s']:.1f}s "
                f"F={row['F']['wall_s']:.1f}s",
                flush=True,
            )


def assisted_reply(ex: Any, assisted: HFChatModel) -> dict[str, Any]:
    """The strong model's action with the proposer drafting tokens ahead (assisted generation)."""
    tools = tool_schemas(ex.tools)
    tool_list = [{"type": "function", "function": f} for f in tools.values()]
    message, wall = timed(partial(assisted.bind_tools(tool_list).invoke, context_of(ex)))
    return reply(message, wall, tools)


def measure(ex: Any, proposer: HFChatModel, strong: HFChatModel, a_first: bool) -> dict[str, Any]:
    """One example: the draft, then modes A and F in the order ``a_first`` says."""
    context = context_of(ex)
    tools = tool_schemas(ex.tools)
    tool_list = [{"type": "function", "function": f} for f in tools.values()]
    drafting = proposer.bind_tools(tool_list).bind(return_logprobs=True)  # for mode G
    draft, draft_wall = timed(partial(drafting.invoke, context))
    mode_a = partial(strong.bind_tools(tool_list).invoke, context)
    mode_f = partial(strong.continue_draft, context, draft, tool_list)
    walls: dict[str, tuple[Any, float]] = {}
    for name, call in [("A", mode_a), ("F", mode_f)][:: 1 if a_first else -1]:
        walls[name] = timed(call)
    return {
        "id": ex.id,
        "category": ex.meta.get("category"),
        "a_first": a_first,
        "load_1min": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
        "draft": reply(draft, draft_wall, tools),
        "A": reply(*walls["A"], tools=tools),
        "F": reply(*walls["F"], tools=tools),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=50, help="examples per category")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument(
        "--assisted-every",
        type=int,
        default=5,
        help="also time assisted generation (the proposer drafting tokens) on every N-th example",
    )
    parser.add_argument("--out", default="benchmarks/results/lossless/side_by_side.jsonl")
    parser.add_argument(
        "--shard",
        type=lambda t: tuple(int(x) for x in t.split("/")),
        default=(0, 1),
        metavar="K/N",
        help="measure every N-th example still to do, from the K-th (one process per core)",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
