"""The example format shared by training and evaluation, and its JSONL files.

One example is one decision: the tools, the conversation up to the decision, and the gold action
in BFCL's possible-answer style::

    {"id": "multiple_3",
     "tools": [OpenAI function schemas],
     "messages": [OpenAI chat messages up to the decision],
     "gold": [{"tool": {"arg": [acceptable values]}}] | "respond" | "blocked",
     "unsafe": [calls that must never run]}

Bad lines are reported with file and line number and either skipped or rejected.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spec_tool_node.errors import SpecToolNodeError
from spec_tool_node.jsonl import write_records

GoldCall = dict[str, dict[str, list[Any]]]
"""One expected call: ``{tool_name: {arg: [acceptable values]}}``; ``""`` among the values means
the argument may be omitted (BFCL's convention)."""


class ExampleError(SpecToolNodeError, ValueError):
    """A bad example or a bad line in an example file."""


class TemplateError(SpecToolNodeError, ValueError):
    """A chat template cannot render the examples the way inference will see them."""


class Example(BaseModel):
    """One decision to make: tools, conversation so far, and the gold action."""

    model_config = ConfigDict(extra="forbid")

    id: str
    tools: list[dict[str, Any]] = Field(default_factory=list)
    messages: list[dict[str, Any]] = Field(min_length=1)
    gold: list[GoldCall] | Literal["respond", "blocked"]
    unsafe: list[dict[str, Any]] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _gold_names_bound_tools(self) -> Example:
        if isinstance(self.gold, list):
            bound = {tool_name(t) for t in self.tools}
            for i, call in enumerate(self.gold):
                if len(call) != 1:
                    raise ValueError(f"example {self.id!r}: gold[{i}] must name exactly one tool")
                (name,) = call
                if name not in bound:
                    raise ValueError(
                        f"example {self.id!r}: gold[{i}] names tool {name!r}, which is not in its "
                        f"tool list ({', '.join(sorted(bound)) or 'none'})"
                    )
        return self

    @model_validator(mode="after")
    def _unsafe_entries_are_calls(self) -> Example:
        """An unsafe entry in another shape (``{tool: {arg: value}}``, say) would never match a
        call, and the suite's unsafe count would read zero whatever the models did."""
        bound = {tool_name(t) for t in self.tools}
        for i, entry in enumerate(self.unsafe):
            where = f"example {self.id!r}: unsafe[{i}]"
            if not isinstance(entry.get("name"), str) or not entry["name"]:
                raise ValueError(
                    f"{where} has no tool name: write {{'name': tool, 'arguments': {{...}}}}, "
                    f"got {entry!r:.120}"
                )
            extra = set(entry) - {"name", "arguments"}
            if extra or not isinstance(entry.get("arguments", {}), dict):
                raise ValueError(
                    f"{where} must be {{'name': tool, 'arguments': {{...}}}}, got {entry!r:.120}"
                )
            if entry["name"] not in bound:
                raise ValueError(
                    f"{where} names tool {entry['name']!r}, which is not in its tool list "
                    f"({', '.join(sorted(bound)) or 'none'})"
                )
        return self


def tool_name(tool: dict[str, Any]) -> str:
    """The name of an OpenAI tool schema, wrapped (``{"type": "function", ...}``) or bare."""
    return tool.get("function", tool)["name"]


def read_examples(
    path: str | Path, *, on_error: Literal["raise", "skip"] = "raise"
) -> Iterator[Example]:
    """Yield the examples of a JSONL file.

    Args:
        on_error: ``"raise"`` stops at the first bad line with an :class:`ExampleError` naming
            the file, the line and the example's id; ``"skip"`` warns with the same message and
            goes on. A gold call of an unbound tool and an ``unsafe`` entry that is not
            ``{"name": bound tool, "arguments": {...}}`` are errors.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield Example.model_validate_json(line)
            except ValidationError as e:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}"
                    for err in e.errors()
                )
                message = f"{path}:{number}{_id_of(line)}: {problems}"
                if on_error == "raise":
                    raise ExampleError(message) from None
                warnings.warn(message, stacklevel=2)


def _id_of(line: str) -> str:
    """`` (id 'x')`` for a line whose id can be read, so an error names the example too."""
    try:
        example_id = json.loads(line).get("id")
    except (json.JSONDecodeError, AttributeError):
        return ""
    return f" (id {example_id!r})" if isinstance(example_id, str) else ""


def write_examples(path: str | Path, examples: Iterable[Example]) -> int:
    """Write examples as JSONL atomically (temp file, then rename); returns how many."""
    return write_records(path, (e.model_dump(exclude_defaults=True) for e in examples))
