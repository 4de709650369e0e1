"""Mine greedy actions of a local model on BFCL training-side examples, batched, into a cache.

    nice -n 5 .venv/bin/python benchmarks/probe_mine.py --model qwen2.5-coder-1.5b-instruct \
        --role strong --categories live_simple,live_multiple,live_irrelevance --limit 80 \
        --cache benchmarks/results/probe/cache_train

The records have the evaluation collector's format (``{"id", "act": record}`` in
``strong--KEY.jsonl``, ``{"id", "draft": record}`` in ``proposer--KEY.jsonl``), so the
training-side cache can be simulated with ``spec-tool-node eval`` like the held-out one, and the
probe's labels can say whether deferring to the strong model would change the outcome. Prompts are
grouped by length and decoded greedily in left-padded batches (a 2-core CPU gets several times the
throughput of one prompt at a time); each batch is appended as it finishes, so a rerun resumes.
The evaluation collector makes the records, so they are exactly what ``spec-tool-node eval``
would collect; a batch decodes the way ``HFChatModel`` decodes one prompt, up to the numerical
effect of padding.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from spec_tool_node import bfcl
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation.collector import ModelKeys, collect, model_key
from spec_tool_node.training.data import load_draft_cache


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", required=True, help="asset name, folder or hub id")
    parser.add_argument("--role", choices=["proposer", "strong"], required=True)
    parser.add_argument("--categories", required=True, help="comma-separated live_* categories")
    parser.add_argument("--limit", type=int, help="first N examples per category")
    parser.add_argument("--skip", type=int, default=0, help="skip the first N per category")
    parser.add_argument(
        "--drafts",
        help="JSONL draft cache: only examples with a valid draft there, the wrong ones first "
        "(what deferral labels and the threshold choice need)",
    )
    parser.add_argument("--cache", type=Path, required=True, help="cache folder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    examples = []
    for category in args.categories.split(","):
        chosen = bfcl.load_split("train", [category])[args.skip :]
        examples += chosen[: args.limit] if args.limit else chosen
    key = model_key(args.model)
    keys = ModelKeys(proposer=key) if args.role == "proposer" else ModelKeys(strong=key)
    done = load_draft_cache(keys.path(args.cache, args.role))
    todo = [e for e in examples if e.id not in done]
    if args.drafts:
        drafts = load_draft_cache(args.drafts)
        todo = [e for e in todo if drafts.get(e.id, {}).get("valid")]
        todo.sort(key=lambda e: bool(drafts[e.id].get("right")))  # stable: wrong drafts first
    print(f"{len(examples)} examples, {len(todo)} to do -> {keys.path(args.cache, args.role)}")
    chat = HFChatModel(model=args.model, max_new_tokens=args.max_new_tokens, prefix_cache=0)
    models = {"proposer": chat} if args.role == "proposer" else {"strong": chat}
    # Length-sorted batches inside chunks of 4 batches: little padding, and the priority order
    # of ``--drafts`` still holds chunk by chunk. The collector writes each chunk as it ends.
    chunk = 4 * args.batch_size
    for c in range(0, len(todo), chunk):
        part = sorted(todo[c : c + chunk], key=lambda e: len(json.dumps(e.messages)))
        start = time.perf_counter()
        collect(
            part,
            args.cache,
            keys=keys,
            modes=["B" if args.role == "proposer" else "A"],
            batch_size=args.batch_size,
            progress=False,
            **models,
        )
        print(
            f"{c + len(part)}/{len(todo)} ({time.perf_counter() - start:.1f} s for {len(part)})",
            flush=True,
        )


if __name__ == "__main__":
    main()
