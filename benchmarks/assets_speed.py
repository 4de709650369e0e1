"""Measure the offline model assets on this machine: conversion, cached load, prefill and decode.

    python benchmarks/assets_speed.py --repeats 3 --out benchmarks/results/assets

Each number is the median of ``--repeats`` runs. First-time conversion runs into a fresh
temporary cache each time (assemble + sha256 + dequantise + save bf16 safetensors); the other
numbers load the converted folder from the real cache (filled by the last conversion if empty).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from spec_tool_node import assets

PROMPT_WORDS = (
    "You are a careful assistant that calls tools. The user asks about the weather, "
    "their calendar, files on disk and money transfers; decide which tool fits "
    "and fill its arguments exactly. "
)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, repeats: int, prompt_tokens: int, new_tokens: int) -> dict[str, float]:
    def convert() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ[assets.CACHE_ENV] = tmp
            try:
                assets.resolve(name)
            finally:
                os.environ.pop(assets.CACHE_ENV)

    convert_s = median_time(convert, repeats)
    folder = assets.resolve(name)

    def load() -> tuple:
        return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.bfloat16
        )

    load_s = median_time(load, repeats)
    tokenizer, model = load()
    ids = tokenizer(PROMPT_WORDS * 20, return_tensors="pt").input_ids[:, :prompt_tokens]
    with torch.inference_mode():
        model(ids)  # warm-up
        prefill_s = median_time(lambda: model(ids), repeats)
        generate_s = median_time(
            lambda: model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            ),
            repeats,
        )
    return {
        "first_conversion_s": round(convert_s, 2),
        "cached_load_s": round(load_s, 2),
        "prompt_tokens": int(ids.shape[1]),
        "prefill_s": round(prefill_s, 3),
        "prefill_tok_s": round(ids.shape[1] / prefill_s, 1),
        "new_tokens": new_tokens,
        "decode_tok_s": round(new_tokens / max(generate_s - prefill_s, 1e-9), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--assets", default=",".join(assets.ASSETS), help="comma-separated asset names"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per number (median is reported)"
    )
    parser.add_argument("--prompt-tokens", type=int, default=256, help="prefill length")
    parser.add_argument(
        "--new-tokens", type=int, default=32, help="tokens generated for decode speed"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/assets"), help="output stem"
    )
    args = parser.parse_args()

    results = {}
    for name in args.assets.split(","):
        print(f"measuring {name} ...", flush=True)
        results[name] = measure(name, args.repeats, args.prompt_tokens, args.new_tokens)
        print(json.dumps(results[name]), flush=True)

    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "bfloat16",
        "batch": 1,
        "repeats": args.repeats,
        "command": "python benchmarks/assets_speed.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2)
    )
    header = (
        "| asset | first conversion (s) | cached load (s) | prefill tok/s | decode tok/s |\n"
        "|---|---|---|---|---|\n"
    )
    rows = "".join(
        f"| {n} | {r['first_conversion_s']} | {r['cached_load_s']} | {r['prefill_tok_s']} "
        f"({r['prompt_tokens']} tokens in {r['prefill_s']} s) | {r['decode_tok_s']} |\n"
        for n, r in results.items()
    )
    notes = (
        f"\nMachine: {machine['cores']} cores ({machine['cpu']}), torch {machine['torch']} "
        f"({machine['threads']} threads), bf16, batch 1. Median of {args.repeats} runs each.\n"
        f"Command: `{machine['command']}`\n"
    )
    args.out.with_suffix(".md").write_text(
        "# Offline model assets on this machine\n\n" + header + rows + notes
    )
    print(header + rows + notes)


if __name__ == "__main__":
    main()
