"""Choose, train and measure the probe verifier; write its held-out scores into the eval cache.

    nice -n 5 .venv/bin/python benchmarks/probe_features.py --out runs/probe/features
    .venv/bin/python benchmarks/probe_eval.py --features runs/probe/features \
        --out benchmarks/results/probe

Everything that is chosen is chosen on the training side only: layer, pooling, head and C by
5-fold grouped cross-validated AUROC on the training drafts (folds grouped by BFCL function group),
the threshold on the same drafts' out-of-fold scores (the largest simulated accuracy of mode D on
the valid training drafts whose relative cost there is at most ``--max-cost``, using the strong
model's mined actions on those examples). Only then are the 250 held-out examples read: AUROC of
"the greedy draft is right" overall and per category, beside the prompted judge, the proposer's
mean log-prob and the old LoRA verifier on the same drafts (their scores are in the evaluation
cache), and the probe's scores are written to that cache as the bundle's verifier scores, so
``spec-tool-node eval --bundle BUNDLE`` simulates mode D from it without loading a model.

Two label variants are trained: ``right`` (accept the draft iff it is right) and ``defer``
(reject it only if deferring to the strong model changes the outcome: the draft is wrong and the
strong model's action on that example is right; wrong drafts without a mined strong action are
left out).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from probe_features import PROPOSER, heldout_items, training_side, training_side_options

from spec_tool_node.actions import action_from_canonical
from spec_tool_node.bfcl.matching import matches
from spec_tool_node.bundle import Bundle
from spec_tool_node.config import CascadeConfig, ModelSpec
from spec_tool_node.evaluation.collector import ModelKeys, load_collection, model_key
from spec_tool_node.training.probe import (
    FeatureSet,
    HeadSpec,
    auroc,
    calls_tools,
    load_features,
    select_probe,
    strong_correct,
    train_head,
)
from spec_tool_node.verifiers.probe import LOGPROB_STATS

STRONG = "qwen2.5-coder-1.5b-instruct"
OLD_VERIFIER = "smollm2-135m-instruct"  # the LoRA verifier the probe is compared with
OLD_VERIFIER_ADAPTER = "benchmarks/results/verifier/bundle/adapters/verifier"
HEADS = (HeadSpec(0.01), HeadSpec(0.1), HeadSpec(1.0))
LAYERS = [[layer] for layer in (3, 6, 9, 12, 15, 18, 21, 24)]
"""Candidate layers (every third of the 0.5B's 24 blocks keeps the grid small on 2 cores)."""
MLP_HEADS = (HeadSpec(0.1, 64), HeadSpec(1.0, 64))
COSTS = {"cheap": 0.15, "verifier": 0.05, "strong": 1.0}


def choose_threshold(
    scores: np.ndarray,
    right: np.ndarray,
    strong: np.ndarray,
    max_cost: float,
    invalid: int,
    verifier_cost: float = COSTS["verifier"],
) -> tuple[float, list[dict]]:
    """The threshold with the best simulated accuracy of mode D on the valid training drafts
    whose relative cost on the whole training side (``invalid`` more drafts that always fall
    back, at the cheap draft's and the strong model's price) is at most ``max_cost`` (ties: the
    cheaper one). ``strong`` is 1/0, or nan where unknown: imputed with the strong model's
    accuracy on the known right drafts, or 1 when none is known (a reject then never loses).
    ``verifier_cost``: what scoring a draft costs (nothing for mode G's gate)."""
    known = ~np.isnan(strong)
    fill = (
        float(np.nanmean(strong[right.astype(bool) & known]))
        if (right.astype(bool) & known).any()
        else 1.0
    )
    g = np.where(known, strong, fill)
    table = []
    best = None
    for t in sorted({0.0, *np.round(scores, 6).tolist(), 1.0 + 1e-9}):
        accept = scores >= t
        accuracy = float(np.mean(np.where(accept, right, g)))
        valid = len(scores) / (len(scores) + invalid)
        cost = (
            COSTS["cheap"]
            + valid * (verifier_cost + float(np.mean(~accept)) * COSTS["strong"])
            + (1 - valid) * COSTS["strong"]
        )
        table.append(
            {
                "threshold": t,
                "accuracy": accuracy,
                "relative_cost": cost,
                "accept_rate": float(np.mean(accept)),
            }
        )
        if cost <= max_cost + 1e-12 and (best is None or accuracy > best[1] + 1e-12):
            best = (t, accuracy)
    assert best is not None
    return best[0], table


SPLIT = (
    "train = BFCL v4 live_* single-turn + even multi-turn ids; held-out = non-live single-turn + "
    "odd multi-turn ids (spec_tool_node.bfcl.split_of); nothing held-out was used for any choice"
)


def verifier_card(metrics: dict, *, label: str, max_cost: float, rebuild: str) -> dict:
    """The bundle card of the chosen probe: what it reads, its data, split, selection,
    threshold, held-out AUROC (measured after every choice) and how to rebuild it."""
    chosen = metrics[f"label {label}"]
    config = chosen["chosen"]
    card: dict = {
        "what": f"probe verifier: {PROPOSER} (frozen, bf16) reads the proposer's prompt + the "
        "draft as the chat template writes that reply; a head on its pooled hidden states "
        "gives p(ACCEPT)",
        "base model": PROPOSER,
        "layers": config["layers"],
        "pooling": config["pooling"],
        "log-prob statistics": ", ".join(config["logprob_stats"]) or "none",
        "head": config["head"]
        + (", one head per kind of draft (tool calls, text)" if config["per_kind"] else ""),
        "training data": f"{chosen['n']} valid greedy drafts of {PROPOSER} on BFCL v4 live_* "
        f"training examples, {chosen['accept']} labelled accept (label: {label})",
        "split": SPLIT,
        "selection": "5-fold cross-validation grouped by BFCL function group on the training "
        f"drafts; chosen cross-validated AUROC {config['cv_auroc']}",
        "threshold": f"{chosen['threshold']}: the best simulated mode-D accuracy on the training "
        f"drafts' out-of-fold scores at a training relative cost of at most {max_cost}",
    }
    if held := metrics.get("heldout"):
        scores = held["auroc"][f"probe ({label} labels)"]
        card[f"held-out AUROC ({held['valid drafts']} valid greedy drafts, after every choice)"] = {
            k: v for k, v in scores.items() if not math.isnan(v)
        }
    card["rebuild"] = rebuild
    return card


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--features", type=Path, nargs="+", required=True, help="feature cache folder(s)"
    )
    parser.add_argument("--out", type=Path, required=True)
    training_side_options(parser)
    parser.add_argument("--heldout-cache", type=Path, default=Path("benchmarks/results/bfcl/cache"))
    parser.add_argument(
        "--samples", type=Path, default=Path("benchmarks/results/bfcl/single_turn/samples.jsonl")
    )
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--max-cost", type=float, default=0.7)
    parser.add_argument(
        "--live",
        type=int,
        default=6,
        help="drafts scored live and timed (at least 1: the verifier cache's wall times are "
        "their mean)",
    )
    parser.add_argument(
        "--export",
        type=Path,
        help="also write these drafts' features at --export-layers as a small feature cache",
    )
    parser.add_argument("--export-layers", default="6,12,18,24")
    parser.add_argument(
        "--stat-sets",
        nargs="+",
        default=["none"],
        help="log-prob statistics the selection may append to the hidden states, one set per "
        "argument ('none', or names joined by commas, e.g. values_mean,values_min); with any set "
        "given, the statistics alone are a candidate too",
    )
    parser.add_argument(
        "--per-kind",
        action="store_true",
        help="also try one head per kind of draft (tool calls, text) against one head for all",
    )
    parser.add_argument("--bundle", type=Path, default=Path("benchmarks/results/probe/bundle"))
    parser.add_argument(
        "--label",
        choices=["right", "defer"],
        default="right",
        help="the variant whose head goes into the bundle",
    )
    args = parser.parse_args()
    if args.live < 1:
        parser.error("--live must be at least 1: the verifier cache's wall times come from it")
    args.out.mkdir(parents=True, exist_ok=True)
    parts = [f for f in map(load_features, args.features) if f is not None]
    if not parts:
        parser.error(f"no features in {[str(f) for f in args.features]}")
    features = FeatureSet(
        parts[0].base_model,
        parts[0].layers,
        parts[0].poolings,
        [i for f in parts for i in f.ids],
        [d for f in parts for d in f.drafts],
        np.concatenate([f.features for f in parts]),
        None
        if any(f.logprobs is None for f in parts)
        else np.concatenate([f.logprobs for f in parts]),
    )
    stat_sets = [[] if s == "none" else s.split(",") for s in args.stat_sets]
    layers = LAYERS + ([[]] if any(stat_sets) else [])
    per_kind = (False, True) if args.per_kind else (False,)
    assert all((f.layers, f.poolings) == (features.layers, features.poolings) for f in parts)

    # -- training side only ------------------------------------------------------------------
    train, n_invalid = training_side(args)
    examples = {e.id: e for e, _ in train}
    right = np.array([matches(action_from_canonical(d), e.gold) for e, d in train], dtype=float)
    strong_file = ModelKeys(strong=model_key(STRONG)).path(args.train_cache, "strong")
    strong = strong_correct(strong_file, examples) if strong_file.exists() else {}
    g = np.array([float(strong[e.id]) if e.id in strong else np.nan for e, _ in train])
    ftrain = features.select([(e.id, d) for e, d in train])
    results: dict = {
        "train": {
            "drafts": len(train),
            "right": int(right.sum()),
            "strong mined": int((~np.isnan(g)).sum()),
            "strong right where draft wrong": int(np.nansum(g * (1 - right))),
        }
    }
    variants = {}
    for label in ("right", "defer"):
        if label == "right":
            keep = np.ones(len(train), dtype=bool)
            y = right.astype(bool)
        else:
            keep = (right == 1) | ~np.isnan(g)
            y = ((right == 1) | (np.nan_to_num(g) == 0))[keep]
            if (~y).sum() < 5:  # too few drafts the strong model would fix to learn from
                results["label defer"] = {"skipped": f"{int((~y).sum())} reject labels"}
                continue
        fs = ftrain.select([(e.id, d) for (e, d), k in zip(train, keep, strict=True) if k])
        selection = select_probe(
            fs,
            y,
            layers=layers,
            heads=HEADS,
            stat_sets=stat_sets,
            # the defer labels have too few rejects per kind to fit a head on each
            per_kind=per_kind if label == "right" else (False,),
        )
        top = sorted(selection.rows, key=lambda r: -r["cv_auroc"])[:1]
        mlp = select_probe(
            fs,
            y,
            layers=[r["layers"] for r in top],
            poolings=sorted({r["pooling"] for r in top}),
            heads=MLP_HEADS,
            stat_sets=[top[0]["logprob_stats"]],
            per_kind=[top[0]["per_kind"]],
        )
        chosen = mlp if mlp.best["cv_auroc"] > selection.best["cv_auroc"] else selection
        best = chosen.best
        # out-of-fold scores for every training draft (also those the defer variant left out)
        full = select_probe(
            ftrain,
            right.astype(bool)
            if label == "right"
            else np.where(keep, (right == 1) | (np.nan_to_num(g) == 0), right == 1),
            layers=[best["layers"]],
            poolings=[best["pooling"]],
            heads=[HeadSpec(best["C"], best["hidden"])],
            stat_sets=[best["logprob_stats"]],
            per_kind=[best["per_kind"]],
        )
        threshold, table = choose_threshold(full.oof, right, g, args.max_cost, n_invalid)
        head = train_head(
            fs,
            y,
            layers=best["layers"],
            pooling=best["pooling"],
            spec=HeadSpec(best["C"], best["hidden"]),
            logprob_stats=best["logprob_stats"],
            per_kind=best["per_kind"],
        )
        head.threshold = threshold
        variants[label] = head
        results[f"label {label}"] = {
            "n": int(keep.sum()),
            "accept": int(y.sum()),
            "chosen": best,
            "cv table (top 10)": sorted(selection.rows + mlp.rows, key=lambda r: -r["cv_auroc"])[
                :10
            ],
            "threshold": threshold,
            "train simulation at threshold": next(r for r in table if r["threshold"] == threshold),
        }
        (args.out / f"cv_{label}.json").write_text(json.dumps(selection.rows + mlp.rows) + "\n")

    # -- held-out: read only now ---------------------------------------------------------------
    held = heldout_items(args.heldout_cache, args.limit)
    samples = [json.loads(line) for line in args.samples.open()]
    b_correct = {s["id"]: s["correct"] for s in samples if s["mode"] == "B"}
    a_correct = {s["id"]: s["correct"] for s in samples if s["mode"] == "A"}
    category = {s["id"]: s["category"] for s in samples if s["mode"] == "B"}
    ids = [e.id for e, _ in held]
    y_held = np.array([b_correct[i] for i in ids])
    fheld = features.select([(e.id, d) for e, d in held])
    proposer_key = model_key(PROPOSER)
    base = load_collection(
        args.heldout_cache,
        ModelKeys(
            proposer=proposer_key,
            strong=model_key(STRONG),
            verifier=model_key(OLD_VERIFIER, OLD_VERIFIER_ADAPTER),
        ),
    )
    signals = {
        f"probe ({label} labels)": head.predict(
            fheld.matrix(head.layers, head.pooling, head.logprob_stats),
            calls_tools(fheld.drafts),
        )
        for label, head in variants.items()
    }
    if fheld.logprobs is not None:  # reference: each statistic of the probe's own pass alone
        for j, stat in enumerate(LOGPROB_STATS):
            signals[f"teacher-forced {stat}"] = fheld.logprobs[:, j].astype(np.float64)
    signals["prompted strong judge"] = np.array([base[i].judge["p"][0] for i in ids])
    signals["proposer mean log-prob"] = np.array(
        [math.exp(base[i].draft["mean_logprob"]) for i in ids]
    )
    signals["old LoRA verifier"] = np.array([base[i].verifier["single"]["p"][0] for i in ids])
    cats = sorted(set(category[i] for i in ids))
    table = {}
    defer_held = np.array([b_correct[i] or not a_correct[i] for i in ids])
    for name, s in signals.items():
        row = {"overall": round(auroc(s, y_held), 3), "defer label": round(auroc(s, defer_held), 3)}
        for c in cats:
            m = np.array([category[i] == c for i in ids])
            row[c] = round(auroc(s[m], y_held[m]), 3)
        table[name] = row
    results["heldout"] = {
        "valid drafts": len(ids),
        "right": int(y_held.sum()),
        "auroc": table,
        "per category counts": {
            c: [
                int(sum(category[i] == c for i in ids)),
                int(sum(y_held[j] for j, i in enumerate(ids) if category[i] == c)),
            ]
            for c in cats
        },
    }
    # post-hoc reference (not used for any choice): fixed configurations on held-out
    ref = {}
    for pooling in features.poolings:
        for layer in (6, 12, 18, 24):
            h = train_head(
                ftrain, right.astype(bool), layers=[layer], pooling=pooling, spec=HeadSpec(0.1)
            )
            ref[f"{pooling} layer {layer} C=0.1"] = round(
                auroc(h.predict(fheld.matrix([layer], pooling)), y_held), 3
            )
    results["heldout"]["fixed configurations (reference only)"] = ref

    # -- the bundle and its cache scores -------------------------------------------------------
    head = variants[args.label]
    probe_dir = args.out / "probe_head"
    head.card = {
        "training data": f"{results['label ' + args.label]['n']} valid greedy drafts of "
        f"{PROPOSER} on BFCL live_* training examples",
        "label": args.label,
    }
    head.save(probe_dir)
    config = CascadeConfig(
        mode="D",
        threshold=round(head.threshold, 6),
        proposer=ModelSpec(model=PROPOSER),
        strong=ModelSpec(model=STRONG),
        verifier=ModelSpec(model=PROPOSER, adapter=str(probe_dir)),
    )
    card = verifier_card(
        results, label=args.label, max_cost=args.max_cost, rebuild=shlex.join(sys.argv)
    )
    Bundle(config=config, card=card).save_pretrained(args.bundle)
    bundle = Bundle.from_pretrained(args.bundle)
    key = model_key(bundle.config.verifier.model, bundle.config.verifier.adapter)
    path = ModelKeys(proposer=proposer_key, verifier=key).path(args.heldout_cache, "verifier")
    scores = signals[f"probe ({args.label} labels)"]
    # Live check: the bundle's verifier on the first --live drafts, timed; its scores against
    # those from the cached (float16) features. The cache records carry each pair's real token
    # count and the mean live wall time.
    from langchain_core.messages import convert_to_messages

    from spec_tool_node.verifiers.probe import ProbeVerifier, render_draft

    live = ProbeVerifier.from_pretrained(bundle.config.verifier.adapter, model=PROPOSER)
    walls, diffs = [], []
    for (e, d), p in list(zip(held, scores, strict=True))[: args.live]:
        verdict = live.score(convert_to_messages(e.messages), e.tools, action_from_canonical(d))
        walls.append(verdict.record.wall_s)
        diffs.append(abs(verdict.p_accept - float(p)))
    wall = float(np.mean(walls))
    results["live check"] = {
        "drafts": len(walls),
        "mean wall s": round(wall, 3),
        "max |p live - p cached features|": float(max(diffs)),
    }
    tokens = {
        e.id: len(
            render_draft(
                live.tokenizer,
                e.messages,
                e.tools,
                action_from_canonical(d),
                max_length=live.max_length,
            ).input_ids
        )
        for e, d in held
    }
    with path.open("w") as f:
        for (e, d), p in zip(held, scores, strict=True):
            record = {
                "role": "verifier",
                "model": PROPOSER,
                "purpose": "verify",
                "input_tokens": tokens[e.id],
                "output_tokens": 0,
                "wall_s": wall,
                "cost": 0.0,
                "ok": True,
                "error": None,
            }
            single = {
                "drafts": [d],
                "p": [float(p)],
                "records": [record],
                "exception": None,
                "wall_s": wall,
            }
            f.write(json.dumps({"id": e.id, "single": single}) + "\n")
    results["verifier cache"] = str(path)
    if args.export:
        keep = [int(x) for x in args.export_layers.split(",")]
        both = [ftrain, fheld]
        args.export.mkdir(parents=True, exist_ok=True)
        (args.export / "features.json").write_text(
            json.dumps(
                {
                    "base_model": features.base_model,
                    "layers": keep,
                    "poolings": features.poolings,
                    "max_length": 4096,
                },
                indent=2,
            )
            + "\n"
        )
        index = [features.layers.index(layer) for layer in keep]
        stats = (
            {}
            if features.logprobs is None
            else {"logprobs": np.concatenate([f.logprobs for f in both])}
        )
        np.savez_compressed(
            args.export / "part-00000.npz",
            ids=np.array([i for f in both for i in f.ids]),
            drafts=np.array([d for f in both for d in f.drafts]),
            features=np.concatenate([f.features[:, :, index] for f in both]).astype(np.float16),
            **stats,
        )
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
