"""Choose and train mode G's probe on the training side, then measure it on the held-out drafts.

    .venv/bin/python benchmarks/gate_probe_eval.py --features runs/probe/features_v3 \
        --heldout benchmarks/results/gate_probe/heldout_drafting.npz \
        --out benchmarks/results/gate_probe

Mode G's probe is the probe verifier restricted to the ``drafting`` pooling: the mean of the
hidden states that wrote the draft, which the proposer's own generation computes, so the gate
costs no forward pass. Training side only: layer and C by 5-fold cross-validated AUROC grouped by
BFCL function group (features from one teacher-forced pass over prompt + the draft as the chat
template writes it, ``benchmarks/probe_features.py``), the threshold on the same drafts'
out-of-fold scores (best simulated accuracy at a relative cost of at most ``--max-cost``, a
gate decision costing nothing). Only then is the held-out side read: the features of the 250
held-out drafting passes themselves (``benchmarks/gate_probe_collect.py``), AUROC of "the draft is
right" overall and per category beside the log-prob gate, and, when given, the same head on
teacher-forced held-out features (how far the re-rendered draft is from the drafting pass).
Writes the head, a mode-G bundle and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from probe_eval import HEADS, LAYERS, MLP_HEADS, STRONG, choose_threshold
from probe_features import PROPOSER, heldout_items, training_side, training_side_options

from spec_tool_node import bfcl
from spec_tool_node.actions import action_from_canonical
from spec_tool_node.bfcl.matching import matches
from spec_tool_node.bundle import Bundle
from spec_tool_node.config import CascadeConfig, ModelSpec
from spec_tool_node.evaluation.collector import (
    ModelKeys,
    load_collection,
    model_key,
    rebuild_message,
)
from spec_tool_node.training.probe import (
    HeadSpec,
    auroc,
    load_features,
    select_probe,
    strong_correct,
    train_head,
)
from spec_tool_node.verifiers.gate import gate_signal

POOLING = "drafting"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--features", type=Path, required=True, help="training feature cache")
    parser.add_argument("--heldout", type=Path, required=True, help="heldout_drafting.npz")
    parser.add_argument("--heldout-cache", type=Path, help="the collector cache it came from")
    parser.add_argument(
        "--teacher-forced", type=Path, help="held-out teacher-forced feature cache (comparison)"
    )
    parser.add_argument("--out", type=Path, required=True)
    training_side_options(parser)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument(
        "--samples", type=Path, default=Path("benchmarks/results/bfcl/single_turn/samples.jsonl")
    )
    parser.add_argument("--max-cost", type=float, default=0.7)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    features = load_features(args.features)
    assert features is not None, f"no features in {args.features}"

    # -- training side only ------------------------------------------------------------------
    have = set(zip(features.ids, features.drafts, strict=True))
    items, n_invalid = training_side(args)
    train = [(e, d) for e, d in items if (e.id, d) in have]
    examples = {e.id: e for e, _ in train}
    right = np.array([matches(action_from_canonical(d), e.gold) for e, d in train], dtype=float)
    strong_file = ModelKeys(strong=model_key(STRONG)).path(args.train_cache, "strong")
    strong = strong_correct(strong_file, examples) if strong_file.exists() else {}
    g = np.array([float(strong[e.id]) if e.id in strong else np.nan for e, _ in train])
    ftrain = features.select([(e.id, d) for e, d in train])
    y = right.astype(bool)
    selection = select_probe(ftrain, y, layers=LAYERS, poolings=[POOLING], heads=HEADS)
    top = max(selection.rows, key=lambda r: r["cv_auroc"])
    mlp = select_probe(ftrain, y, layers=[top["layers"]], poolings=[POOLING], heads=MLP_HEADS)
    best = (mlp if mlp.best["cv_auroc"] > selection.best["cv_auroc"] else selection).best
    spec = HeadSpec(best["C"], best["hidden"])
    oof = select_probe(ftrain, y, layers=[best["layers"]], poolings=[POOLING], heads=[spec]).oof
    threshold, table = choose_threshold(oof, right, g, args.max_cost, n_invalid, 0.0)
    head = train_head(ftrain, y, layers=best["layers"], pooling=POOLING, spec=spec)
    head.threshold = threshold
    results: dict = {
        "train": {
            "drafts": len(train),
            "right": int(right.sum()),
            "invalid drafts (always fall back)": n_invalid,
            "chosen": best,
            "cv table (top 10)": sorted(selection.rows + mlp.rows, key=lambda r: -r["cv_auroc"])[
                :10
            ],
            "threshold": threshold,
            "train simulation at threshold": next(r for r in table if r["threshold"] == threshold),
        }
    }
    (args.out / "cv.json").write_text(json.dumps(selection.rows + mlp.rows) + "\n")

    # -- held-out: read only now ---------------------------------------------------------------
    held = np.load(args.heldout)
    index = [int(i) for i in held["layers"]].index
    golds = {e.id: e for e in bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, args.limit)}
    rows = [i for i, v in enumerate(held["valid"]) if v]
    ids = [str(held["ids"][i]) for i in rows]
    actions = [str(held["actions"][i]) for i in rows]
    y_held = np.array(
        [
            matches(action_from_canonical(a), golds[i].gold)
            for i, a in zip(ids, actions, strict=True)
        ]
    )
    x = np.concatenate(
        [held["features"][rows][:, index(layer)].astype(np.float32) for layer in head.layers],
        axis=1,
    )
    signals = {"G probe (drafting pass)": head.predict(x)}
    if args.heldout_cache is not None:
        fresh = load_collection(args.heldout_cache, ModelKeys(proposer=model_key(PROPOSER)))
        signals["G log-prob gate (argument values)"] = np.array(
            [gate_signal(rebuild_message(fresh[i].draft)) or 0.0 for i in ids]
        )
        signals["proposer mean log-prob"] = np.array(
            [math.exp(fresh[i].draft["mean_logprob"]) for i in ids]
        )
    if args.teacher_forced is not None:
        forced = load_features(args.teacher_forced)
        assert forced is not None
        items = {e.id: d for e, d in heldout_items(Path("benchmarks/results/bfcl/cache"), 50)}
        both = [j for j, i in enumerate(ids) if items.get(i) == actions[j]]
        xf = forced.select([(ids[j], actions[j]) for j in both]).matrix(head.layers, POOLING)
        live, forced_p = signals["G probe (drafting pass)"][both], head.predict(xf)
        gap = np.abs(forced_p - live)
        results["teacher-forced comparison"] = {
            "drafts": len(both),
            "AUROC drafting pass": round(auroc(live, y_held[both]), 3),
            "AUROC teacher-forced": round(auroc(forced_p, y_held[both]), 3),
            "max |p drafting pass - p teacher-forced|": float(gap.max()),
            "median |p drafting pass - p teacher-forced|": float(np.median(gap)),
            "drafts whose p differs by more than 0.1": int((gap > 0.1).sum()),
        }
    category = {i: golds[i].meta["category"] for i in ids}
    cats = sorted(set(category.values()))
    table_out = {}
    for name, s in signals.items():
        row = {"overall": round(auroc(s, y_held), 3)}
        for c in cats:
            m = np.array([category[i] == c for i in ids])
            row[c] = round(auroc(s[m], y_held[m]), 3) if 0 < y_held[m].sum() < m.sum() else None
        table_out[name] = row
    results["heldout"] = {
        "valid drafts": len(ids),
        "right": int(y_held.sum()),
        "auroc": table_out,
        "accepted at the threshold": int((signals["G probe (drafting pass)"] >= threshold).sum()),
    }

    # reference only (read on held-out, not used for any choice): mode G at other thresholds,
    # calls basis (a draft 0.15, a fallback one strong unit), mode A's committed actions
    a_correct = {
        r["id"]: r["correct"] for r in map(json.loads, args.samples.open()) if r["mode"] == "A"
    }
    probe_p = dict(zip(ids, signals["G probe (drafting pass)"], strict=True))
    draft_right = dict(zip(ids, y_held, strict=True))
    everyone = [str(i) for i in held["ids"]]
    sweep = []
    for t in sorted({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, threshold}):
        accepted = [i for i in everyone if probe_p.get(i, -1.0) >= t]
        correct = sum(draft_right[i] for i in accepted) + sum(
            a_correct[i] for i in everyone if i not in set(accepted)
        )
        sweep.append(
            {
                "threshold": round(t, 6),
                "accuracy": round(correct / len(everyone), 4),
                "relative_cost": round(0.15 + 1.0 - len(accepted) / len(everyone), 4),
                "accept_rate": round(len(accepted) / len(everyone), 4),
            }
        )
    results["heldout"]["threshold sweep (reference only)"] = sweep

    # -- the head and a mode-G bundle ----------------------------------------------------------
    probe_dir = args.out / "probe_head"
    head.card = {
        "training data": f"{len(train)} valid greedy drafts of {PROPOSER} on BFCL live_* "
        "training examples (teacher-forced drafting pooling)",
        "label": "the draft is right",
        "chosen": best,
    }
    head.save(probe_dir)
    config = CascadeConfig(
        mode="G",
        gate_threshold=round(threshold, 6),
        proposer=ModelSpec(model=PROPOSER),
        strong=ModelSpec(model=STRONG),
        verifier=ModelSpec(model=PROPOSER, adapter=str(probe_dir)),
    )
    Bundle(config=config, card={"gate probe": best}).save_pretrained(args.out / "bundle")
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
