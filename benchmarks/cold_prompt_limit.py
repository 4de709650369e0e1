"""Calibrate ``max_uncached_prompt_tokens`` on training-side continuations (no model is called).

    .venv/bin/python benchmarks/cold_prompt_limit.py \
        --cache benchmarks/results/first_decision/cache --cache benchmarks/results/cold_prompt/cache

Reads mode-F eval caches (``spec-tool-node eval --modes F``): per decision the proposer's draft,
the strong model's action and its continuation of the draft. Each decision is priced under the
bundle's cost model as it would run live in mode F at the moment it was met: the continuation
reads what the strong model's action read then (its uncached prompt tokens, ``U``) plus the
checked draft, and the draft costs what the proposer's call costs. Its saving is one strong
action minus both. A limit ``T`` skips the draft wherever ``U > T`` (saving 0 there: the strong
model acts alone). The chosen limit maximises the summed training-side saving; every limit
between the largest ``U`` it keeps and the smallest it skips saves the same here, and the
midpoint of that gap is the choice. ``--write BUNDLE`` sets it in that bundle's
``cascade.json`` with the evidence in its card (as ``train calibrate --write`` does thresholds).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from spec_tool_node.bundle import Bundle, render_card
from spec_tool_node.cascade import call_record
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CostModel
from spec_tool_node.evaluation.collector import rebuild_message
from spec_tool_node.jsonl import read_records, write_text

BUNDLE = Path("benchmarks/results/default_bundle")


def _records(cache: Path, role: str) -> dict[str, dict]:
    (path,) = cache.glob(f"{role}--*.jsonl")
    return {r["id"]: r for r in read_records(path, strict=True)}


def decisions(cache: Path, cost_model: CostModel) -> list[dict]:
    """One row per decision of ``cache`` with a draft, an action and a continuation."""
    drafts, actions = _records(cache, "proposer"), _records(cache, "strong")
    rows = []
    for key, entry in _records(cache, "continued").items():
        act, draft, cont = actions[key]["act"], drafts[key]["draft"], entry["continued"]
        uncached = act["input_tokens"] - act.get("cached_tokens", 0)
        continued = call_record(
            "strong", cont["model_name"], "continue", rebuild_message(cont), cont["wall_s"]
        )
        # as live: the continuation finds what the action found cached, and reads the rest
        continued = continued.model_copy(update={"cached_tokens": act["input_tokens"] - uncached})
        drafted = call_record(
            "cheap", draft["model_name"], "draft", rebuild_message(draft), draft["wall_s"]
        )
        strong = call_record("strong", act["model_name"], "act", rebuild_message(act), 0.0)
        cost = cost_model.cost(drafted) + cost_model.cost(continued)
        baseline = cost_model.cost(strong)
        rows.append(
            {
                "id": key,
                "uncached": uncached,
                "kept": cont["lossless"]["kept_tokens"],
                "written": cont["lossless"]["kept_tokens"] + cont["output_tokens"],
                "cost": cost / baseline,
                "saving": (baseline - cost) / baseline,
            }
        )
    return rows


def choose(rows: list[dict]) -> tuple[int, float, int, int]:
    """The limit with the largest summed saving, its saving, and the gap it sits in."""
    ordered = sorted(rows, key=lambda r: r["uncached"])
    best, best_at, total = 0.0, -1, 0.0  # keep none: save nothing
    for i, row in enumerate(ordered):
        total += row["saving"]
        if total > best:
            best, best_at = total, i
    kept_up_to = ordered[best_at]["uncached"] if best_at >= 0 else 0
    skipped_from = ordered[best_at + 1]["uncached"] if best_at + 1 < len(ordered) else kept_up_to
    return (kept_up_to + skipped_from) // 2, best, kept_up_to, skipped_from


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, action="append", required=True)
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="its cost model prices")
    parser.add_argument("--json", type=Path, help="also write the rows and the choice here")
    parser.add_argument("--write", type=Path, metavar="BUNDLE", help="set the limit in BUNDLE")
    args = parser.parse_args()
    cost_model = Bundle.from_pretrained(args.bundle).config.cost_model
    rows = [row for cache in args.cache for row in decisions(cache, cost_model)]
    limit, saved, kept_up_to, skipped_from = choose(rows)
    print("| decision | uncached prompt tokens | kept / written | F cost (one action = 1) |")
    print("|---|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: r["uncached"]):
        print(f"| {r['id']} | {r['uncached']} | {r['kept']} / {r['written']} | {r['cost']:.3f} |")
    n = len(rows)
    with_limit = [r["cost"] if r["uncached"] <= limit else 1.0 for r in rows]
    print(
        f"\n{n} decisions; mean F cost {statistics.fmean(r['cost'] for r in rows):.3f} "
        f"drafting always, {statistics.fmean(with_limit):.3f} with the limit"
    )
    print(
        f"max_uncached_prompt_tokens = {limit} (any value from {kept_up_to} to "
        f"{skipped_from - 1} saves the same here: {saved:.3f} strong actions in all)"
    )
    if args.json:
        choice = {"max_uncached_prompt_tokens": limit, "gap": [kept_up_to, skipped_from]}
        args.json.write_text(json.dumps({"choice": choice, "rows": rows}, indent=1) + "\n")
    if args.write:
        sources = " ".join(f"--cache {c}" for c in args.cache)
        why = (
            f"{limit}: at a decision that would draft beside a strong model, the proposer is "
            "not asked when the strong model would read more prompt tokens than this that no "
            f"prefix cache holds. Chosen on {n} training-side mode-F "
            f"decisions (no held-out data): the largest summed saving; any value from "
            f"{kept_up_to} to {skipped_from - 1} saves the same there (mean cost "
            f"{statistics.fmean(r['cost'] for r in rows):.3f} of a strong action drafting "
            f"always, {statistics.fmean(with_limit):.3f} with the limit). Command: python "
            f"benchmarks/cold_prompt_limit.py {sources} --write {args.write}"
        )
        write_setting(args.write, limit, why)


def write_setting(bundle: Path, limit: int, why: str) -> None:
    """Set the limit in ``bundle``'s config, its reason in the card, and re-render the README."""
    config_path, card_path = bundle / "cascade.json", bundle / "card.json"
    raw = json.loads(config_path.read_text())
    raw["max_uncached_prompt_tokens"] = limit
    config = CascadeConfig.model_validate(raw)  # fails before anything is written
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card["max_uncached_prompt_tokens"] = why
    write_text(config_path, json.dumps(raw, indent=2) + "\n")
    write_text(card_path, json.dumps(card, indent=2) + "\n")
    write_text(bundle / "README.md", render_card(config, card))
    print(f"max_uncached_prompt_tokens {limit} written to {config_path}")


if __name__ == "__main__":
    main()
