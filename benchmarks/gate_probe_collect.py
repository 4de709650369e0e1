"""Greedy drafts of BFCL examples with the states of their own drafting pass.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gate_probe_collect.py \
        --cache runs/gate_probe/heldout_cache --out benchmarks/results/gate_probe
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gate_probe_collect.py --split train \
        --layers 3,6,9,12,15,18,21,24 --cache runs/gate_probe/train_cache \
        --out benchmarks/results/gate_probe

``--split heldout``: the 250 held-out examples. ``--split train``: every training-side example
that the probe's training drafts come from (``benchmarks/results/verifier/drafts_train.jsonl``
and the mined cache), so a head can be trained on drafting-pass features too.

Mode G's probe reads, per layer, the mean of the hidden states that wrote the draft
(``HFChatModel(hidden_layers=...)``), so its held-out measurement needs the drafting passes
themselves, not a pass over a re-rendered draft. The evaluation collector writes them (batched,
resumable) with every layer kept; the chosen layers are then saved as a small float16 file
(``SPLIT_drafting.npz``: ids, valid, actions, layers, features ``[n, layers, hidden]``). Each
held-out draft is compared with the committed held-out cache's greedy draft of the same example.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from spec_tool_node import bfcl
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation.collector import ModelKeys, collect, load_collection, model_key
from spec_tool_node.training.data import load_draft_cache

PROPOSER = "qwen2.5-coder-0.5b-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cache", type=Path, required=True, help="collector cache (all layers)")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--committed", type=Path, default=Path("benchmarks/results/bfcl/cache"))
    parser.add_argument("--limit", type=int, default=50, help="held-out examples per category")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--split", choices=["heldout", "train"], default="heldout")
    parser.add_argument("--layers", help="comma-separated layers to keep (default: every layer)")
    parser.add_argument(
        "--drafts", type=Path, default=Path("benchmarks/results/verifier/drafts_train.jsonl")
    )
    parser.add_argument(
        "--train-cache", type=Path, default=Path("benchmarks/results/probe/cache_train")
    )
    args = parser.parse_args()

    keys = ModelKeys(proposer=model_key(PROPOSER))
    if args.split == "heldout":
        examples = bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, args.limit)
    else:
        wanted = set(load_draft_cache(args.drafts)) | set(
            load_collection(args.train_cache, keys).records
        )
        examples = [e for e in bfcl.load_split("train", bfcl.TRAIN_SINGLE_TURN) if e.id in wanted]
    examples.sort(key=lambda e: len(json.dumps(e.messages)) + len(json.dumps(e.tools)))
    chat = HFChatModel(model=PROPOSER, max_new_tokens=128, prefix_cache=0)
    layers = (
        tuple(int(x) for x in args.layers.split(","))
        if args.layers
        else tuple(range(chat.hf_model.config.num_hidden_layers + 1))
    )
    chunk = 4 * args.batch_size
    for c in range(0, len(examples), chunk):
        part = examples[c : c + chunk]
        start = time.perf_counter()
        collect(
            part,
            args.cache,
            proposer=chat,
            keys=keys,
            modes=["B"],
            hidden_layers=layers,
            batch_size=args.batch_size,
            progress=False,
        )
        print(f"{c + len(part)}/{len(examples)} ({time.perf_counter() - start:.1f} s)", flush=True)

    fresh = load_collection(args.cache, keys)
    walls = sorted(fresh[e.id].draft["wall_s"] for e in examples)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / f"{args.split}_drafting.npz",
        ids=np.array([e.id for e in examples]),
        valid=np.array([bool(fresh[e.id].draft.get("valid")) for e in examples]),
        actions=np.array([fresh[e.id].draft.get("action") or "" for e in examples]),
        layers=np.array(layers),
        features=np.array(
            [
                [fresh[e.id].draft["hidden_states"][str(layer)] for layer in layers]
                for e in examples
            ],
            dtype=np.float16,
        ),
    )
    summary: dict = {
        "examples": len(examples),
        "median_wall_s_per_draft": walls[len(walls) // 2],
        "batch_size": args.batch_size,
    }
    if args.split == "heldout":
        committed = load_collection(args.committed, keys)
        same = [fresh[e.id].draft["action"] == committed[e.id].draft["action"] for e in examples]
        summary["same_action_as_committed_cache"] = sum(same)
        summary["differing"] = [e.id for e, s in zip(examples, same, strict=True) if not s]
    (args.out / f"{args.split}_collect.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
