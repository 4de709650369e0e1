"""Mode D with and without ``accept_calls``, replayed from a collection cache (no model call).

    .venv/bin/python benchmarks/accept_calls.py \\
        --data benchmarks/results/accept_calls/train_subset.jsonl \\
        --cache benchmarks/results/accept_calls/train_cache \\
        --bundle benchmarks/results/default_bundle

The cache must hold what ``spec-tool-node eval --modes A,B,D --continue-fallbacks`` collects on the
same examples: greedy drafts, verifier scores, strong actions and the strong model's continuation
of every draft, so each fallback is priced as the live cascade pays it. Modes A, B, D (the
bundle's config) and D with ``accept_calls`` off are replayed on every example whose records are
complete (a collection still running is read as far as it got), under the bundle's cost model.
Prints accuracy and relative cost per category and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from spec_tool_node.bundle import Bundle
from spec_tool_node.evaluation.collector import ModelKeys, load_collection, model_key
from spec_tool_node.evaluation.datasets import read_dataset_file
from spec_tool_node.evaluation.simulator import SampleResult, replay

VARIANTS = {
    "A": ("A", {}),
    "B": ("B", {}),
    "D": ("D", {"accept_calls": True}),
    "D calls to strong": ("D", {"accept_calls": False}),
}


def table(results: dict[str, list[SampleResult]]) -> dict[str, dict[str, Any]]:
    """Accuracy and cost relative to A, per category and over all, for each variant."""
    groups: dict[str, set[str]] = {"all": {r.id for r in results["A"]}}
    for r in results["A"]:
        groups.setdefault(r.category or "", set()).add(r.id)
    out: dict[str, dict[str, Any]] = {}
    for group, ids in groups.items():
        base = sum(r.cost for r in results["A"] if r.id in ids)
        out[group] = {
            name: {
                "n": len(ids),
                "correct": sum(r.correct for r in rows if r.id in ids),
                "relative_cost": round(sum(r.cost for r in rows if r.id in ids) / base, 3),
                "accepted": sum(r.path == "accepted" for r in rows if r.id in ids),
            }
            for name, rows in results.items()
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="the examples (JSONL)")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="write the table as JSON")
    args = parser.parse_args()
    bundle = Bundle.from_pretrained(args.bundle)
    config = bundle.config
    keys = ModelKeys(
        **{
            role: model_key(spec.model, spec.adapter)
            for role in ("proposer", "strong", "verifier")
            if (spec := getattr(config, role)) is not None
        }
    )
    collection = load_collection(args.cache, keys)
    examples = read_dataset_file(args.data)
    complete = [
        e
        for e in examples
        if (c := collection.records.get(e.id)) is not None
        and c.draft
        and c.strong
        and (c.continued or not c.draft.get("valid"))
        and (c.verifier or not c.draft.get("valid"))
    ]
    results = {
        name: [
            replay(
                e,
                collection[e.id],
                config.model_copy(update={"mode": mode, **update}),
                continue_fallbacks=True,
            )
            for e in complete
        ]
        for name, (mode, update) in VARIANTS.items()
    }
    rows = table(results)
    print(f"{len(complete)} of {len(examples)} examples complete; bundle {args.bundle}")
    print("| group | n | " + " | ".join(f"{v} acc / cost / accepted" for v in VARIANTS) + " |")
    for group, cells in rows.items():
        n = next(iter(cells.values()))["n"]
        shown = [
            f"{c['correct'] / n:.1%} / {c['relative_cost']:.2f} / {c['accepted']}"
            for c in cells.values()
        ]
        print(f"| {group} | {n} | " + " | ".join(shown) + " |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"complete": len(complete), "table": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
