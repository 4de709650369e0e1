"""BFCL v4 (the ``bfcl-eval`` package) read into :class:`~spec_tool_node.examples.Example` objects.

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

import ast
import copy
import functools
import importlib
import importlib.resources
import inspect
import json
import re
import uuid
import warnings
from collections.abc import Iterable
from typing import Any, Literal

from spec_tool_node.errors import SpecToolNodeError
from spec_tool_node.examples import Example, tool_name

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
    """A BFCL task whose data contradicts itself (reported and skipped by the loaders)."""


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
def _read_jsonl(*parts: str) -> tuple[dict[str, Any], ...]:
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


def _entries(category: str) -> tuple[dict[str, Any], ...]:
    return _read_jsonl(f"BFCL_v4_{category}.json")


def _answers(category: str) -> dict[str, Any]:
    return {
        row["id"]: row["ground_truth"]
        for row in _read_jsonl("possible_answer", f"BFCL_v4_{category}.json")
    }


def _check_category(name: str) -> None:
    if name not in CATEGORIES:
        hint = (
            " (left out on purpose: its gold is 'any call', which the example format cannot state)"
            if name == "live_relevance"
            else ""
        )
        raise ValueError(f"unknown BFCL category {name!r}{hint}; known: {', '.join(CATEGORIES)}")


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


def _category_of(task_or_example_id: str) -> tuple[str, str]:
    """(category, rest) of an id: ``live_simple_0-0-0``, ``multi_turn_base_3/turn0/step1``."""
    head = task_or_example_id.split("/", 1)[0]
    category, sep, rest = head.rpartition("_")
    if not sep or not category or not rest:
        raise ValueError(f"not a BFCL id: {task_or_example_id!r}")
    return category, rest


def split_of(example_id: str) -> Split:
    """``"train"`` or ``"heldout"`` for a BFCL task or example id (see the module docstring)."""
    category, rest = _category_of(example_id)
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
        _check_category(name)
    out: list[Example] = []
    for name in chosen:
        if name in MULTI_TURN_CATEGORIES:
            ids = [e["id"] for e in _entries(name) if split_of(e["id"]) == split]
            out.extend(load_multi_turn(name, ids=ids, limit=limit_per_category))
        elif split_of(f"{name}_0") == split:
            examples = load_category(name)
            out.extend(examples if limit_per_category is None else examples[:limit_per_category])
    for example in out:  # the rule, checked on what leaves this function
        if split_of(example.id) != split:
            raise AssertionError(f"{example.id} is not in the {split} split")
    return out


# --------------------------------------------------------------------------------------------
# single-turn


def load_category(name: str) -> list[Example]:
    """All examples of one category (multi-turn categories: every step of every task)."""
    _check_category(name)
    if name in MULTI_TURN_CATEGORIES:
        return load_multi_turn(name)
    answers = None if name in IRRELEVANCE_CATEGORIES else _answers(name)
    examples: list[Example] = []
    for entry in _entries(name):
        if answers is None:
            gold: Any = "respond"
        elif entry["id"] in answers:
            gold = copy.deepcopy(answers[entry["id"]])
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


# --------------------------------------------------------------------------------------------
# multi-turn


def _multi_turn_modules() -> tuple[Any, dict[str, str], dict[str, str]]:
    try:
        utils = importlib.import_module("bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils")
        config = importlib.import_module("bfcl_eval.constants.executable_backend_config")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "bfcl_eval":
            data_dir()  # raises the install hint when the package itself is missing
        raise
    return utils, config.CLASS_FILE_PATH_MAPPING, config.MULTI_TURN_FUNC_DOC_FILE_MAPPING


@functools.cache
def _class_import_error(class_name: str) -> str | None:
    """Why the environment class cannot be imported (a dependency bfcl-eval pins), or ``None``."""
    _, class_paths, _ = _multi_turn_modules()
    module_name = class_paths.get(class_name)
    if module_name is None:
        return f"BFCL has no environment class {class_name!r}"
    try:
        getattr(importlib.import_module(module_name), class_name)
    except Exception as e:  # a missing optional dependency of that one environment
        return f"{type(e).__name__}: {e}"
    return None


def _function_docs(class_name: str) -> list[dict[str, Any]]:
    _, _, doc_files = _multi_turn_modules()
    return list(_read_jsonl("multi_turn_func_doc", doc_files[class_name]))


def _literal(node: Any, call: str) -> Any:
    try:
        value = ast.literal_eval(node)
    except ValueError as e:
        raise ValueError(f"ground-truth call {call!r} has a non-literal argument") from e
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def parse_call(call: str, param_names: Iterable[str] = ()) -> tuple[str, dict[str, Any]]:
    """``"cd(folder='document')"`` -> ``("cd", {"folder": "document"})``.

    Positional arguments are named by ``param_names`` in order.
    """
    node = ast.parse(call.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name | ast.Attribute):
        raise ValueError(f"not a function call: {call!r}")
    name = ast.unparse(node.func)
    names = list(param_names)
    if len(node.args) > len(names):
        raise ValueError(f"{call!r}: {len(node.args)} positional arguments, known {names}")
    arguments = {names[i]: _literal(arg, call) for i, arg in enumerate(node.args)}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ValueError(f"{call!r}: **kwargs are not supported")
        arguments[keyword.arg] = _literal(keyword.value, call)
    return name, arguments


def _param_order(
    name: str, instances: dict[str, Any], docs: dict[str, dict[str, Any]]
) -> list[str]:
    for instance in instances.values():
        method = getattr(instance, name, None)
        if callable(method) and not name.startswith("_"):
            try:
                return [
                    p.name
                    for p in inspect.signature(method).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                ]
            except (TypeError, ValueError):
                break
    doc = docs.get(name)
    return list(((doc or {}).get("parameters") or {}).get("properties") or {})


def load_multi_turn(
    category: str,
    ids: Iterable[str | int] | None = None,
    limit: int | None = None,
) -> list[Example]:
    """Replay the ground truth of multi-turn tasks and return one example per decision.

    Args:
        category: one of :data:`MULTI_TURN_CATEGORIES`.
        ids: only these tasks, as task ids (``"multi_turn_base_3"``) or task numbers (``3``).
        limit: at most this many tasks (after ``ids``), in file order.

    Tasks whose environment class cannot be imported (a dependency bfcl-eval pins but this
    install lacks) are skipped with a warning.
    """
    _check_category(category)
    if category not in MULTI_TURN_CATEGORIES:
        raise ValueError(
            f"{category!r} is not a multi-turn category; known: {', '.join(MULTI_TURN_CATEGORIES)}"
        )
    entries = list(_entries(category))
    if ids is not None:
        wanted = {f"{category}_{i}" if isinstance(i, int) else str(i) for i in ids}
        known = {e["id"] for e in entries}
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(f"unknown {category} task ids: {', '.join(unknown[:10])}")
        entries = [e for e in entries if e["id"] in wanted]
    if limit is not None:
        entries = entries[:limit]
    answers = _answers(category)
    examples: list[Example] = []
    for entry in entries:
        broken = {c: _class_import_error(c) for c in entry["involved_classes"]}
        broken = {c: why for c, why in broken.items() if why}
        if broken:
            warnings.warn(
                f"BFCL {entry['id']}: skipped, environment classes cannot be imported: "
                + "; ".join(f"{c} ({why})" for c, why in broken.items()),
                stacklevel=2,
            )
            continue
        try:
            examples.extend(_replay_task(entry, answers[entry["id"]], category))
        except BFCLDataError as e:
            warnings.warn(f"{e}; task skipped", stacklevel=2)
    return examples


def _replay_task(
    entry: dict[str, Any], ground_truth: list[list[str]], category: str
) -> list[Example]:
    utils, _, _ = _multi_turn_modules()
    task_id: str = entry["id"]
    turns: list[list[dict[str, Any]]] = entry["question"]
    if len(turns) != len(ground_truth):
        raise BFCLDataError(
            f"BFCL {task_id}: {len(turns)} question turns, {len(ground_truth)} ground-truth turns"
        )

    docs: list[dict[str, Any]] = []
    for class_name in entry["involved_classes"]:
        docs.extend(_function_docs(class_name))
    held_out: dict[int, list[dict[str, Any]]] = {}
    for turn, names in (entry.get("missed_function") or {}).items():
        held_out[int(turn)] = [d for d in docs if d["name"] in names]
        missing = set(names) - {d["name"] for d in held_out[int(turn)]}
        if missing:
            raise BFCLDataError(f"BFCL {task_id}: missed functions {sorted(missing)} have no doc")
    withheld = {d["name"] for added in held_out.values() for d in added}
    docs_by_name = {d["name"]: d for d in docs}
    tools = [convert_function(d) for d in docs if d["name"] not in withheld]

    # a private instance namespace in BFCL's utility, removed afterwards
    run_name = f"spec_tool_node_{uuid.uuid4().hex}"
    long_context = "long_context" in category

    def execute(calls: list[str]) -> tuple[list[str], dict[str, Any]]:
        return utils.execute_multi_turn_func_call(
            calls,
            entry.get("initial_config") or {},
            entry["involved_classes"],
            run_name,
            task_id,
            long_context=long_context,
        )

    meta_base = {"category": category, "source": SOURCE, "task_id": task_id}
    examples: list[Example] = []
    history: list[dict[str, Any]] = []
    try:
        _, instances = execute([])
        for t, (user_messages, calls) in enumerate(zip(turns, ground_truth, strict=True)):
            added = held_out.get(t, [])
            if added:
                tools = tools + [convert_function(d) for d in added]
            if not user_messages:
                if not added:
                    raise BFCLDataError(f"BFCL {task_id}: turn {t} has no user message")
                user_messages = [{"role": "user", "content": ADDED_FUNCTIONS_PROMPT}]
            history.extend(copy.deepcopy(user_messages))
            turn_meta = {**meta_base, "turn": t}
            if added:
                turn_meta["functions_added"] = [d["name"] for d in added]
            for s, call in enumerate(calls):
                try:
                    name, arguments = parse_call(
                        call, _param_order(_name_of(call), instances, docs_by_name)
                    )
                except (SyntaxError, ValueError) as e:
                    raise BFCLDataError(f"BFCL {task_id} turn {t}: {e}") from e
                examples.append(
                    _example(
                        task_id,
                        t,
                        s,
                        tools,
                        history,
                        [{name: {k: [v] for k, v in arguments.items()}}],
                        {**turn_meta, "step": s},
                    )
                )
                results, instances = execute([call])
                call_id = f"call_{t}_{s}"
                history.append(
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "function": {
                                    "name": name,
                                    "arguments": json.dumps(arguments, ensure_ascii=False),
                                },
                            }
                        ],
                    }
                )
                history.append(
                    {"role": "tool", "tool_call_id": call_id, "name": name, "content": results[0]}
                )
            s = len(calls)
            examples.append(
                _example(task_id, t, s, tools, history, "respond", {**turn_meta, "step": s})
            )
    finally:
        namespace = vars(utils)
        for key in [k for k in namespace if k.startswith(run_name)]:
            del namespace[key]
    return examples


def _name_of(call: str) -> str:
    """The function name of a python-call string (``"cd(folder='x')"`` -> ``"cd"``)."""
    return re.split(r"\s*\(", call.strip(), maxsplit=1)[0]


def _example(
    task_id: str,
    turn: int,
    step: int,
    tools: list[dict[str, Any]],
    history: list[dict[str, Any]],
    gold: Any,
    meta: dict[str, Any],
) -> Example:
    if isinstance(gold, list):
        bound = {tool_name(t) for t in tools}
        for call in gold:
            for name in call:
                if name not in bound:
                    raise BFCLDataError(
                        f"BFCL {task_id} turn {turn} step {step}: ground truth calls {name!r}, "
                        "which is not among the task's functions at that turn"
                    )
    return Example(
        id=f"{task_id}/turn{turn}/step{step}",
        tools=tools,
        messages=list(history),
        gold=gold,
        meta=meta,
    )
