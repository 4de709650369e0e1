"""Extract probe features for the training-side drafts and the held-out greedy drafts (resumable).

    nice -n 5 .venv/bin/python benchmarks/probe_features.py --out runs/probe/features

Training side: the valid drafts of ``benchmarks/results/verifier/drafts_train.jsonl`` (qwen2.5-
coder-0.5b-instruct, greedy, on the first 80 of live_simple, live_multiple, live_irrelevance and
all of live_parallel and live_parallel_multiple), plus any drafts mined into the training-side
cache (``--train-cache``). Held-out side: the valid greedy drafts of the 250 held-out examples in
the evaluation cache. Every layer and pooling is cached, so the choice among them needs no model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spec_tool_node import bfcl
from spec_tool_node.evaluation.collector import ModelKeys, load_collection, model_key
from spec_tool_node.training.data import load_draft_cache
from spec_tool_node.training.probe import extract_features

PROPOSER = "qwen2.5-coder-0.5b-instruct"


def train_items(drafts: Path, train_cache: Path | None, ids: set[str] | None = None) -> list:
    """(example, canonical draft) of every valid training-side draft (of ``ids`` only, when
    given: the caches grow while mining goes on)."""
    examples = {e.id: e for e in bfcl.load_split("train", bfcl.TRAIN_SINGLE_TURN)}
    items = [
        (examples[i], r["draft"]) for i, r in load_draft_cache(drafts).items() if r.get("valid")
    ]
    if train_cache is not None:
        have = {e.id for e, _ in items}
        collection = load_collection(train_cache, ModelKeys(proposer=model_key(PROPOSER)))
        for i, c in collection.records.items():
            if i not in have and c.draft and c.draft.get("valid"):
                items.append((examples[i], c.draft["action"]))
    return [(e, d) for e, d in items if ids is None or e.id in ids]


def invalid_train_drafts(
    drafts: Path, train_cache: Path | None, ids: set[str] | None = None
) -> int:
    """How many training-side drafts (of ``ids``, when given) are invalid: they always fall
    back, which the threshold's cost must count."""
    records = load_draft_cache(drafts)
    invalid = {i for i, r in records.items() if not r.get("valid")}
    if train_cache is not None:
        collection = load_collection(train_cache, ModelKeys(proposer=model_key(PROPOSER)))
        invalid |= {
            i
            for i, c in collection.records.items()
            if i not in records and c.draft and not c.draft.get("valid")
        }
    return len(invalid if ids is None else invalid & ids)


def training_side_options(parser: argparse.ArgumentParser) -> None:
    """The options that say which training-side drafts a script reads."""
    parser.add_argument(
        "--drafts", type=Path, default=Path("benchmarks/results/verifier/drafts_train.jsonl")
    )
    parser.add_argument(
        "--train-cache", type=Path, default=Path("benchmarks/results/probe/cache_train")
    )
    parser.add_argument(
        "--train-ids",
        type=Path,
        help="JSON list of the training examples to use (the caches grow as mining goes on)",
    )


def training_side(args: argparse.Namespace) -> tuple[list, int]:
    """(example, canonical draft) of the valid training drafts, and how many are invalid, as
    :func:`training_side_options` chose them."""
    ids = set(json.loads(args.train_ids.read_text())) if args.train_ids else None
    items = train_items(args.drafts, args.train_cache, ids)
    return items, invalid_train_drafts(args.drafts, args.train_cache, ids)


def heldout_items(cache: Path, limit: int) -> list:
    """(example, canonical draft) of every valid greedy draft of the held-out examples."""
    examples = bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, limit)
    collection = load_collection(cache, ModelKeys(proposer=model_key(PROPOSER)))
    return [
        (e, collection[e.id].draft["action"])
        for e in examples
        if collection[e.id].draft and collection[e.id].draft.get("valid")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="feature cache folder")
    training_side_options(parser)
    parser.add_argument("--heldout-cache", type=Path, default=Path("benchmarks/results/bfcl/cache"))
    parser.add_argument("--limit", type=int, default=50, help="held-out examples per category")
    parser.add_argument("--base", default=PROPOSER, help="probe base model")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--only", choices=["train", "heldout"], help="one side only")
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="last drafts first (a second process into another folder meets the first halfway)",
    )
    args = parser.parse_args()
    items = []
    if args.only != "heldout":
        items += training_side(args)[0]
    if args.only != "train":
        items += heldout_items(args.heldout_cache, args.limit)
    if args.reverse:
        items.reverse()
    print(f"{len(items)} drafts", flush=True)
    features = extract_features(
        items, args.out, base_model=args.base, batch_size=args.batch_size, chunk=16
    )
    print(f"features: {features.features.shape} in {args.out}")


if __name__ == "__main__":
    main()
