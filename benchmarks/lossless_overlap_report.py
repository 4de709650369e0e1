"""Summarise lossless_overlap.py's rows: wall against A (one thread and two), cost, same action."""

from __future__ import annotations

import json
import statistics as st
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/lossless/overlap/rows.jsonl"
with open(path, encoding="utf-8") as lines:
    rows = [json.loads(line) for line in lines]
C = ("A", "F", "F_ahead", "A_2threads")
print("n", len(rows), "load median", round(st.median(r["load_1min"] for r in rows), 2))
tot = {c: sum(r[c]["wall_s"] for r in rows) for c in C}
for c in C:
    print(
        c,
        "wall_s sum",
        round(tot[c], 1),
        "vs A",
        round(tot[c] / tot["A"], 3),
        "vs A2",
        round(tot[c] / tot["A_2threads"], 3),
        "median ratio vs A",
        round(st.median(r[c]["wall_s"] / r["A"]["wall_s"] for r in rows), 3),
        "cost",
        round(sum(r[c]["cost"] for r in rows) / len(rows), 3),
        "same action as A",
        sum(r[c]["action"] == r["A"]["action"] for r in rows),
    )
for cat in dict.fromkeys(r["category"] for r in rows):
    rs = [r for r in rows if r["category"] == cat]
    print(
        cat,
        {
            c: round(sum(r[c]["wall_s"] for r in rs) / sum(r["A"]["wall_s"] for r in rs), 2)
            for c in C
        },
    )
print(
    "F_ahead check wall (continue call) median",
    round(
        st.median(
            next(x["wall_s"] for x in r["F_ahead"]["calls"] if x["purpose"] == "continue")
            for r in rows
        ),
        2,
    ),
    "F check median",
    round(
        st.median(
            next(x["wall_s"] for x in r["F"]["calls"] if x["purpose"] == "continue") for r in rows
        ),
        2,
    ),
)
