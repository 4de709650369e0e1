"""LoRA fine-tuning with HF ``Trainer`` + peft: SFT of the proposer and the strong model.

Proposer and strong model get the same LoRA config (:func:`lora_config`) and the same data, so
a comparison between them is fair (the seed study compared a tuned 1.7B with a frozen 8B).
Seeds are fixed, training resumes from the last checkpoint in ``output_dir``, and the same script
runs unchanged under ``accelerate launch`` on several GPUs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from spec_tool_node.chat_models.loading import load_pretrained
from spec_tool_node.example_files import Example
from spec_tool_node.training.config import DTYPE, LORA_DEFAULTS, MAX_LENGTH, TRAINING_DEFAULTS
from spec_tool_node.training.data import Features, check_template, render_sft


def lora_config(**overrides: Any) -> LoraConfig:
    """The one LoRA config every model of a cascade is trained with (``LORA_DEFAULTS``, then
    ``overrides``)."""
    return LoraConfig(**{**LORA_DEFAULTS, **overrides, "task_type": "CAUSAL_LM"})


def training_arguments(output_dir: str | Path, **overrides: Any) -> TrainingArguments:
    """``TrainingArguments`` with our defaults (``TRAINING_DEFAULTS``, then ``overrides``): a
    warm-up of a tenth of the steps (at most 10), the seed also ordering the data, no reporting
    integrations, and the CPU when no GPU is present."""
    values = {**TRAINING_DEFAULTS, **overrides}
    values.setdefault("warmup_steps", min(10, values["max_steps"] // 10))
    values.setdefault("data_seed", values["seed"])
    values.setdefault("per_device_eval_batch_size", values["per_device_train_batch_size"])
    return TrainingArguments(
        output_dir=str(output_dir),
        report_to=[],
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        **values,
    )


@dataclass
class Collator(DataCollatorForSeq2Seq):
    """transformers' ``DataCollatorForSeq2Seq`` (ids, attention mask and ``-100`` labels, padded on
    the tokenizer's ``padding_side``), plus what a left-padded batch needs.

    Args:
        tokenizer: pads with its pad token on its ``padding_side``.
        logits_to_keep: ask the model for the logits of only the last ``logits_to_keep``
            positions. With a left-padding tokenizer every row ends at its last token, so a
            classifier whose one label ends each row then skips the vocabulary projection of every
            other position (with a 151k-token vocabulary, most of a step's time and memory).

    A left-padded batch also gets ``position_ids`` that start at 0 on each row's first token.
    """

    label_pad_token_id: int = -100
    return_tensors: str = "pt"
    logits_to_keep: int | None = None

    def __call__(self, features: list[dict[str, Any]], return_tensors: Any = None) -> Any:
        batch = super().__call__(features, return_tensors)
        if self.tokenizer.padding_side == "left":
            batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        if self.logits_to_keep is not None:
            batch["logits_to_keep"] = self.logits_to_keep
        return batch


def _rows(features: Sequence[Features]) -> list[dict[str, list[int]]]:
    return [{"input_ids": f.input_ids, "labels": f.labels} for f in features]


def train_lora(
    model: Any,
    tokenizer: Any,
    train: Sequence[Features],
    args: TrainingArguments,
    lora: LoraConfig | None = None,
    *,
    eval_set: Sequence[Features] = (),
    resume: bool = True,
    compute_loss: Callable[..., torch.Tensor] | None = None,
    collator: Collator | None = None,
) -> Path:
    """Train a LoRA adapter on ready features; returns the adapter folder
    (``args.output_dir/adapter``).

    ``lora`` defaults to :func:`lora_config`. Evaluation runs every ``args.eval_steps`` when
    ``eval_set`` is given and never otherwise. Resumes from the newest ``checkpoint-*`` in
    ``args.output_dir`` when ``resume`` is set. ``compute_loss`` replaces the language-model loss
    (``Trainer``'s ``compute_loss_func``); ``collator`` replaces the :class:`Collator` on
    ``tokenizer``.
    """
    output_dir = Path(args.output_dir)
    args = dataclasses.replace(args, eval_strategy="steps" if eval_set else "no")
    lora = lora or lora_config()
    set_seed(args.seed)
    peft_model = get_peft_model(model, lora)
    trainer = Trainer(
        model=peft_model,
        args=args,
        train_dataset=_rows(train),
        eval_dataset=_rows(eval_set) if eval_set else None,
        data_collator=collator or Collator(tokenizer),
        compute_loss_func=compute_loss,
    )
    last = get_last_checkpoint(str(output_dir)) if resume and output_dir.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    adapter = output_dir / "adapter"
    if trainer.is_world_process_zero():  # under accelerate launch, one process writes the adapter
        peft_model.save_pretrained(adapter)
        metrics = {
            "global_step": trainer.state.global_step,
            "resumed_from_step": int(Path(last).name.split("-")[-1]) if last else 0,
            "log_history": trainer.state.log_history,
        }
        (adapter / "training.json").write_text(
            json.dumps(
                {"training_args": args.to_dict(), "lora": lora.to_dict(), **metrics},
                indent=2,
                default=str,
            )
        )
    trainer.accelerator.wait_for_everyone()  # every process returns a complete adapter folder
    return adapter


def train_sft(
    base: str,
    train: Sequence[Example],
    output_dir: str | Path,
    args: TrainingArguments | None = None,
    lora: LoraConfig | None = None,
    *,
    max_length: int = MAX_LENGTH,
    dtype: str = DTYPE,
    eval_examples: Sequence[Example] = (),
    resume: bool = True,
) -> Path:
    """LoRA SFT of ``base`` (asset name, folder or hub id) on examples; returns the adapter folder.

    ``args`` defaults to :func:`training_arguments`, ``lora`` to :func:`lora_config`; either way
    the run writes to ``output_dir``.

    Raises:
        TemplateError: before any training, when the chat template cannot render the data.
    """
    args = dataclasses.replace(args, output_dir=str(output_dir)) if args else None
    model, tokenizer = load_pretrained(base, dtype=dtype)
    check_template(tokenizer, train)
    features = [render_sft(tokenizer, e, max_length=max_length) for e in train]
    eval_set = [render_sft(tokenizer, e, max_length=max_length) for e in eval_examples]
    return train_lora(
        model,
        tokenizer,
        features,
        args or training_arguments(output_dir),
        lora,
        eval_set=eval_set,
        resume=resume,
    )
