"""How well the strong model's own check orders the proposer's drafts, per BFCL category.

    .venv/bin/python benchmarks/agreement_auroc.py

Reads the quiet side-by-side run (``benchmarks/results/lossless/quiet/``): for each valid greedy
draft of the 250 held-out examples, mode F's check of it (the share of its tokens the 1.5B kept,
and whether it kept them all) and whether the draft is right (mode B's ``correct``). Prints the
AUROC of each signal for "the draft is right", per category. No model is called.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from sklearn.metrics import roc_auc_score

RUN = Path("benchmarks/results/lossless/quiet")


def main() -> None:
    correct = {}
    for line in (RUN / "samples.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["mode"] == "B":
            correct[r["id"]] = r["correct"]
    groups: dict[str, list[tuple[float, bool, bool]]] = defaultdict(list)
    for line in (RUN / "side_by_side.jsonl").read_text().splitlines():
        r = json.loads(line)
        if not r["draft"]["valid"]:
            continue
        check = r["F"]["lossless"]
        point = (
            check["kept_tokens"] / max(check["draft_tokens"], 1),
            check["full_draft_kept"],
            correct[r["id"]],
        )
        groups[r["category"]].append(point)
        groups["all"].append(point)
    print("| category | drafts | right | AUROC kept share | AUROC whole draft kept |")
    print("|---|---:|---:|---:|---:|")
    for category, points in groups.items():
        right = [p[2] for p in points]
        if len(set(right)) < 2:
            print(f"| {category} | {len(points)} | {sum(right)} | one class | one class |")
            continue
        share = roc_auc_score(right, [p[0] for p in points])
        whole = roc_auc_score(right, [p[1] for p in points])
        print(f"| {category} | {len(points)} | {sum(right)} | {share:.3f} | {whole:.3f} |")


if __name__ == "__main__":
    main()
