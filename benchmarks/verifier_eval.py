"""Score the proposer's held-out drafts with the trained verifier and two baselines.

    python benchmarks/verifier_eval.py --examples runs/data/heldout.jsonl \
        --drafts runs/drafts/heldout.jsonl --verifier-base smollm2-135m-instruct \
        --verifier-adapter runs/verifier/adapter --judge qwen2.5-coder-1.5b-instruct \
        --out benchmarks/results/verifier

On the same valid drafts (invalid ones never reach a verifier) it reports AUROC of "the draft is
right" for: the trained verifier, the prompted strong-model judge (mode C), the proposer's own
mean token log-prob and, with ``--strong-likelihood``, the strong model's mean token log-prob of
the draft written as its own chat template writes that action (one forward pass, no generation;
comparing the parsed action, not the proposer's surface form). The threshold is calibrated on one
half of the examples (every other id) to a target precision and precision/recall are reported on
the other half. Scores are cached per example (JSONL), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from langchain_core.messages import convert_to_messages
from tqdm.auto import tqdm

from spec_tool_node.actions import action_from_canonical
from spec_tool_node.example_files import read_examples
from spec_tool_node.training.data import load_draft_cache
from spec_tool_node.training.verifier import auroc, calibrate, precision_recall


def cached_scores(path: Path, todo: list, score, scorer: str) -> dict[str, float]:
    """Scores by example id, computed once per ``scorer`` (model and adapter) and appended."""
    records = map(json.loads, path.read_text().splitlines()) if path.exists() else []
    done = {r["id"]: r["p"] for r in records if r.get("scorer") == scorer}
    with path.open("a") as f:
        for ex, draft in tqdm([t for t in todo if t[0].id not in done], desc=path.stem):
            done[ex.id] = score(ex, draft)
            f.write(json.dumps({"id": ex.id, "p": done[ex.id], "scorer": scorer}) + "\n")
            f.flush()
    return {ex.id: done[ex.id] for ex, _ in todo}


def strong_likelihood(model, ex, draft) -> float:
    """exp(mean log-prob) of ``draft`` as ``model``'s template renders it after the context."""
    from spec_tool_node.actions import action_to_message
    from spec_tool_node.chat_models.templates import render_reply

    _, completion = render_reply(model._tokenizer, ex.messages, ex.tools, action_to_message(draft))
    score = model.score_continuation(ex.messages, completion, ex.tools)
    return math.exp(sum(score.logprobs) / len(score.logprobs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--examples", type=Path, required=True, help="held-out examples JSONL")
    parser.add_argument(
        "--drafts", type=Path, required=True, help="proposer draft cache (mined with --signals)"
    )
    parser.add_argument("--verifier-base", required=True, help="verifier base model")
    parser.add_argument("--verifier-adapter", help="trained verifier adapter")
    parser.add_argument("--judge", help="strong model prompted as judge (mode C baseline)")
    parser.add_argument(
        "--strong-likelihood", help="strong model whose log-prob of the draft is a baseline"
    )
    parser.add_argument(
        "--max-length", type=int, help="cut verifier prompts from the left as in training"
    )
    parser.add_argument("--precision", type=float, default=0.9, help="calibration target precision")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    examples = {e.id: e for e in read_examples(args.examples)}
    drafts = load_draft_cache(args.drafts)
    todo = [
        (examples[i], action_from_canonical(r["draft"]))
        for i, r in drafts.items()
        if r.get("valid") and i in examples
    ]
    labels = {i: bool(drafts[i]["right"]) for i, _ in ((e.id, d) for e, d in todo)}

    from spec_tool_node.verifiers import ChatModelVerifier, TrainedVerifier

    verifier = TrainedVerifier(
        model=args.verifier_base, adapter=args.verifier_adapter, max_length=args.max_length
    )
    scores = {
        "trained verifier": cached_scores(
            args.out / "verifier_scores.jsonl",
            todo,
            lambda ex, d: verifier.score(convert_to_messages(ex.messages), ex.tools, d).p_accept,
            f"{args.verifier_base}@{args.verifier_adapter} max_length={args.max_length}",
        ),
        "proposer mean log-prob": {i: math.exp(drafts[i]["mean_logprob"]) for i in labels},
    }
    if args.judge:
        from spec_tool_node.chat_models.hf import HFChatModel

        judge = ChatModelVerifier(HFChatModel(model=args.judge, max_new_tokens=4))
        scores["strong judge (mode C)"] = cached_scores(
            args.out / "judge_scores.jsonl",
            todo,
            lambda ex, d: judge.score(convert_to_messages(ex.messages), ex.tools, d).p_accept,
            args.judge,
        )

    if args.strong_likelihood:
        from spec_tool_node.chat_models.hf import HFChatModel

        strong = HFChatModel(model=args.strong_likelihood)
        scores["strong mean log-prob"] = cached_scores(
            args.out / "likelihood_scores.jsonl",
            todo,
            lambda ex, d: strong_likelihood(strong, ex, d),
            args.strong_likelihood,
        )

    ids = sorted(labels)
    calib, test = ids[::2], ids[1::2]
    results = {
        "n_examples": len(examples),
        "n_valid_drafts": len(ids),
        "n_right": sum(labels.values()),
        "n_invalid_drafts": sum(not r.get("valid") for i, r in drafts.items() if i in examples),
        "target_precision": args.precision,
        "signals": {},
    }
    for name, s in scores.items():
        threshold = calibrate(
            [s[i] for i in calib], [labels[i] for i in calib], precision=args.precision
        )
        precision, recall = precision_recall(
            [s[i] for i in test], [labels[i] for i in test], threshold
        )
        results["signals"][name] = {
            "auroc": round(auroc([s[i] for i in ids], [labels[i] for i in ids]), 3),
            "threshold": round(threshold, 4),
            "test_precision": round(precision, 3),
            "test_recall": round(recall, 3),
        }
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Verifier on held-out BFCL drafts",
        "",
        f"{results['n_examples']} held-out examples; the proposer's draft was valid on {len(ids)} "
        f"({results['n_right']} right), invalid on {results['n_invalid_drafts']} "
        "(rejected before any verifier).",
        f"Threshold calibrated on {len(calib)} drafts to precision {args.precision}; "
        f"precision/recall on the other {len(test)}.",
        "",
        "| signal | AUROC (all) | threshold | precision (test half) | recall (test half) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["signals"].items():
        cells = [name, r["auroc"], r["threshold"], r["test_precision"], r["test_recall"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
