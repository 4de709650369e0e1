"""BFCL multi-turn tasks: one task type for the decision examples and the live trajectories.

A :class:`MultiTurnTask` is what BFCL's inference loop sees of a test entry: the user turns, the
function docs bound from the start, the held-out docs a ``miss_func`` task adds at a later turn
(that turn's user message is BFCL's :data:`~spec_tool_node.bfcl.data.ADDED_FUNCTIONS_PROMPT`),
the ground-truth calls per turn and the environment's classes and initial configuration.
"""

from __future__ import annotations

import copy
import functools
import importlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from spec_tool_node.bfcl.data import (
    ADDED_FUNCTIONS_PROMPT,
    MULTI_TURN_CATEGORIES,
    BFCLDataError,
    answers,
    category_of,
    check_category,
    data_dir,
    entries,
    read_jsonl,
    split_of,
)


@dataclass(frozen=True)
class MultiTurnTask:
    """One BFCL multi-turn task as its inference loop sees it.

    ``functions`` are the docs bound from the start; ``added[t]`` the held-out docs added at turn
    ``t`` (``miss_func``). ``turns[t]`` are the user messages of turn ``t`` (BFCL's prompt for a
    turn that only adds functions).
    """

    id: str
    category: str
    turns: list[list[dict[str, Any]]]
    ground_truth: list[list[str]]
    initial_config: dict[str, Any]
    involved_classes: list[str]
    functions: list[dict[str, Any]]
    added: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def long_context(self) -> bool:
        return "long_context" in self.category

    def functions_at(self, turn: int) -> list[dict[str, Any]]:
        """The function docs bound at ``turn`` (held-out ones from their turn on)."""
        docs = list(self.functions)
        for t in sorted(self.added):
            if t <= turn:
                docs.extend(self.added[t])
        return docs

    def entry(self) -> dict[str, Any]:
        """The BFCL test entry fields its checker reads."""
        return {
            "id": self.id,
            "initial_config": copy.deepcopy(self.initial_config),
            "involved_classes": list(self.involved_classes),
        }


def multi_turn_modules() -> tuple[Any, dict[str, str], dict[str, str]]:
    """BFCL's multi-turn utilities, its class -> module map and its class -> doc file map."""
    try:
        utils = importlib.import_module("bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils")
        config = importlib.import_module("bfcl_eval.constants.executable_backend_config")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "bfcl_eval":
            data_dir()  # raises the install hint when the package itself is missing
        raise
    return utils, config.CLASS_FILE_PATH_MAPPING, config.MULTI_TURN_FUNC_DOC_FILE_MAPPING


@functools.cache
def class_import_error(class_name: str) -> str | None:
    """Why the environment class cannot be imported (a dependency bfcl-eval pins), or ``None``."""
    _, class_paths, _ = multi_turn_modules()
    module_name = class_paths.get(class_name)
    if module_name is None:
        return f"BFCL has no environment class {class_name!r}"
    try:
        getattr(importlib.import_module(module_name), class_name)
    except Exception as e:  # a missing optional dependency of that one environment
        return f"{type(e).__name__}: {e}"
    return None


def function_docs(class_name: str) -> list[dict[str, Any]]:
    """The function docs of one environment class."""
    _, _, doc_files = multi_turn_modules()
    return list(read_jsonl("multi_turn_func_doc", doc_files[class_name]))


def task_of(entry: dict[str, Any], category: str, ground_truth: list[list[str]]) -> MultiTurnTask:
    """The task of one test entry and its ground truth.

    Raises:
        BFCLDataError: the data contradicts itself (turn counts, held-out functions without a
            doc, a turn without a user message that adds no functions).
    """
    task_id: str = entry["id"]
    turns = copy.deepcopy(entry["question"])
    if len(turns) != len(ground_truth):
        raise BFCLDataError(
            f"BFCL {task_id}: {len(turns)} question turns, {len(ground_truth)} ground-truth turns"
        )
    docs: list[dict[str, Any]] = []
    for class_name in entry["involved_classes"]:
        docs.extend(function_docs(class_name))
    added: dict[int, list[dict[str, Any]]] = {}
    for turn, names in (entry.get("missed_function") or {}).items():
        added[int(turn)] = [d for d in docs if d["name"] in names]
        missing = set(names) - {d["name"] for d in added[int(turn)]}
        if missing:
            raise BFCLDataError(f"BFCL {task_id}: missed functions {sorted(missing)} have no doc")
    withheld = {d["name"] for docs_ in added.values() for d in docs_}
    for t, messages in enumerate(turns):
        if not messages:
            if t not in added:
                raise BFCLDataError(f"BFCL {task_id}: turn {t} has no user message")
            turns[t] = [{"role": "user", "content": ADDED_FUNCTIONS_PROMPT}]
    return MultiTurnTask(
        id=task_id,
        category=category,
        turns=turns,
        ground_truth=[list(calls) for calls in ground_truth],
        initial_config=copy.deepcopy(entry.get("initial_config") or {}),
        involved_classes=list(entry["involved_classes"]),
        functions=[d for d in docs if d["name"] not in withheld],
        added=added,
    )


def check_multi_turn(category: str) -> None:
    """Raise :class:`BFCLDataError` unless ``category`` is a multi-turn category."""
    check_category(category)
    if category not in MULTI_TURN_CATEGORIES:
        raise BFCLDataError(
            f"{category!r} is not a multi-turn category; known: {', '.join(MULTI_TURN_CATEGORIES)}"
        )


def load_task(task_id: str, *, allow_train: bool = False) -> MultiTurnTask:
    """Read one multi-turn task (``"multi_turn_base_1"``) from the installed BFCL data.

    Raises:
        BFCLDataError: not a multi-turn task id, an unknown id, a training-side (even) task
            without ``allow_train``, or data that contradicts itself.
        ImportError: an environment class of the task cannot be imported.
    """
    category, _ = category_of(task_id)
    if category not in MULTI_TURN_CATEGORIES:
        raise BFCLDataError(
            f"{task_id!r} is not a BFCL multi-turn task; categories: "
            f"{', '.join(MULTI_TURN_CATEGORIES)}"
        )
    if not allow_train and split_of(task_id) != "heldout":
        raise BFCLDataError(
            f"{task_id} is on the training side of the split (even task number); trajectories "
            "run held-out (odd) tasks only"
        )
    entry = next((e for e in entries(category) if e["id"] == task_id), None)
    if entry is None:
        raise BFCLDataError(f"unknown {category} task id: {task_id}")
    for class_name in entry["involved_classes"]:
        why = class_import_error(class_name)
        if why:
            raise ImportError(f"BFCL {task_id}: environment class {class_name} unavailable: {why}")
    return task_of(entry, category, answers(category)[task_id])


def heldout_task_ids(
    n: int | None = None, categories: Iterable[str] = MULTI_TURN_CATEGORIES
) -> list[str]:
    """The first ``n`` held-out task ids, categories in turn (base_1, miss_func_1, ...)."""
    chosen = list(categories)
    for name in chosen:
        if name not in MULTI_TURN_CATEGORIES:
            raise BFCLDataError(
                f"{name!r} is not a multi-turn category; known: {', '.join(MULTI_TURN_CATEGORIES)}"
            )
    per_category = [
        [e["id"] for e in entries(name) if split_of(e["id"]) == "heldout"] for name in chosen
    ]
    ids = [
        task_id
        for row in itertools.zip_longest(*per_category)
        for task_id in row
        if task_id is not None
    ]
    return ids if n is None else ids[:n]
