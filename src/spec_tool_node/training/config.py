"""``TrainConfig``: the knobs of one LoRA run, kept apart so the CLI can read defaults cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Knobs of one LoRA run (the CLI exposes each as an option)."""

    max_steps: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    max_length: int = 1024
    seed: int = 0
    save_steps: int = 50
    eval_steps: int = 50
    logging_steps: int = 5
    dtype: str = "float32"
