"""Summarise lossless_overlap.py's rows: wall against A (one thread and two), cost, same action."""

from __future__ import annotations

import json
import statistics as st
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/lossless/overlap/rows.jsonl"
with open(path, encoding="utf-8") as lines:
    rows = [json.loads(line) for line in lines]
C = tuple(sorted(rows[0]["order"], key=lambda c: (not c.startswith("A"), c)))
A = C[0]  # the A configuration the others are measured against
print("n", len(rows), "load median", round(st.median(r["load_1min"] for r in rows), 2))
tot = {c: sum(r[c]["wall_s"] for r in rows) for c in C}
for c in C:
    print(
        c,
        "wall_s sum",
        round(tot[c], 1),
        f"vs {A}",
        round(tot[c] / tot[A], 3),
        *(["vs A2", round(tot[c] / tot["A_2threads"], 3)] if "A_2threads" in C else []),
        f"median ratio vs {A}",
        round(st.median(r[c]["wall_s"] / r[A]["wall_s"] for r in rows), 3),
        "cost",
        round(sum(r[c]["cost"] for r in rows) / len(rows), 3),
        f"same action as {A}",
        sum(r[c]["action"] == r[A]["action"] for r in rows),
    )
for cat in dict.fromkeys(r["category"] for r in rows):
    rs = [r for r in rows if r["category"] == cat]
    print(
        cat,
        {c: round(sum(r[c]["wall_s"] for r in rs) / sum(r[A]["wall_s"] for r in rs), 2) for c in C},
    )
for c in (c for c in C if c.startswith("F")):
    checks = [next(x for x in r[c]["calls"] if x["purpose"] == "continue") for r in rows]
    drafts = [next(x for x in r[c]["calls"] if x["purpose"] == "draft") for r in rows]
    print(
        c,
        "check (continue call) wall median",
        round(st.median(x["wall_s"] for x in checks), 2),
        "draft wall median",
        round(st.median(x["wall_s"] for x in drafts), 2),
        "draft tokens",
        sum(x.get("output_tokens", 0) for x in drafts),
    )
