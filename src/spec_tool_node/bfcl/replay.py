"""Multi-turn ground truth replayed in BFCL's environments: one example per decision.

See :mod:`spec_tool_node.bfcl.data` for the example format (one example per ground-truth call,
one ``"respond"`` example after the last call of each turn).
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import re
import warnings
from collections.abc import Iterable
from typing import Any

from spec_tool_node.bfcl.data import (
    SOURCE,
    BFCLDataError,
    answers,
    convert_function,
    entries,
)
from spec_tool_node.bfcl.environment import BFCLEnvironment
from spec_tool_node.bfcl.tasks import MultiTurnTask, check_multi_turn, class_import_error, task_of
from spec_tool_node.example_files import Example, tool_name


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
        category: one of :data:`~spec_tool_node.bfcl.data.MULTI_TURN_CATEGORIES`.
        ids: only these tasks, as task ids (``"multi_turn_base_3"``) or task numbers (``3``).
        limit: at most this many tasks (after ``ids``), in file order.

    Tasks whose environment class cannot be imported (a dependency bfcl-eval pins but this
    install lacks) are skipped with a warning.
    """
    check_multi_turn(category)
    chosen = list(entries(category))
    if ids is not None:
        wanted = {f"{category}_{i}" if isinstance(i, int) else str(i) for i in ids}
        known = {e["id"] for e in chosen}
        unknown = sorted(wanted - known)
        if unknown:
            raise BFCLDataError(f"unknown {category} task ids: {', '.join(unknown[:10])}")
        chosen = [e for e in chosen if e["id"] in wanted]
    if limit is not None:
        chosen = chosen[:limit]
    truth = answers(category)
    examples: list[Example] = []
    for entry in chosen:
        broken = {c: class_import_error(c) for c in entry["involved_classes"]}
        broken = {c: why for c, why in broken.items() if why}
        if broken:
            warnings.warn(
                f"BFCL {entry['id']}: skipped, environment classes cannot be imported: "
                + "; ".join(f"{c} ({why})" for c, why in broken.items()),
                stacklevel=2,
            )
            continue
        try:
            examples.extend(replay_task(task_of(entry, category, truth[entry["id"]])))
        except BFCLDataError as e:
            warnings.warn(f"{e}; task skipped", stacklevel=2)
    return examples


def replay_task(task: MultiTurnTask) -> list[Example]:
    """Run the task's ground truth call by call; one example before each call and one after
    the last call of each turn.

    Raises:
        BFCLDataError: a ground-truth call that cannot be read, or one of a function that is not
            bound at its turn.
    """
    meta_base = {"category": task.category, "source": SOURCE, "task_id": task.id}
    examples: list[Example] = []
    history: list[dict[str, Any]] = []
    docs_by_name = {d["name"]: d for d in task.functions_at(len(task.turns))}
    with BFCLEnvironment(task, "replay") as env:
        for t, (user_messages, calls) in enumerate(zip(task.turns, task.ground_truth, strict=True)):
            tools = [convert_function(d) for d in task.functions_at(t)]
            added = task.added.get(t, [])
            history.extend(copy.deepcopy(user_messages))
            turn_meta: dict[str, Any] = {**meta_base, "turn": t}
            if added:
                turn_meta["functions_added"] = [d["name"] for d in added]
            for s, call in enumerate(calls):
                try:
                    name, arguments = parse_call(
                        call, _param_order(_name_of(call), env.instances, docs_by_name)
                    )
                except (SyntaxError, ValueError) as e:
                    raise BFCLDataError(f"BFCL {task.id} turn {t}: {e}") from e
                examples.append(
                    _example(
                        task.id,
                        t,
                        s,
                        tools,
                        history,
                        [{name: {k: [v] for k, v in arguments.items()}}],
                        {**turn_meta, "step": s},
                    )
                )
                results = env.execute([call])
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
                _example(task.id, t, s, tools, history, "respond", {**turn_meta, "step": s})
            )
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
