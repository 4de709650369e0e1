"""Why mode F needs float32 logits in bfloat16: the strong model's top logits at one decision.

For one BFCL example it prints the strong model's three best first tokens, computed twice: from a
pass over the prompt alone (what generation does) and from a pass over prompt plus the proposer's
draft (what the draft check does), under three numeric settings: bfloat16 throughout, bfloat16
with float32 logits (``HFChatModel(float32_logits=True)``), and float32 throughout.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/lossless_near_tie.py simple_python_0
"""

from __future__ import annotations

import argparse

import torch

from spec_tool_node import bfcl
from spec_tool_node.actions import tool_schemas
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.chat_models.speculative import float32_logits
from spec_tool_node.evaluation.collector import context_of


def top(tokenizer: object, logits: torch.Tensor) -> list[tuple[str, float]]:
    best = logits.float().topk(3)
    return [
        (tokenizer.decode([i]), round(v, 4))
        for v, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("example", nargs="?", default="simple_python_0")
    args = parser.parse_args()
    category = args.example.rsplit("_", 1)[0]
    example = next(ex for ex in bfcl.load_split("heldout", [category]) if ex.id == args.example)
    tools = [{"type": "function", "function": f} for f in tool_schemas(example.tools).values()]
    context = context_of(example)
    proposer = HFChatModel(model="qwen2.5-coder-0.5b-instruct", prefix_cache=0)
    draft = proposer.bind_tools(tools).invoke(context)
    text = proposer.draft_text(context, draft, tools)
    strong = HFChatModel(model="qwen2.5-coder-1.5b-instruct", prefix_cache=0)
    tokenizer, model = strong.tokenizer, strong.hf_model
    prompt = tokenizer(strong._prompt(context, tools, None), add_special_tokens=False).input_ids
    ids = prompt + tokenizer(text, add_special_tokens=False).input_ids
    print(f"draft: {text!r}")
    for setting in ("bfloat16", "bfloat16 + float32 logits", "float32"):
        if setting == "bfloat16 + float32 logits":
            float32_logits(model)
        elif setting == "float32":
            model.float()
        with torch.inference_mode():
            alone = model(torch.tensor([prompt])).logits[0, -1]
            checked = model(torch.tensor([ids])).logits[0, len(prompt) - 1]
        print(f"{setting}:\n  prompt alone     {top(tokenizer, alone)}")
        print(f"  prompt + draft   {top(tokenizer, checked)}")


if __name__ == "__main__":
    main()
