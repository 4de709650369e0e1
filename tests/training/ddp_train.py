"""Run by ``accelerate launch`` in test_accelerate_launch.py: SFT or verifier training, one rank.

    accelerate launch --multi_gpu --num_processes 2 tests/training/ddp_train.py sft BASE OUT

On a machine without GPUs ``--multi_gpu`` starts the processes with torch's launcher and
accelerate runs DDP over gloo (``--cpu`` alone starts one process: multi-CPU there means MPI).
Each rank records how it runs (``OUT/state-rank{R}.json``) and the rows its batches held
(``OUT/seen-rank{R}.json``), so the test can check that the processes trained on different
shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from accelerate import PartialState

from spec_tool_node.example_files import Example
from spec_tool_node.training import sft
from spec_tool_node.training.verifier import train_verifier

CITIES = ["Paris", "Lyon", "Nice", "Rome", "Oslo", "Lima", "Kyiv", "Baku"]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def examples() -> list[Example]:
    return [
        Example(
            id=city,
            tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": f"What's the weather in {city}?"}],
            gold=[{"get_weather": {"city": [city]}}],
        )
        for city in CITIES
    ]


def record_rows(out: Path, tokenizer_dir: str) -> None:
    """Wrap the collator so every batch's rows are logged under this process's rank.

    A row is logged as (the city its question asks about, a hash of its token ids).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rank = int(os.environ.get("RANK", "0"))
    seen: list[list[str]] = []
    collate = sft.Collator.__call__

    def logged(self: sft.Collator, batch: list[dict[str, list[int]]]) -> dict:
        for row in batch:
            text = tokenizer.decode(row["input_ids"])
            city = next((c for c in CITIES if f"weather in {c}?" in text), "?")
            digest = hashlib.sha1(str(row["input_ids"]).encode()).hexdigest()
            seen.append([city, digest])
        (out / f"seen-rank{rank}.json").write_text(json.dumps(seen))
        return collate(self, batch)

    sft.Collator.__call__ = logged  # type: ignore[method-assign]


def main() -> None:
    kind, base, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    state = PartialState(cpu=True)
    (out / f"state-rank{state.process_index}.json").write_text(
        json.dumps(
            {
                "distributed_type": str(state.distributed_type),
                "backend": state.backend,
                "num_processes": state.num_processes,
            }
        )
    )
    record_rows(out, base)
    args = sft.training_arguments(
        out / "run",
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        logging_steps=1,
    )
    lora = sft.lora_config(r=4, lora_alpha=8)
    if kind == "sft":
        sft.train_sft(base, examples(), out / "run", args, lora)
    else:
        train_verifier(base, examples(), {}, out / "run", args, lora, eval_fraction=0.0)


if __name__ == "__main__":
    main()
