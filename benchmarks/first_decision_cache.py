"""What a first decision's draft saves when the strong model has its prompt cached, and when not.

    .venv/bin/python benchmarks/first_decision_cache.py
    .venv/bin/python benchmarks/first_decision_cache.py --trajectories \
        benchmarks/results/bfcl/cache/trajectories-D-c1c64d2ab4af.jsonl \
        --against benchmarks/results/bfcl/cache/trajectories-A-7b62357bbda1.jsonl --from 11

Reads the strong model's measured continuations of the proposer's drafts (no model is called)
and prices each under the default bundle's cost model twice: as it ran, and as if no prefix
cache had held any of its prompt (``cached_tokens`` 0). A continuation is priced by its work
relative to writing the same action from scratch after the same cache (``CostModel``): when
the prompt must be read, reading it (3,700-6,500 tokens here, each 0.039 of a decoding step)
is most of that work and a continuation cannot skip it, so keeping the draft saves little.

With ``--trajectories`` it lists, per task from ``--from`` on, the first decision of a live
mode-D or mode-F trajectory cache (a first decision the cold-prompt limit left to the strong model
shows no draft): how much of the strong model's prompt a prefix cache held, what the
strong model kept of the draft, and the trajectory's savings against mode A's on the same task
(``--against``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from spec_tool_node.bfcl.tasks import heldout_task_ids
from spec_tool_node.bundle import Bundle
from spec_tool_node.cascade import call_record
from spec_tool_node.evaluation.collector import rebuild_message
from spec_tool_node.jsonl import read_records

CACHE = Path("benchmarks/results/first_decision/cache")
CONTINUED = (
    "continued--qwen2.5-coder-1.5b-instruct-e83bd741--on--qwen2.5-coder-0.5b-instruct-b29ab005"
)
BUNDLE = Path("benchmarks/results/default_bundle")


def training_table(cache: Path) -> None:
    cost_model = Bundle.from_pretrained(BUNDLE).config.cost_model
    draft = cost_model.cheap
    rows, warm_total, cold_total = [], 0.0, 0.0
    for entry in read_records(cache / f"{CONTINUED}.jsonl", strict=True):
        record = entry["continued"]
        info = record["lossless"]
        # the ledger entry the simulator's replay makes of this cached continuation
        message = rebuild_message(record)
        call = call_record("strong", record["model_name"], "continue", message, record["wall_s"])
        warm = draft + cost_model.cost(call)
        cold = draft + cost_model.cost(call.model_copy(update={"cached_tokens": 0}))
        warm_total, cold_total = warm_total + warm, cold_total + cold
        rows.append(
            f"| {entry['id'].split('/')[0]} | {record['input_tokens']} | "
            f"{info['kept_tokens']} / {info['draft_tokens']} | "
            f"{'yes' if info['full_draft_kept'] else 'no'} | {warm:.3f} | {cold:.3f} |"
        )
    n = len(rows)
    print(
        f"draft {draft} units, prefill_weight {cost_model.prefill_weight}; one strong action = 1.0"
    )
    print(
        "| task (first decision) | prompt tokens | draft tokens kept | whole "
        "| cost, prompt cached | cost, prompt read |"
    )
    print("|---|---:|---:|---|---:|---:|")
    print("\n".join(rows))
    print(f"| **all {n}** | | | | **{warm_total / n:.3f}** | **{cold_total / n:.3f}** |")


def trajectory_table(path: Path, against: Path, start: int) -> None:
    a_runs = {r["task_id"]: r["summary"] for r in read_records(against, strict=True)}
    a_savings = {task: summary["savings"] for task, summary in a_runs.items()}
    number = {task: i for i, task in enumerate(heldout_task_ids(), start=1)}
    runs = sorted(read_records(path, strict=True), key=lambda r: number[r["task_id"]])
    print("| # | task | prompt tokens | cached by the strong model | kept / draft | against A |")
    print("|---:|---|---:|---:|---:|---:|")
    listed = []
    for r in runs:
        if number[r["task_id"]] < start or r["task_id"] not in a_savings:
            continue
        listed.append(r)
        first = r["ledger"][0]
        strong = next((c for c in first["calls"] if c["role"] == "strong"), None)
        if strong is None:
            continue
        share = strong["cached_tokens"] / strong["input_tokens"]
        kept = (
            f"{first['kept_tokens']} / {first['draft_tokens']}"
            if strong["purpose"] == "continue"
            else "no draft (strong alone)"
        )
        print(
            f"| {number[r['task_id']]} | {r['task_id']} | {strong['input_tokens']} | {share:.0%} | "
            f"{kept} | {r['summary']['savings'] - a_savings[r['task_id']]:+.3f} |"
        )
    if listed:
        against_a = [r["summary"]["savings"] - a_savings[r["task_id"]] for r in listed]
        cost = sum(r["summary"]["cost"] for r in listed)
        cost_a = sum(a_runs[r["task_id"]]["cost"] for r in listed)
        print(
            f"\n{len(listed)} tasks against A: median {statistics.median(against_a):+.4f}, "
            f"mean {statistics.mean(against_a):+.3f}, min {min(against_a):+.3f}; "
            f"{sum(x > 0 for x in against_a)} saving, {sum(x < 0 for x in against_a)} losing; "
            f"cost {cost / cost_a:.3f} of A's"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="the training-side F cache")
    parser.add_argument("--trajectories", type=Path, help="a mode-D or F trajectory cache (JSONL)")
    parser.add_argument("--against", type=Path, help="mode A's trajectory cache, same tasks")
    parser.add_argument("--from", dest="start", type=int, default=1, help="first task number")
    args = parser.parse_args()
    if args.trajectories:
        if not args.against:
            parser.error("--trajectories needs --against (mode A's cache)")
        trajectory_table(args.trajectories, args.against, args.start)
    else:
        training_table(args.cache)


if __name__ == "__main__":
    main()
