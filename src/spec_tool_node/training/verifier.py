"""Verifier training: the ACCEPT/REJECT classifier and threshold calibration.

The classifier is a causal LM with a LoRA adapter trained on balanced pairs
(:func:`spec_tool_node.training.data.build_pairs`) with the loss on the one label token of the
prompt ``TrainedVerifier`` reads (the probe verifier is trained in
:mod:`spec_tool_node.training.probe`). Calibration picks
the threshold that reaches a target accept rate or precision on a calibration split, as RouteLLM
calibrates its routers.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from transformers import TrainingArguments

from spec_tool_node.chat_models.loading import load_pretrained
from spec_tool_node.config import ACCEPTS_NOTHING
from spec_tool_node.example_files import Example
from spec_tool_node.training.config import DTYPE, MAX_LENGTH
from spec_tool_node.training.data import Pair, build_pairs, check_template, render_pair
from spec_tool_node.training.sft import Collator, train_lora, training_arguments
from spec_tool_node.verifiers.prompt import label_token_ids


class LabelPairLoss:
    """Cross-entropy over the ACCEPT and REJECT logits at the label position only.

    ``TrainedVerifier`` reads a softmax over those two logits, so that is what training fits: the
    whole-vocabulary loss first spends its steps moving probability onto the two label tokens
    (the first real run started at a loss of 9 and ended above ln 2 without separating them).
    """

    def __init__(self, accept_id: int, reject_id: int) -> None:
        self.ids = [accept_id, reject_id]
        self.reject_id = reject_id

    def __call__(
        self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        kept = outputs.logits.shape[1]  # the last positions only, under ``logits_to_keep``
        target = labels[:, labels.shape[1] - kept + 1 :]
        mask = target != -100
        pair = outputs.logits[:, :-1][mask][:, self.ids].float()
        rejected = (target[mask] == self.reject_id).long()
        loss = torch.nn.functional.cross_entropy(pair, rejected, reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else mask.sum()
        return loss / count


def _keeps_logits(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def train_verifier(
    base: str,
    examples: Sequence[Example],
    drafts: dict[str, list[str]],
    output_dir: str | Path,
    args: TrainingArguments | None = None,
    lora: LoraConfig | None = None,
    *,
    max_length: int = MAX_LENGTH,
    dtype: str = DTYPE,
    eval_fraction: float = 0.1,
    resume: bool = True,
) -> tuple[Path, Counter[str]]:
    """Train the classifier on balanced pairs; returns the adapter folder and the pair mix.

    ``args`` and ``lora`` as in :func:`~spec_tool_node.training.sft.train_sft` (the run writes
    to ``output_dir``; ``args.seed`` also draws the pairs and the evaluation slice). A held-out
    slice of the pairs (by example id, so no context is in both) is used for evaluation during
    training; the pairs themselves are written to ``output_dir/pairs.jsonl``.
    """
    args = (
        dataclasses.replace(args, output_dir=str(output_dir))
        if args
        else training_arguments(output_dir)
    )
    model, tokenizer = load_pretrained(base, dtype=dtype)
    check_template(tokenizer, examples)
    pairs, mix = build_pairs(examples, drafts, seed=args.seed)
    by_id = {e.id: e for e in examples}
    ids = sorted({p.example_id for p in pairs})
    random.Random(args.seed).shuffle(ids)
    held = set(ids[: int(len(ids) * eval_fraction)])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "pairs.jsonl").open("w") as f:
        for p in pairs:
            f.write(json.dumps({**p.__dict__, "eval": p.example_id in held}) + "\n")

    def features(selected: list[Pair]) -> list:
        return [
            render_pair(tokenizer, by_id[p.example_id], p, max_length=max_length) for p in selected
        ]

    train = features([p for p in pairs if p.example_id not in held])
    evaluation = features([p for p in pairs if p.example_id in held])
    keep = 2 if _keeps_logits(model) else None  # the label's logits, not the whole sequence's
    if keep is not None:  # rows end at their label, as TrainedVerifier reads them
        tokenizer.padding_side = "left"
    adapter = train_lora(
        model,
        tokenizer,
        train,
        args,
        lora,
        eval_set=evaluation,
        resume=resume,
        compute_loss=LabelPairLoss(*label_token_ids(tokenizer)),
        collator=Collator(tokenizer, logits_to_keep=keep),
    )
    return adapter, mix


# -- calibration and metrics ---------------------------------------------------------------------


def calibrate(
    scores: Sequence[float],
    labels: Sequence[bool],
    *,
    accept_rate: float | None = None,
    precision: float | None = None,
) -> float:
    """The threshold that reaches a target accept rate, or the lowest one reaching a precision.

    Exactly one target must be given. With ``precision``, if no threshold reaches it,
    :data:`~spec_tool_node.config.ACCEPTS_NOTHING`: a verifier that cannot be trusted on these
    decisions fails closed (they all go to the strong model) rather than accepting its best
    guess. An accept rate of 0 gives the same.
    """
    if (accept_rate is None) == (precision is None):
        raise ValueError("give exactly one of accept_rate or precision")
    ordered = sorted(zip(scores, labels, strict=True), key=lambda t: -t[0])
    if not ordered:
        raise ValueError("calibration needs at least one scored example")
    if accept_rate is not None:
        if not 0.0 <= accept_rate <= 1.0:
            raise ValueError(f"accept_rate must be in [0, 1], got {accept_rate}")
        k = round(accept_rate * len(ordered))
        return ACCEPTS_NOTHING if k == 0 else ordered[k - 1][0]
    candidates: list[tuple[float, float]] = []  # (threshold, precision when accepting >= it)
    right = 0
    for i, (score, label) in enumerate(ordered, start=1):
        right += label
        if i < len(ordered) and ordered[i][0] == score:
            continue  # a threshold accepts every tie at once
        candidates.append((score, right / i))
    meeting = [t for t, p in candidates if p >= precision]
    return min(meeting) if meeting else ACCEPTS_NOTHING


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: how often a right draft outscores a wrong one (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def precision_recall(
    scores: Sequence[float], labels: Sequence[bool], threshold: float
) -> tuple[float, float]:
    """Precision and recall of "accept" at a threshold (precision 1.0 when nothing is accepted)."""
    accepted = [y for s, y in zip(scores, labels, strict=True) if s >= threshold]
    positives = sum(labels)
    precision = sum(accepted) / len(accepted) if accepted else 1.0
    recall = sum(accepted) / positives if positives else float("nan")
    return precision, recall
