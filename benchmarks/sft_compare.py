"""Held-out action accuracy of the proposer before and after LoRA SFT, on the same examples.

    python benchmarks/sft_compare.py --examples runs/data/heldout.jsonl \
        --before runs/drafts/heldout.jsonl --after runs/drafts/heldout-sft.jsonl \
        --out benchmarks/results/sft

Both draft caches come from ``spec-tool-node train mine`` (greedy, same budget), the first with
the base model and the second with ``--adapter``. Only examples present in both are counted, so
the two columns are on the same ids. Writes ``metrics.json`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from spec_tool_node.example_files import read_examples
from spec_tool_node.training.data import load_draft_cache


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--examples", type=Path, required=True, help="held-out examples JSONL")
    parser.add_argument("--before", type=Path, required=True, help="draft cache of the base model")
    parser.add_argument("--after", type=Path, required=True, help="draft cache with the adapter")
    parser.add_argument(
        "--training", type=Path, help="the adapter's training.json (config and losses, quoted)"
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    args = parser.parse_args()

    examples = {e.id: e for e in read_examples(args.examples)}
    before, after = load_draft_cache(args.before), load_draft_cache(args.after)
    ids = sorted(set(before) & set(after) & set(examples))
    if not ids:
        raise SystemExit("the two draft caches share no example of --examples")
    table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for i in ids:
        for name, cache in (("before", before), ("after", after)):
            for group in (i.rsplit("_", 1)[0], "all"):
                cell = table[group][name]
                cell[0] += 1
                cell[1] += bool(cache[i].get("valid"))
                cell[2] += bool(cache[i].get("right"))
    metrics = {
        group: {
            name: {"n": n, "valid": valid / n, "accuracy": right / n}
            for name, (n, valid, right) in row.items()
        }
        for group, row in table.items()
    }
    if args.training:
        training = json.loads(args.training.read_text())
        metrics["training"] = {
            "config": training["config"],
            "global_step": training["global_step"],
            "losses": [h["loss"] for h in training["log_history"] if "loss" in h],
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    lines = [
        "# Proposer LoRA SFT: held-out action accuracy before and after",
        "",
        f"{len(ids)} held-out BFCL examples, the same ids in both columns; greedy drafts.",
        "",
        "| category | n | valid before | valid after | accuracy before | accuracy after |",
        "|---|---|---|---|---|---|",
    ]
    for group in sorted(table, key=lambda g: (g == "all", g)):
        b, a = metrics[group]["before"], metrics[group]["after"]
        lines.append(
            f"| {group} | {b['n']} | {b['valid']:.2f} | {a['valid']:.2f} | "
            f"{b['accuracy']:.2f} | {a['accuracy']:.2f} |"
        )
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
