"""Re-check, in float32, the drafts where batched and one-at-a-time collection differed.

``benchmarks/batch_collect.py`` found two held-out drafts of the 0.5B (bfloat16) that differ
between a left-padded batch of 8 and one prompt at a time. This drafts each again both ways, in
bfloat16 (does the difference reproduce?) and with the whole model in float32 (does it vanish?),
in the batch it was collected in: the first 8 held-out examples of its category.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/batch_float32_check.py \
        > benchmarks/results/batching/float32_check.jsonl
"""

from __future__ import annotations

import argparse
import json

from spec_tool_node import bfcl
from spec_tool_node.actions import tool_schemas
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation.collector import context_of

PROPOSER = "qwen2.5-coder-0.5b-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--category", default="irrelevance")
    parser.add_argument("--ids", default="irrelevance_3,irrelevance_4")
    args = parser.parse_args()
    batch = bfcl.load_split("heldout", [args.category], 8)
    contexts = [context_of(ex) for ex in batch]
    tool_sets = [
        [{"type": "function", "function": f} for f in tool_schemas(ex.tools).values()]
        for ex in batch
    ]
    wanted = args.ids.split(",")
    for dtype in ("bfloat16", "float32"):
        model = HFChatModel(model=PROPOSER, dtype=dtype, max_new_tokens=128, prefix_cache=0)
        together = model.invoke_many(contexts, tool_sets)
        for i, ex in enumerate(batch):
            if ex.id not in wanted:
                continue
            alone = model.bind_tools(tool_sets[i]).invoke(contexts[i])
            a, b = alone.response_metadata["raw_text"], together[i].response_metadata["raw_text"]
            record = {"id": ex.id, "dtype": dtype, "same": a == b, "alone": a, "batched": b}
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
