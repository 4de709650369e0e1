"""Whole BFCL categories and the fixed train/held-out split as example lists."""

from __future__ import annotations

from collections.abc import Iterable

from spec_tool_node.bfcl.data import (
    CATEGORIES,
    MULTI_TURN_CATEGORIES,
    Split,
    check_category,
    entries,
    single_turn_examples,
    split_of,
)
from spec_tool_node.bfcl.replay import load_multi_turn
from spec_tool_node.example_files import Example


def load_category(name: str) -> list[Example]:
    """All examples of one category (multi-turn categories: every step of every task)."""
    check_category(name)
    if name in MULTI_TURN_CATEGORIES:
        return load_multi_turn(name)
    return single_turn_examples(name)


def load_split(
    split: Split,
    categories: Iterable[str] | None = None,
    limit_per_category: int | None = None,
) -> list[Example]:
    """The examples of one side of the fixed split.

    Args:
        categories: restrict to these (default: every category in :data:`CATEGORIES`); a
            category with nothing on this side contributes nothing.
        limit_per_category: keep the first N of each category: N examples for a single-turn
            category, N whole tasks (all their steps) for a multi-turn one.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    chosen = list(CATEGORIES if categories is None else categories)
    for name in chosen:
        check_category(name)
    out: list[Example] = []
    for name in chosen:
        if name in MULTI_TURN_CATEGORIES:
            ids = [e["id"] for e in entries(name) if split_of(e["id"]) == split]
            out.extend(load_multi_turn(name, ids=ids, limit=limit_per_category))
        elif split_of(f"{name}_0") == split:
            examples = load_category(name)
            out.extend(examples if limit_per_category is None else examples[:limit_per_category])
    for example in out:  # the rule, checked on what leaves this function
        if split_of(example.id) != split:
            raise AssertionError(f"{example.id} is not in the {split} split")
    return out
