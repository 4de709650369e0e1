"""``spec-tool-node data ...`` and ``spec-tool-node train ...``: the training pipeline's commands.

A verifier is rebuilt with (see benchmarks/verifier_run.sh and benchmarks/results/probe for the
exact sizes used):

    spec-tool-node data bfcl --split train --out runs/data/train.jsonl
    spec-tool-node train mine --proposer qwen2.5-coder-0.5b-instruct --data runs/data/train.jsonl \\
        --cache runs/drafts/train.jsonl --signals
    # the probe (the best verifier measured; minutes on a CPU once features are cached):
    spec-tool-node train verifier --method probe --base qwen2.5-coder-0.5b-instruct \\
        --data runs/data/train.jsonl --drafts runs/drafts/train.jsonl --out runs/probe
    # mode G's probe: the same on the proposer's own drafting pass (no forward pass of its own)
    spec-tool-node train verifier --method probe --poolings drafting \
        --base qwen2.5-coder-0.5b-instruct --data runs/data/train.jsonl \
        --drafts runs/drafts/train.jsonl --out runs/gate-probe
    # or the LoRA classifier (for a GPU):
    spec-tool-node train verifier --base smollm2-135m-instruct --data runs/data/train.jsonl \\
        --drafts runs/drafts/train.jsonl --out runs/verifier

and a bundle's threshold is recalibrated on your own logged conversations with

    spec-tool-node data chat-logs logs.jsonl --out runs/data/mine.jsonl
    spec-tool-node train mine --proposer MODEL --data runs/data/mine.jsonl \\
        --cache runs/drafts/mine.jsonl
    spec-tool-node train calibrate --bundle BUNDLE --data runs/data/mine.jsonl \\
        --drafts runs/drafts/mine.jsonl --precision 0.8 --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spec_tool_node.config import ACCEPTS_NOTHING, accepts_nothing
from spec_tool_node.modes import MODES, known_modes


def _split_list(text: str | None) -> list[str] | None:
    return [t for t in text.split(",") if t] if text else None


def _lora_options(p: argparse.ArgumentParser) -> None:
    from spec_tool_node.training.config import DTYPE, LORA_DEFAULTS, MAX_LENGTH, TRAINING_DEFAULTS

    t, lora = TRAINING_DEFAULTS, LORA_DEFAULTS
    p.add_argument("--max-steps", type=int, default=t["max_steps"], help="optimizer steps")
    p.add_argument(
        "--batch-size",
        type=int,
        default=t["per_device_train_batch_size"],
        help="examples per device step",
    )
    p.add_argument(
        "--grad-accum",
        type=int,
        default=t["gradient_accumulation_steps"],
        help="gradient accumulation",
    )
    p.add_argument(
        "--learning-rate", type=float, default=t["learning_rate"], help="peak learning rate"
    )
    p.add_argument("--lora-r", type=int, default=lora["r"], help="LoRA rank")
    p.add_argument("--lora-alpha", type=int, default=lora["lora_alpha"], help="LoRA alpha")
    p.add_argument(
        "--target-modules",
        default=lora["target_modules"],
        help="comma-separated module names, or all-linear (smaller sets keep adapters small)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=MAX_LENGTH,
        help="tokens per example (prompt cut from the left)",
    )
    p.add_argument(
        "--seed", type=int, default=t["seed"], help="seed for data order, init and sampling"
    )
    p.add_argument(
        "--save-steps",
        type=int,
        default=t["save_steps"],
        help="checkpoint every N steps (resume point)",
    )
    p.add_argument("--dtype", default=DTYPE, help="weights dtype while training (float32 on CPU)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming")


def _probe_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("probe (--method probe; --batch-size, --max-length, --seed apply)")
    g.add_argument(
        "--features",
        type=Path,
        help="feature cache folder, resumable (default OUT/features); a complete one needs no "
        "model",
    )
    g.add_argument(
        "--layers",
        help="candidate layers, e.g. 12,18,24 (12+18 concatenates); default every layer",
    )
    g.add_argument(
        "--poolings",
        help="candidate poolings among mean,last,values,drafting (default all); 'drafting' alone "
        "makes mode G's probe, which scores drafts from the proposer's own drafting pass",
    )
    g.add_argument(
        "--logprob-stats",
        nargs="+",
        default=["none"],
        metavar="SET",
        help="candidate sets of the draft's log-prob statistics to append to the hidden states "
        "(values_mean, values_min, reply_mean; joined by commas, 'none' for hidden states "
        "alone), e.g. --logprob-stats none values_mean,values_min; never with the 'drafting' "
        "pooling (mode G reads no statistics)",
    )
    g.add_argument(
        "--per-kind",
        action="store_true",
        help="also try one head per kind of draft (tool calls; text answers and refusals), each "
        "fit on its own kind, against one head for all",
    )
    g.add_argument(
        "--C",
        type=lambda t: [float(x) for x in t.split(",")],
        default=[0.01, 0.1, 1.0],
        help="candidate inverse regularisation strengths (comma-separated)",
    )
    g.add_argument(
        "--mlp-hidden",
        type=int,
        default=0,
        help="also try a 2-layer MLP head with this many hidden units (0: logistic only)",
    )
    g.add_argument("--folds", type=int, default=5, help="grouped cross-validation folds")
    g.add_argument(
        "--label",
        choices=["right", "defer"],
        default="right",
        help="right: accept right drafts; defer: reject only wrong drafts the strong model gets "
        "right (needs --strong)",
    )
    g.add_argument(
        "--strong", type=Path, help="the strong model's actions on the same examples (cache JSONL)"
    )
    target = g.add_mutually_exclusive_group()
    target.add_argument(
        "--precision", type=float, help="threshold: lowest reaching this precision out of fold"
    )
    target.add_argument(
        "--accept-rate", type=float, help="threshold: accept this share of drafts out of fold"
    )


def _run_options(args: argparse.Namespace) -> tuple[Any, Any]:
    """The ``TrainingArguments`` and ``LoraConfig`` the LoRA options ask for."""
    from spec_tool_node.training.sft import lora_config, training_arguments

    modules = (
        args.target_modules
        if args.target_modules == "all-linear"
        else args.target_modules.split(",")
    )
    training = training_arguments(
        args.out,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.learning_rate,
        seed=args.seed,
        save_steps=args.save_steps,
        eval_steps=args.save_steps,
    )
    return training, lora_config(r=args.lora_r, lora_alpha=args.lora_alpha, target_modules=modules)


def _examples(path: Path, on_error: str, limit: int | None = None) -> list:
    from spec_tool_node.example_files import read_examples

    examples = list(read_examples(path, on_error=on_error))
    return examples[:limit] if limit else examples


def data_bfcl(args: argparse.Namespace) -> int:
    from spec_tool_node import bfcl
    from spec_tool_node.example_files import write_examples

    examples = bfcl.load_split(args.split, _split_list(args.categories), args.limit_per_category)
    count = write_examples(args.out, examples)
    print(f"wrote {count} {args.split} examples to {args.out}")
    return 0


def data_chat_logs(args: argparse.Namespace) -> int:
    from spec_tool_node.example_files import write_examples
    from spec_tool_node.training.data import read_chat_logs

    count = write_examples(args.out, read_chat_logs(args.logs, on_error=args.on_error))
    print(f"wrote {count} decision examples to {args.out}")
    return 0


def train_mine(args: argparse.Namespace) -> int:
    from spec_tool_node.chat_models.hf import HFChatModel
    from spec_tool_node.training.data import load_draft_cache, mine_drafts

    proposer = HFChatModel(
        model=args.proposer, adapter=args.adapter, max_new_tokens=args.max_new_tokens
    )
    mine_drafts(
        proposer,
        _examples(args.data, args.on_error, args.limit),
        args.cache,
        signals=args.signals,
        batch_size=args.batch_size,
    )
    records = load_draft_cache(args.cache).values()
    valid = sum(r["valid"] for r in records)
    right = sum(r.get("right", False) for r in records)
    print(f"{len(records)} drafts: {valid} valid, {right} right, {valid - right} valid but wrong")
    return 0


def train_sft_cmd(args: argparse.Namespace) -> int:
    from spec_tool_node.training.sft import train_sft

    evaluation = _examples(args.eval_data, args.on_error) if args.eval_data else []
    adapter = train_sft(
        args.base,
        _examples(args.data, args.on_error, args.limit),
        args.out,
        *_run_options(args),
        max_length=args.max_length,
        dtype=args.dtype,
        eval_examples=evaluation,
        resume=not args.no_resume,
    )
    print(f"adapter: {adapter}")
    return 0


def train_verifier_cmd(args: argparse.Namespace) -> int:
    if args.method == "probe":
        return train_probe_verifier_cmd(args)
    from spec_tool_node.training.data import load_draft_cache
    from spec_tool_node.training.verifier import train_verifier

    drafts = (
        {i: [r["draft"]] for i, r in load_draft_cache(args.drafts).items() if r.get("valid")}
        if args.drafts
        else {}
    )
    adapter, mix = train_verifier(
        args.base,
        _examples(args.data, args.on_error, args.limit),
        drafts,
        args.out,
        *_run_options(args),
        max_length=args.max_length,
        dtype=args.dtype,
        resume=not args.no_resume,
    )
    print(f"adapter: {adapter}\npair mix: {json.dumps(dict(mix), sort_keys=True)}")
    return 0


def _layer_sets(text: str | None) -> list[list[int]] | None:
    """``12,18`` tries layer 12 and layer 18; ``12+18`` tries both concatenated."""
    return [[int(x) for x in part.split("+")] for part in text.split(",")] if text else None


def train_probe_verifier_cmd(args: argparse.Namespace) -> int:
    from spec_tool_node.training.data import load_draft_cache
    from spec_tool_node.training.probe import (
        HeadSpec,
        deferral_labels,
        strong_correct,
        train_probe_verifier,
    )

    if not args.drafts:
        print("error: --method probe needs --drafts (the proposer's drafts)", file=sys.stderr)
        return 2
    examples = {e.id: e for e in _examples(args.data, args.on_error, args.limit)}
    drafts = {
        i: r for i, r in load_draft_cache(args.drafts).items() if r.get("valid") and i in examples
    }
    right = {i: bool(r.get("right")) for i, r in drafts.items()}
    if args.label == "defer":
        if not args.strong:
            print("error: --label defer needs --strong (strong model actions)", file=sys.stderr)
            return 2
        labels = deferral_labels(right, strong_correct(args.strong, examples))
    else:
        labels = right
    ids = list(labels)
    heads = [HeadSpec(c) for c in args.C] + [HeadSpec(c, args.mlp_hidden) for c in args.C] * (
        args.mlp_hidden > 0
    )
    run = train_probe_verifier(
        [(examples[i], drafts[i]["draft"]) for i in ids],
        [labels[i] for i in ids],
        args.out,
        base_model=args.base,
        features_dir=args.features or args.out / "features",
        layers=_layer_sets(args.layers),
        poolings=_split_list(args.poolings),
        heads=heads,
        stat_sets=[[] if s == "none" else s.split(",") for s in args.logprob_stats],
        per_kind=(False, True) if args.per_kind else (False,),
        folds=args.folds,
        seed=args.seed,
        batch_size=args.batch_size,
        max_length=args.max_length,
        precision=args.precision,
        accept_rate=args.accept_rate,
        card={"data": str(args.data), "drafts": str(args.drafts), "label": args.label},
    )
    best = run.selection.best
    if run.selection.per_kind_skipped:
        print(
            f"--per-kind: a head per kind of draft was not tried: {run.selection.per_kind_skipped}"
        )
    print(
        f"probe on {run.n_drafts} drafts ({run.n_accept} to accept): layers {best['layers']}, "
        f"pooling {best['pooling']}, log-prob statistics {best['logprob_stats'] or 'none'}, "
        f"{'a head per kind of draft' if best['per_kind'] else 'one head'}, "
        f"{best['head']}, cross-validated AUROC {best['cv_auroc']:.3f}, "
        f"threshold {run.threshold:.4f}\nprobe: {args.out}"
    )
    return 0


def train_calibrate_cmd(args: argparse.Namespace) -> int:
    from langchain_core.messages import convert_to_messages

    from spec_tool_node.actions import ToolCallsAction, action_from_canonical
    from spec_tool_node.bundle import Bundle, render_card
    from spec_tool_node.cascade import is_multi_turn
    from spec_tool_node.config import CascadeConfig
    from spec_tool_node.jsonl import write_text
    from spec_tool_node.training.data import load_draft_cache
    from spec_tool_node.training.verifier import calibrate, precision_recall
    from spec_tool_node.verifiers.probe import load_verifier

    config_path = args.bundle / "cascade.json"
    bundled = Bundle.from_pretrained(args.bundle).config
    spec = bundled.verifier
    gate = MODES[bundled.mode].scorer == "gate"  # mode G: one gate_threshold
    if spec is None:
        print(f"error: bundle {args.bundle} has no verifier to calibrate", file=sys.stderr)
        return 2
    examples = {e.id: e for e in _examples(args.data, args.on_error, args.limit)}
    drafts = {
        i: r for i, r in load_draft_cache(args.drafts).items() if r.get("valid") and i in examples
    }
    if not drafts:
        print(f"error: no valid drafts of {args.data} in {args.drafts}", file=sys.stderr)
        return 2
    if not bundled.accept_calls:  # calls go to the strong model unscored: judge only the rest
        calls = {
            i
            for i, r in drafts.items()
            if isinstance(action_from_canonical(r["draft"]), ToolCallsAction)
        }
        drafts = {i: r for i, r in drafts.items() if i not in calls}
        print(
            f"the bundle has accept_calls off: {len(calls)} tool-call drafts left out, "
            f"{len(drafts)} answers and refusals calibrated on"
        )
        if not drafts:
            print(f"error: no answer or refusal among the drafts of {args.drafts}", file=sys.stderr)
            return 2
    verifier = load_verifier(spec.model, spec.adapter, max_length=spec.max_length)
    if gate and not verifier.reads_drafting_pass:
        print(
            f"error: bundle {args.bundle} is in mode G, and its verifier does not read the "
            "drafting pass (a probe on the 'drafting' pooling does)",
            file=sys.stderr,
        )
        return 2
    scored = {}
    for i, r in drafts.items():
        e = examples[i]
        tools = [t.get("function", t) for t in e.tools]
        draft = action_from_canonical(r["draft"])
        scored[i] = verifier.score(convert_to_messages(e.messages), tools, draft).p_accept
    multi = {i: is_multi_turn(convert_to_messages(examples[i].messages)) for i in scored}
    kinds = {"single-turn": False, "multi-turn": True}
    thresholds = {}
    print(
        "| decisions | drafts | right | threshold | precision | recall | accept rate "
        "| the bundle's threshold now: accepts, precision |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    unreachable = []
    for kind, later in [*kinds.items(), ("all", None)]:
        ids = [i for i in scored if later is None or multi[i] == later]
        if not ids:
            continue
        scores = [scored[i] for i in ids]
        labels = [bool(drafts[i].get("right")) for i in ids]
        t = calibrate(scores, labels, precision=args.precision, accept_rate=args.accept_rate)
        precision, recall = precision_recall(scores, labels, t)
        accepted = sum(s >= t for s in scores) / len(scores)
        thresholds[kind] = t
        if accepts_nothing(t):  # nothing reaches the target: these decisions accept no draft
            best = max(precision_recall(scores, labels, s)[0] for s in scores)
            unreachable.append(f"{kind} (best {best:.3f})")
        # what the bundle's current thresholds do on these decisions, to compare against: each
        # decision meets the threshold of its kind, as the cascade applies them
        now = {
            i: bundled.gate_threshold if gate else bundled.accept_threshold(multi[i]) for i in ids
        }
        taken = [bool(drafts[i].get("right")) for i in ids if scored[i] >= now[i]]
        applied = {f"{value:.4f}" for value in now.values()}
        shown_now = f"{applied.pop() if len(applied) == 1 else 'per kind'}: {len(taken)}, " + (
            f"{sum(taken) / len(taken):.3f}" if taken else "-"
        )
        shown = f"{precision:.3f}" if accepted else "-"  # nothing accepted: no precision
        print(
            f"| {kind} | {len(ids)} | {sum(labels)} | {t:.4f} | {shown} | {recall:.3f} "
            f"| {accepted:.0%} | {shown_now} |"
        )
    if unreachable:  # calibrate() then fails closed; say so plainly
        print(
            f"note: no threshold reaches precision {args.precision} on the {', '.join(unreachable)}"
            f" decisions: they accept nothing (threshold {ACCEPTS_NOTHING}), so each goes to the"
            " strong model"
        )
    if gate:  # scored in one pass over each draft, which the drafting pass approximates
        written = {"gate_threshold": thresholds["all"]}
    elif args.decisions == "all":
        written = {"threshold": thresholds["all"], "multi_turn_threshold": None}
    else:  # each kind its own threshold; a kind without logged decisions keeps the bundle's
        written = {
            "threshold": thresholds.get("single-turn"),
            "multi_turn_threshold": thresholds.get("multi-turn"),
        }
    if args.write:
        raw = json.loads(config_path.read_text())
        for key, t in written.items():
            if t is None and args.decisions == "all":
                raw.pop(key, None)
            elif t is not None:
                raw[key] = round(min(max(t, 0.0), ACCEPTS_NOTHING), 6)
        write_text(config_path, json.dumps(raw, indent=2) + "\n")  # never half-written
        card_path = args.bundle / "card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        readme = render_card(CascadeConfig.model_validate(raw), card)  # the thresholds it shows
        write_text(args.bundle / "README.md", readme)
        shown = ", ".join(f"{k} {raw[k]}" for k in written if k in raw)
        kind = "all" if gate else args.decisions
        print(f"{shown} ({kind} decisions) written to {config_path}")
    return 0


def bundle_cmd(args: argparse.Namespace) -> int:
    from spec_tool_node.bundle import Bundle
    from spec_tool_node.config import CascadeConfig, ModelSpec

    def spec(text: str | None, max_length: int | None = None) -> ModelSpec | None:
        if not text:
            return None
        model, _, adapter = text.partition("@")
        return ModelSpec(model=model, adapter=adapter or None, max_length=max_length)

    if args.verifier_max_length is not None and not args.verifier:
        raise SystemExit("--verifier-max-length needs --verifier")

    gate = {"gate_threshold": args.gate_threshold} if args.gate_threshold is not None else {}
    config = CascadeConfig(
        mode=args.mode,
        threshold=args.threshold,
        **gate,
        proposer=spec(args.proposer),
        strong=spec(args.strong),
        verifier=spec(args.verifier, args.verifier_max_length),
    )
    card = json.loads(args.card.read_text()) if args.card else {}
    print(f"bundle: {Bundle(config=config, card=card).save_pretrained(args.out)}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``data`` and ``train`` on the main parser."""
    data = commands.add_parser("data", help="build example files (JSONL)")
    sub = data.add_subparsers(dest="action", required=True)
    p = sub.add_parser("bfcl", help="BFCL v4 (from the bfcl-eval package) on the fixed split")
    p.add_argument(
        "--split",
        choices=["train", "heldout"],
        required=True,
        help="train: live_* + even multi-turn ids; heldout: the rest",
    )
    p.add_argument(
        "--categories", help="comma-separated BFCL categories (default: all of the split)"
    )
    p.add_argument(
        "--limit-per-category", type=int, help="first N examples (multi-turn: N tasks) per category"
    )
    p.add_argument("--out", type=Path, required=True, help="output JSONL")
    p.set_defaults(func=data_bfcl)
    p = sub.add_parser(
        "chat-logs", help="OpenAI-style chat logs with tool calls (one conversation per line)"
    )
    p.add_argument("logs", type=Path, help="input JSONL of {messages, tools}")
    p.add_argument("--out", type=Path, required=True, help="output JSONL of decision examples")
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="bad lines: stop, or warn and skip",
    )
    p.set_defaults(func=data_chat_logs)

    train = commands.add_parser("train", help="LoRA SFT, hard-negative mining, verifier training")
    sub = train.add_subparsers(dest="action", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, required=True, help="training examples (JSONL)")
        p.add_argument("--limit", type=int, help="use only the first N examples")
        p.add_argument(
            "--on-error",
            choices=["raise", "skip"],
            default="raise",
            help="bad lines: stop, or warn and skip",
        )

    p = sub.add_parser(
        "mine", help="run the proposer once per example and cache its drafts (resumable)"
    )
    common(p)
    p.add_argument("--proposer", required=True, help="asset name, folder or hub id")
    p.add_argument("--adapter", help="proposer peft adapter folder")
    p.add_argument(
        "--cache",
        type=Path,
        required=True,
        help="labelled draft file JSONL (appended to; reruns skip done ids); the collector's "
        "records of each call go in CACHE_STEM.records/ beside it",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="examples a local proposer drafts in one left-padded batch (greedy drafts stay "
        "the ones written one at a time, up to floating-point near-ties)",
    )
    p.add_argument(
        "--signals", action="store_true", help="also keep each draft's mean token log-prob"
    )
    p.add_argument("--max-new-tokens", type=int, default=128, help="draft length budget")
    p.set_defaults(func=train_mine)

    p = sub.add_parser(
        "sft", help="LoRA SFT of a proposer or strong model on template-rendered examples"
    )
    common(p)
    p.add_argument("--base", required=True, help="asset name, folder or hub id")
    p.add_argument("--eval-data", type=Path, help="held-out examples evaluated during training")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, adapter/)")
    _lora_options(p)
    p.set_defaults(func=train_sft_cmd)

    p = sub.add_parser(
        "verifier",
        help="the verifier: a probe on a frozen model's hidden states (--method probe, minutes "
        "on a CPU) or a LoRA ACCEPT/REJECT classifier (--method lora, for a GPU)",
    )
    common(p)
    p.add_argument(
        "--method",
        choices=["lora", "probe"],
        default="lora",
        help="probe: small head on pooled hidden states; lora: classifier on balanced pairs",
    )
    p.add_argument(
        "--base", required=True, help="verifier base model (asset name, folder or hub id)"
    )
    p.add_argument(
        "--drafts",
        type=Path,
        help="draft cache from `train mine` (lora: hard negatives; probe: the drafts it learns on)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="run folder (lora: pairs.jsonl, checkpoints, adapter/; probe: probe.json, "
        "head.safetensors, validation.json)",
    )
    _lora_options(p)
    _probe_options(p)
    p.set_defaults(func=train_verifier_cmd)

    p = sub.add_parser(
        "calibrate",
        help="set a bundle's accept threshold from your own logged decisions: score the "
        "proposer's drafts with the bundle's verifier and reach a target precision or accept rate",
    )
    common(p)
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder to calibrate")
    p.add_argument(
        "--drafts",
        type=Path,
        required=True,
        help="the proposer's drafts on --data, from `train mine` (their `right` is the label)",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--precision",
        type=float,
        help="lowest threshold reaching this precision (where none does, those decisions "
        f"accept nothing: threshold {ACCEPTS_NOTHING}, and a note says so)",
    )
    target.add_argument("--accept-rate", type=float, help="threshold accepting this share")
    p.add_argument(
        "--decisions",
        choices=["separate", "all"],
        default="separate",
        help="separate: single-turn decisions set `threshold` and multi-turn ones (after an "
        "assistant or tool message) `multi_turn_threshold`; all: one threshold for every "
        "decision (each kind is reported either way). A mode-G bundle gets one "
        "`gate_threshold` from every decision",
    )
    p.add_argument("--write", action="store_true", help="write the threshold into the bundle")
    p.set_defaults(func=train_calibrate_cmd)

    p = commands.add_parser("bundle", help="write a bundle folder: cascade config, adapters, card")
    p.add_argument("--out", type=Path, required=True, help="bundle folder (replaced if it exists)")
    p.add_argument(
        "--mode",
        default="D",
        choices=[form for s in MODES.values() for form in (s.letter, s.name)],
        help=f"cascade mode, by letter or name: {known_modes()}",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="accept threshold on p(ACCEPT)")
    p.add_argument(
        "--gate-threshold",
        type=float,
        help="mode G's threshold on its drafting-pass signal (default: the config's)",
    )
    for role in ("proposer", "strong", "verifier"):
        p.add_argument(f"--{role}", help=f"{role} as MODEL or MODEL@ADAPTER_DIR")
    p.add_argument(
        "--verifier-max-length",
        type=int,
        help="prompt length the verifier was trained on (its --max-length); longer prompts are "
        "cut the same way at inference",
    )
    p.add_argument(
        "--card", type=Path, help="JSON with what the card records (data, steps, metrics)"
    )
    p.set_defaults(func=bundle_cmd)
