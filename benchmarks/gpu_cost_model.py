"""What each step of the cascade costs on an accelerator, measured on random-weight Qwen3 shapes.

Latency depends on a model's shape, not on its weights, so random weights with the public configs
of Qwen3-1.7B (proposer), Qwen3-4B (verifier) and Qwen3-8B (strong model) measure what the real
models would take, with nothing to download. For a 1,024-token context and a 48-token action it
times, each the median of ``--repeats`` runs after a warm-up:

- the cheap draft (1.7B writes 48 tokens), the verifier pass (4B reads context + action once),
- the strong action (8B writes 48 tokens) with the default cache and with
  ``cache_implementation="static"``, and the strong model's teacher-forcing pass,
- mode F on an agreeing draft (the check pass alone) and on a draft that diverges halfway
  (the check pass, then the rest of the action written on its cache),

and prints a table of seconds and ratios to the strong action. Run it where the accelerator is:

    python benchmarks/gpu_cost_model.py --out benchmarks/results/gpu_cost_model

``--smoke`` shrinks every shape to 2 layers of width 256 so the script runs on a CPU in seconds;
its times say nothing about real models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from spec_tool_node.chat_models.speculative import continue_draft

SHAPES: dict[str, dict[str, Any]] = {
    "Qwen3-1.7B": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    "Qwen3-4B": {
        "hidden_size": 2560,
        "intermediate_size": 9728,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    "Qwen3-8B": {
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
}
"""From the models' public ``config.json`` (all: head_dim 128, vocab 151,936, rope 1e6)."""
SMOKE = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2}
STRONG = "strong action (8B)"
NEVER = 151_935
"""The end token given to mode F: a real id that random weights are as unlikely to pick as any."""


class _NoTokenizer:
    """``continue_draft`` reads ``pad_token_id`` only (drafts are given as token ids)."""

    pad_token_id = 0


def build(name: str, device: str, dtype: torch.dtype, smoke: bool) -> Qwen3ForCausalLM:
    shape = {**SHAPES[name], **(SMOKE if smoke else {})}
    config = Qwen3Config(
        vocab_size=151_936,
        head_dim=128 if not smoke else 64,
        rope_theta=1_000_000.0,
        max_position_embeddings=40_960,
        **shape,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def timed(call: Callable[[], Any], repeats: int, device: str) -> float:
    """Median seconds of ``call`` over ``repeats`` runs after one warm-up run."""

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def generate(model: Any, ids: torch.Tensor, tokens: int, **kwargs: Any) -> torch.Tensor:
    with torch.inference_mode():
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=tokens,
            min_new_tokens=tokens,  # random weights: never stop early
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            **kwargs,
        )


def forward(model: Any, ids: torch.Tensor) -> None:
    with torch.inference_mode():
        model(ids)


def measure(args: argparse.Namespace) -> dict[str, float]:
    dtype = getattr(torch, args.dtype)
    context = torch.randint(0, 151_936, (1, args.context), device=args.device)
    action = args.action
    times: dict[str, float] = {}

    cheap = build("Qwen3-1.7B", args.device, dtype, args.smoke)
    times[f"cheap draft (1.7B, {action} tokens)"] = timed(
        lambda: generate(cheap, context, action), args.repeats, args.device
    )
    verifier = build("Qwen3-4B", args.device, dtype, args.smoke)
    with_action = torch.cat(
        [context, torch.randint(0, 151_936, (1, action), device=args.device)], 1
    )
    times["verifier pass (4B, context + action)"] = timed(
        lambda: forward(verifier, with_action), args.repeats, args.device
    )
    strong = build("Qwen3-8B", args.device, dtype, args.smoke)
    times[STRONG] = timed(lambda: generate(strong, context, action), args.repeats, args.device)
    times["strong action, static cache"] = timed(
        lambda: generate(strong, context, action, cache_implementation="static"),
        args.repeats,
        args.device,
    )
    times["strong teacher forcing (8B, one pass)"] = timed(
        lambda: forward(strong, with_action), args.repeats, args.device
    )
    own = generate(strong, context, action)[0, args.context :].tolist()  # its greedy action
    diverging = [*own[: action // 2], (own[action // 2] + 1) % 151_936, *own[action // 2 + 1 :]]
    prompt = context[0].tolist()
    for label, draft in (
        ("agreeing draft", own),
        (f"draft diverging at token {action // 2}", diverging),
    ):
        times[f"F, {label}"] = timed(
            lambda draft=draft: continue_draft(
                strong, _NoTokenizer(), prompt, draft, max_new_tokens=action, end_ids=[NEVER]
            ),
            args.repeats,
            args.device,
        )
    return times


def table(times: dict[str, float], args: argparse.Namespace) -> str:
    strong = times[STRONG]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    lines = [
        f"device: {device}, {args.dtype}, context {args.context}, action {args.action}, "
        f"median of {args.repeats}{' (SMOKE: shrunken shapes)' if args.smoke else ''}",
        "",
        "| step | seconds | / strong action |",
        "|---|---:|---:|",
        *(f"| {k} | {v:.4f} | {v / strong:.3f} |" for k, v in times.items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--action", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, for a CPU check")
    parser.add_argument("--out", type=Path, help="folder for times.json and table.md")
    args = parser.parse_args()
    times = measure(args)
    text = table(times, args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "times.json").write_text(json.dumps(times, indent=2) + "\n")
        (args.out / "table.md").write_text(text)


if __name__ == "__main__":
    main()
