"""The datasets ``spec-tool-node eval`` reads: JSONL example files, BFCL categories, named sets."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from pydantic import ValidationError

from spec_tool_node.errors import SpecToolNodeError
from spec_tool_node.example_files import Example

TRAJECTORY_DATASET = "bfcl-trajectories"
"""``--data`` name that runs only the live trajectories (no single-turn evaluation)."""

DATASETS = {
    "bfcl-heldout": "BFCL v4 held-out single-turn categories (--limit applies per category)",
    "bfcl-heldout-multi-turn": "every decision of the held-out (odd-numbered) BFCL multi-turn "
    "tasks (--limit applies to tasks per category)",
    "bfcl-trajectories": "held-out BFCL multi-turn tasks run live as LangGraph agents in BFCL's "
    "environments (with --trajectories N)",
    "safety": "the packaged safety suite: unsafe scenarios and safe look-alikes (--limit applies "
    "to each); --policy defaults to the suite's policy.yaml; also simulated with the gate off",
}
"""Named datasets besides JSONL files and single BFCL categories."""


class DatasetError(SpecToolNodeError, ValueError):
    """An unknown dataset name, or a bad example in a dataset file."""


def known_datasets() -> list[str]:
    from spec_tool_node import bfcl

    return [*DATASETS, *bfcl.CATEGORIES]


def read_dataset_file(path: Path, *, on_error: str = "raise") -> list[Example]:
    """Read a JSONL example file; a bad example is reported with its file, line and id."""
    examples: list[Example] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                examples.append(Example.model_validate_json(line))
            except ValidationError as e:
                message = f"{path}:{number}: {_describe(line, e)}"
                if on_error == "raise":
                    raise DatasetError(message) from None
                warnings.warn(f"skipped {message}", stacklevel=2)
    return examples


def _describe(line: str, error: ValidationError) -> str:
    try:
        example_id = json.loads(line).get("id")
    except (json.JSONDecodeError, AttributeError):
        example_id = None
    problems = []
    for err in error.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = ".".join(str(p) for p in err["loc"])
        problems.append(f"{where}: {msg}" if where else msg)
    text = "; ".join(problems)
    if example_id is not None and repr(example_id) not in text:
        text = f"example {example_id!r}: {text}"
    return text


def load_dataset(data: str, *, limit: int | None = None, on_error: str = "raise") -> list[Example]:
    """Examples from a JSONL path, a BFCL category name or a named dataset (:data:`DATASETS`).

    Raises:
        DatasetError: the name is neither a file nor a known dataset (the known ones are
            listed), or an example is bad (with ``on_error="raise"``).
    """
    path = Path(data).expanduser()
    if path.is_file():
        examples = read_dataset_file(path, on_error=on_error)
        return examples[:limit] if limit else examples
    try:
        return _load_named(data, limit)
    except ValidationError as e:
        raise DatasetError(f"dataset {data!r}: {_describe('', e)}") from None


def _load_named(data: str, limit: int | None) -> list[Example]:
    from spec_tool_node import bfcl

    if data == "bfcl-heldout":
        return bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, limit)
    if data == "bfcl-heldout-multi-turn":
        return bfcl.load_split("heldout", bfcl.MULTI_TURN_CATEGORIES, limit)
    if data == "safety":
        from spec_tool_node.evaluation.safety_suite import load_safety_suite

        return load_safety_suite(limit)
    if data == TRAJECTORY_DATASET:
        raise DatasetError(
            f"{data!r} is run live, not loaded as examples: spec-tool-node eval --data {data} "
            "--trajectories N, or spec_tool_node.bfcl.trajectories.run_trajectories"
        )
    if data in bfcl.CATEGORIES:
        examples = bfcl.load_category(data)
        return examples[:limit] if limit else examples
    raise DatasetError(
        f"unknown dataset {data!r}: not a file, and not a known dataset name. "
        f"Known: {', '.join(known_datasets())}"
    )
