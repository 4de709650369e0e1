"""The defaults of one LoRA run, as keyword arguments of transformers' ``TrainingArguments`` and
peft's ``LoraConfig``.

They are plain values here, apart from the training code, so the CLI can show them in ``--help``
without importing torch; :func:`spec_tool_node.training.sft.training_arguments` and
:func:`spec_tool_node.training.sft.lora_config` build the library objects from them.
"""

from __future__ import annotations

from typing import Any

TRAINING_DEFAULTS: dict[str, Any] = {
    "max_steps": 100,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 2e-4,
    "lr_scheduler_type": "cosine",
    "seed": 0,
    "logging_steps": 5,
    "save_steps": 50,
    "eval_steps": 50,
    "save_total_limit": 2,
}
"""``TrainingArguments`` fields we set differently from transformers' defaults."""

LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": "all-linear",
}
"""``LoraConfig`` fields we set (every model of a cascade gets the same)."""

MAX_LENGTH = 1024
"""Tokens per training example (the prompt is cut from the left)."""

DTYPE = "float32"
"""Weights dtype while training (float32 on a CPU)."""
