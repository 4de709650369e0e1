"""Measure HFChatModel's prefix cache on real BFCL multi-turn agent steps.

    python benchmarks/prefix_cache.py --tasks 3 --steps 3 --out benchmarks/results/prefix_cache

For each of the first ``--tasks`` held-out multi-turn tasks, the agent loop is replayed for
``--steps`` decisions: the model answers the first user turn, every call it makes gets a fixed tool
result, and the next decision is taken on the grown conversation. Each decision is made twice on
the same weights, with the prefix cache (``prefix_cache=4``) and without (``prefix_cache=0``), and
the report gives the median wall time of each and whether the two actions were the same. The
first decision of a task has nothing cached; it is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

from spec_tool_node import bfcl
from spec_tool_node.bfcl.tasks import heldout_task_ids, load_task
from spec_tool_node.chat_models.hf import HFChatModel


def timed(model, messages: list[BaseMessage]):
    start = time.perf_counter()
    reply = model.invoke(messages)
    return reply, time.perf_counter() - start


def action(reply) -> tuple:
    return reply.content, [(c["name"], c["args"]) for c in reply.tool_calls]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="decisions per task")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    cached = HFChatModel(model=args.model, max_new_tokens=args.max_new_tokens)
    plain = HFChatModel(
        model=args.model,
        loaded=(cached.hf_model, cached.tokenizer),
        max_new_tokens=args.max_new_tokens,
        prefix_cache=0,
    )
    rows = []
    for task_id in heldout_task_ids(args.tasks):
        task = load_task(task_id)
        tools = [bfcl.convert_function(f) for f in task.functions_at(0)]
        with_cache, without = cached.bind_tools(tools), plain.bind_tools(tools)
        messages: list[BaseMessage] = [HumanMessage(m["content"]) for m in task.turns[0]]
        for step in range(args.steps):
            fast, fast_s = timed(with_cache, messages)
            slow, slow_s = timed(without, messages)
            usage = fast.usage_metadata
            rows.append(
                {
                    "task": task_id,
                    "step": step,
                    "prompt_tokens": usage["input_tokens"],
                    "cache_read": usage["input_token_details"]["cache_read"],
                    "cached_s": fast_s,
                    "uncached_s": slow_s,
                    "same_action": action(fast) == action(slow),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            results = [
                ToolMessage('{"result": "ok"}', tool_call_id=c["id"]) for c in fast.tool_calls
            ]
            messages = [*messages, fast, *(results or [HumanMessage("Go on.")])]

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report(rows, args)


def write_report(rows: list[dict], args: argparse.Namespace) -> None:
    def med(rs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    lines = [
        "# Prefix cache on BFCL multi-turn agent steps",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); model {args.model} "
        f"(bf16). Command: `python benchmarks/prefix_cache.py --tasks {args.tasks} --steps "
        f"{args.steps} --out {args.out}`.",
        "",
        "| decisions | n | prompt tokens | reused | with cache s | without s | same action |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    groups = (
        ("nothing reused", [r for r in rows if not r["cache_read"]]),
        ("a prefix reused", [r for r in rows if r["cache_read"]]),
        ("all", rows),
    )
    for name, rs in groups:
        if rs:
            lines.append(
                f"| {name} | {len(rs)} | {med(rs, 'prompt_tokens'):.0f} | "
                f"{med(rs, 'cache_read'):.0f} | {med(rs, 'cached_s'):.1f} | "
                f"{med(rs, 'uncached_s'):.1f} | {sum(r['same_action'] for r in rs)}/{len(rs)} |"
            )
    lines += [
        "",
        "Medians over the decisions; per-decision rows in `runs.jsonl`. Tasks that share their "
        "tools also share the prompt's long tool listing, so a task's first decision can reuse "
        "the previous task's prefix.",
        "",
    ]
    (args.out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
