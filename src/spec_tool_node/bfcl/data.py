"""BFCL v4 (the ``bfcl-eval`` package) read into
:class:`~spec_tool_node.example_files.Example` objects.

The data ships inside the ``bfcl_eval`` package (``pip install --no-deps bfcl-eval==2026.3.23``;
its pinned dependencies are not needed here). Files ``data/BFCL_v4_<category>.json`` are JSONL
despite the suffix; the gold answers are in ``data/possible_answer/``; multi-turn tasks take their
function docs from ``data/multi_turn_func_doc/``.

Categories
----------
Single-turn: ``simple_python``, ``multiple``, ``parallel``, ``parallel_multiple``,
``irrelevance``, ``live_simple``, ``live_multiple``, ``live_parallel``,
``live_parallel_multiple``, ``live_irrelevance``. One example per entry: the messages are the
entry's (only) turn, the gold is BFCL's possible answer (``[{tool: {arg: [acceptable values]}}]``),
or ``"respond"`` for the irrelevance categories (the right action is not to call a tool).
``live_relevance`` is left out on purpose: its gold is "any call at all", which the example format
cannot state without inventing semantics.

Multi-turn: ``multi_turn_base``, ``multi_turn_miss_func``, ``multi_turn_miss_param``,
``multi_turn_long_context``. Each task's ground truth is replayed call by call in BFCL's own
executable environments (``execute_multi_turn_func_call``), so every tool message carries the real
output of the environment. One example per decision:

* one per ground-truth call, in order; its gold is that single call, each argument with its
  ground-truth value as the only acceptable value (positional arguments are named from the
  environment method's signature);
* one more after the last call of each turn (or as the only one of a turn without calls, such as
  the turn in ``miss_param`` that lacks a parameter, or the one in ``miss_func`` whose function is
  missing), with gold ``"respond"``: the assistant answers before the next user turn.

The messages of step ``s`` of turn ``t`` are the user turns so far and, for every earlier call, an
assistant message with one OpenAI ``tool_calls`` entry (``arguments`` a JSON string) followed by
its ``tool`` message (``tool_call_id`` paired). BFCL has no gold text for the assistant's answer at
the end of a turn, so that message is left out: the next user turn follows the last tool message
(or the previous user message). ``miss_func`` tasks start without their held-out functions and add
them at the turn named in ``missed_function``; that turn has no user text in the data and gets
BFCL's own prompt (:data:`ADDED_FUNCTIONS_PROMPT`), as BFCL's inference loop does. Example ids are
``f"{task_id}/turn{t}/step{s}"``. No system message is added anywhere (BFCL's function-calling mode
adds none).

Tool schemas
------------
BFCL's function docs become OpenAI tools (``{"type": "function", "function": {...}}``) with valid
JSON Schema parameters: ``dict`` -> ``object``, ``float`` -> ``number``, ``tuple`` -> ``array``,
``any`` -> no type constraint, at every nesting level; BFCL-only keys (``optional``) are dropped;
the multi-turn docs' ``response`` field (the return value's shape) is folded into the
description the way BFCL does for providers that reject it. Names are kept as they are, dots
included (``triangle_properties.get``), because BFCL's matching uses them; such names do not match
OpenAI's ``^[a-zA-Z0-9_-]+$``, so an OpenAI endpoint needs them mapped (and mapped back) by the
caller. Local chat templates accept them.

The fixed split
---------------
Nothing trained may see a held-out id; :func:`split_of` is the single rule:

* TRAIN: every ``live_*`` category, and multi-turn tasks with an EVEN task number.
* HELD-OUT: the non-live single-turn categories (``simple_python``, ``multiple``, ``parallel``,
  ``parallel_multiple``, ``irrelevance``), and multi-turn tasks with an ODD task number.

The four multi-turn categories reuse the base task numbers (``multi_turn_miss_func_12`` is
``multi_turn_base_12`` with a function held out), so the parity of the number decides for all four
and a task never lands on both sides.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.resources
import json
import warnings
from typing import Any, Literal

from spec_tool_node.errors import SpecToolNodeError
from spec_tool_node.example_files import Example

BFCL_INSTALL_HINT = "pip install --no-deps bfcl-eval==2026.3.23"
SOURCE = "bfcl_v4"

HELDOUT_SINGLE_TURN: tuple[str, ...] = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
)
TRAIN_SINGLE_TURN: tuple[str, ...] = (
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
)
SINGLE_TURN_CATEGORIES: tuple[str, ...] = HELDOUT_SINGLE_TURN + TRAIN_SINGLE_TURN
MULTI_TURN_CATEGORIES: tuple[str, ...] = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
CATEGORIES: tuple[str, ...] = SINGLE_TURN_CATEGORIES + MULTI_TURN_CATEGORIES
"""Every category this module loads (``live_relevance`` is left out, see the module docstring)."""

IRRELEVANCE_CATEGORIES = frozenset({"irrelevance", "live_irrelevance"})

ADDED_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"
"""BFCL's user message for the ``miss_func`` turn that adds the held-out functions
(``DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC``)."""

Split = Literal["train", "heldout"]

_TYPE_MAP = {
    "dict": "object",
    "object": "object",
    "float": "number",
    "double": "number",
    "number": "number",
    "tuple": "array",
    "list": "array",
    "array": "array",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "string": "string",
    "str": "string",
    "char": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "null": "null",
}
_DROP_KEYS = frozenset({"optional"})
_SCHEMA_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_KEYS = ("items", "additionalProperties", "not", "contains")
_SCHEMA_LIST_KEYS = ("anyOf", "oneOf", "allOf", "prefixItems")


class BFCLNotInstalledError(SpecToolNodeError, ImportError):
    """``bfcl_eval`` is not importable."""


class BFCLDataError(SpecToolNodeError, ValueError):
    """An unknown category or task, or a task whose data contradicts itself (the loaders report
    and skip the latter)."""


# --------------------------------------------------------------------------------------------
# locating and reading the data


def data_dir() -> Any:
    """The ``bfcl_eval/data`` folder (an importlib ``Traversable``)."""
    try:
        return importlib.resources.files("bfcl_eval") / "data"
    except ModuleNotFoundError as e:
        raise BFCLNotInstalledError(
            f"BFCL v4 data needs the bfcl-eval package: {BFCL_INSTALL_HINT} "
            "(its own dependencies are not needed)"
        ) from e


@functools.lru_cache(maxsize=64)
def read_jsonl(*parts: str) -> tuple[dict[str, Any], ...]:
    """The rows of a JSONL file under :func:`data_dir` (cached: the data never changes)."""
    path = data_dir().joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"BFCL data file {'/'.join(parts)} is missing from {data_dir()}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not JSON: {e}") from None
    return tuple(rows)


def entries(category: str) -> tuple[dict[str, Any], ...]:
    """The test entries of a category, in file order."""
    return read_jsonl(f"BFCL_v4_{category}.json")


def answers(category: str) -> dict[str, Any]:
    """The ground truth of a category by entry id."""
    return {
        row["id"]: row["ground_truth"]
        for row in read_jsonl("possible_answer", f"BFCL_v4_{category}.json")
    }


def check_category(name: str) -> None:
    """Raise :class:`BFCLDataError` naming the known categories unless ``name`` is one."""
    if name not in CATEGORIES:
        hint = (
            " (left out on purpose: its gold is 'any call', which the example format cannot state)"
            if name == "live_relevance"
            else ""
        )
        raise BFCLDataError(f"unknown BFCL category {name!r}{hint}; known: {', '.join(CATEGORIES)}")


# --------------------------------------------------------------------------------------------
# function docs -> OpenAI tools


def convert_schema(schema: Any) -> Any:
    """A BFCL parameter schema as valid JSON Schema (a new object; the input is not changed)."""
    if isinstance(schema, list):
        return [convert_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP_KEYS:
            continue
        if key == "type":
            mapped = _convert_type(value)
            if mapped is not None:
                out["type"] = mapped
        elif key in _SCHEMA_MAP_KEYS and isinstance(value, dict):
            out[key] = {name: convert_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_KEYS or key in _SCHEMA_LIST_KEYS:
            out[key] = convert_schema(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _convert_type(value: Any) -> Any:
    """Map one BFCL type (or a list of them); ``None`` means no type constraint."""
    if isinstance(value, list):
        mapped = [_convert_type(v) for v in value]
        if any(m is None for m in mapped):
            return None
        return list(dict.fromkeys(mapped))
    if not isinstance(value, str):
        return None
    return _TYPE_MAP.get(value) or _TYPE_MAP.get(value.lower())


def convert_function(doc: dict[str, Any]) -> dict[str, Any]:
    """One BFCL function doc as an OpenAI tool ``{"type": "function", "function": {...}}``.

    The name is kept unchanged (dots included), see the module docstring.
    """
    description = str(doc.get("description") or "")
    if "response" in doc:
        description += (
            f" The response field has the following schema: {json.dumps(doc['response'])}"
        )
    parameters = convert_schema(doc.get("parameters") or {"type": "object", "properties": {}})
    parameters["type"] = "object"
    parameters.setdefault("properties", {})
    function = {"name": doc["name"], "description": description.strip(), "parameters": parameters}
    return {"type": "function", "function": function}


# --------------------------------------------------------------------------------------------
# the split


def category_of(task_or_example_id: str) -> tuple[str, str]:
    """(category, rest) of an id: ``live_simple_0-0-0``, ``multi_turn_base_3/turn0/step1``."""
    head = task_or_example_id.split("/", 1)[0]
    category, sep, rest = head.rpartition("_")
    if not sep or not category or not rest:
        raise ValueError(f"not a BFCL id: {task_or_example_id!r}")
    return category, rest


def split_of(example_id: str) -> Split:
    """``"train"`` or ``"heldout"`` for a BFCL task or example id (see the module docstring)."""
    category, rest = category_of(example_id)
    if category.startswith("live_"):
        return "train"
    if category in HELDOUT_SINGLE_TURN:
        return "heldout"
    if category in MULTI_TURN_CATEGORIES:
        if not rest.isdigit():
            raise ValueError(f"multi-turn id without a task number: {example_id!r}")
        return "train" if int(rest) % 2 == 0 else "heldout"
    raise ValueError(
        f"id {example_id!r} belongs to no category of the split "
        f"(known: {', '.join(CATEGORIES)}, and any live_* category)"
    )


# --------------------------------------------------------------------------------------------
# single-turn


def single_turn_examples(name: str) -> list[Example]:
    """All examples of one single-turn category."""
    check_category(name)
    answers_ = None if name in IRRELEVANCE_CATEGORIES else answers(name)
    examples: list[Example] = []
    for entry in entries(name):
        if answers_ is None:
            gold: Any = "respond"
        elif entry["id"] in answers_:
            gold = copy.deepcopy(answers_[entry["id"]])
        else:
            warnings.warn(f"BFCL {entry['id']}: no possible answer; skipped", stacklevel=2)
            continue
        examples.append(
            Example(
                id=entry["id"],
                tools=[convert_function(doc) for doc in entry["function"]],
                messages=copy.deepcopy(entry["question"][0]),
                gold=gold,
                meta={"category": name, "source": SOURCE},
            )
        )
    return examples
