"""LoRA fine-tuning with HF ``Trainer`` + peft: SFT of the proposer and the strong model.

Proposer and strong model get the same LoRA config (:func:`lora_config`) and the same data, so
a comparison between them is fair (the seed study compared a tuned 1.7B with a frozen 8B).
Seeds are fixed, training resumes from the last checkpoint in ``output_dir``, and the same script
runs unchanged under ``accelerate launch`` on several GPUs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from spec_tool_node.chat_models.loading import load_pretrained
from spec_tool_node.example_files import Example
from spec_tool_node.training.config import TrainConfig
from spec_tool_node.training.data import Features, check_template, render_sft


def lora_config(cfg: TrainConfig) -> LoraConfig:
    """The one LoRA config every model of a cascade is trained with."""
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
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
    output_dir: str | Path,
    cfg: TrainConfig,
    *,
    eval_set: Sequence[Features] = (),
    resume: bool = True,
    compute_loss: Callable[..., torch.Tensor] | None = None,
    collator: Collator | None = None,
) -> Path:
    """Train a LoRA adapter on ready features; returns the adapter folder (``output_dir/adapter``).

    Resumes from the newest ``checkpoint-*`` in ``output_dir`` when ``resume`` is set.
    ``compute_loss`` replaces the language-model loss (``Trainer``'s ``compute_loss_func``);
    ``collator`` replaces the :class:`Collator` on ``tokenizer``.
    """
    output_dir = Path(output_dir)
    set_seed(cfg.seed)
    peft_model = get_peft_model(model, lora_config(cfg))
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=min(10, cfg.max_steps // 10),
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if eval_set else "no",
        eval_steps=cfg.eval_steps,
        report_to=[],
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
    )
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
            json.dumps({"config": asdict(cfg), **metrics}, indent=2, default=str)
        )
    trainer.accelerator.wait_for_everyone()  # every process returns a complete adapter folder
    return adapter


def train_sft(
    base: str,
    train: Sequence[Example],
    output_dir: str | Path,
    cfg: TrainConfig | None = None,
    *,
    eval_examples: Sequence[Example] = (),
    resume: bool = True,
) -> Path:
    """LoRA SFT of ``base`` (asset name, folder or hub id) on examples; returns the adapter folder.

    Raises:
        TemplateError: before any training, when the chat template cannot render the data.
    """
    cfg = cfg or TrainConfig()
    model, tokenizer = load_pretrained(base, dtype=cfg.dtype)
    check_template(tokenizer, train)
    features = [render_sft(tokenizer, e, max_length=cfg.max_length) for e in train]
    eval_set = [render_sft(tokenizer, e, max_length=cfg.max_length) for e in eval_examples]
    return train_lora(model, tokenizer, features, output_dir, cfg, eval_set=eval_set, resume=resume)
