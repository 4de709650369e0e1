"""BFCL-style matching of an action against the gold of an example.

Training uses it to find the proposer drafts that are right (positives for the verifier) and
evaluation to score action accuracy. The rules mirror BFCL's AST checker
(``bfcl_eval/eval_checker/ast_eval/ast_checker.py``) so that our accuracy means what the
leaderboard's does, in a small form that does not need ``bfcl_eval`` at run time:

- the tool name must be equal; parallel calls pair with gold entries in any order, each entry once;
- every argument given must be in the gold (and in the tool's schema, when tools are given); every
  gold argument whose acceptable values do not include ``""`` must be given, and so must every
  argument the schema marks required;
- strings compare after BFCL's standardisation (lowercase, no spaces or ``,./-_*^``, ``'`` read
  as ``"``), so "April 1, 2024" equals "april 1 2024";
- an int is accepted where the schema expects a float (5 == 5.0), a float is not accepted where it
  expects an integer, and a bool never counts as a number;
- lists compare element by element in order; dicts compare key by key against the list of
  acceptable values BFCL gives for each key.

Where BFCL is looser or stricter by accident we keep the simpler rule: parallel calls are paired by
a perfect matching (BFCL pairs greedily, which fails when gold entries overlap), the standardisation
applies at every depth (BFCL: one level), ints count as floats inside lists too, and a value of
another type than the schema's (BFCL's "variable" case) is still compared with standardisation.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from spec_tool_node.actions import Action, BlockedAction, RespondAction, ToolCall, ToolCallsAction
from spec_tool_node.example_files import GoldCall, tool_name

Gold = list[GoldCall] | Literal["respond", "blocked"]

_STANDARDIZE = re.compile(r"[ \,\.\/\-\_\*\^]")  # BFCL's standardize_string, verbatim

# BFCL's type names and JSON Schema's, to the Python type a value must have ("any" is str in BFCL).
_SCHEMA_TYPES: dict[str, type] = {
    "string": str, "any": str, "integer": int, "float": float, "number": float,
    "boolean": bool, "array": list, "tuple": list, "dict": dict, "object": dict,
}  # fmt: skip


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: spacing, punctuation and case do not make an answer wrong."""
    return _STANDARDIZE.sub("", text).lower().replace("'", '"')


def matches(action: Action, gold: Gold, tools: list[dict[str, Any]] | None = None) -> bool:
    """Whether ``action`` is right for ``gold`` (see :func:`match_details`)."""
    return match_details(action, gold, tools)[0]


def match_details(
    action: Action, gold: Gold, tools: list[dict[str, Any]] | None = None
) -> tuple[bool, str]:
    """Whether ``action`` is right for ``gold``, and a short reason when it is not.

    ``gold`` is ``"respond"`` (BFCL irrelevance: right when no tool is called; an empty list
    means the same), ``"blocked"`` (right when the action is a refusal) or BFCL possible answers.
    ``tools`` (OpenAI function schemas, wrapped or bare, BFCL's own too) add the schema's type
    and required rules, as BFCL's checker applies them.
    """
    if gold == "blocked":
        if isinstance(action, BlockedAction):
            return True, ""
        return False, f"expected a refusal (BLOCKED), got {_describe(action)}"
    if gold == "respond" or not gold:
        if isinstance(action, RespondAction):
            return True, ""
        return False, f"expected no tool call, got {_describe(action)}"
    if not isinstance(action, ToolCallsAction):
        return False, f"expected {_plural(len(gold), 'call')}, got {_describe(action)}"
    calls = action.calls
    if len(calls) != len(gold):
        return False, f"expected {_plural(len(gold), 'call')}, got {len(calls)}"
    schemas = {tool_name(t): t.get("function", t) for t in tools or []}
    reasons = [[_call_mismatch(call, entry, schemas) for entry in gold] for call in calls]
    if len(calls) == 1:
        return reasons[0][0] is None, reasons[0][0] or ""

    owner: dict[int, int] = {}  # gold index -> call index, grown by augmenting paths (Kuhn)

    def assign(i: int, seen: set[int]) -> bool:
        for j, reason in enumerate(reasons[i]):
            if reason is None and j not in seen:
                seen.add(j)
                if j not in owner or assign(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i, call in enumerate(calls):
        if not assign(i, set()):
            if None in reasons[i]:
                return False, f"call {i} ({call.name}) only matches gold calls that others match"
            names = [next(iter(entry)) for entry in gold]
            same_tool = [r for r, n in zip(reasons[i], names, strict=True) if n == call.name]
            if same_tool:  # the closest gold entry says best what is wrong
                return False, f"call {i}: {same_tool[0]}"
            expected = ", ".join(repr(n) for n in dict.fromkeys(names))
            return False, f"call {i}: wrong tool {call.name!r} (expected one of {expected})"
    return True, ""


def _call_mismatch(call: ToolCall, entry: GoldCall, schemas: dict[str, dict]) -> str | None:
    """Why one call does not match one gold entry, or None when it does."""
    ((name, expected),) = entry.items()
    if call.name != name:
        return f"wrong tool {call.name!r} (expected {name!r})"
    parameters = schemas.get(name, {}).get("parameters") or {}
    properties = parameters.get("properties")
    for arg, value in call.arguments.items():
        if arg not in expected or (properties is not None and arg not in properties):
            return f"unexpected argument {arg!r}"
        acceptable = expected[arg]
        schema_type = (properties or {}).get(arg, {}).get("type")
        if not _type_ok(value, schema_type, acceptable):
            return f"argument {arg!r}: {value!r} is not of type {schema_type}"
        if not any(_equal(value, answer) for answer in acceptable):
            return f"argument {arg!r}: {value!r} not in {acceptable!r}"
    required = parameters.get("required", [])
    for arg in dict.fromkeys([*required, *expected]):
        if arg not in call.arguments and (arg in required or "" not in expected[arg]):
            return f"missing argument {arg!r}"
    return None


def _type_ok(value: Any, schema_type: Any, acceptable: list[Any]) -> bool:
    """BFCL's type check: the schema's type (an int passes for a float), or the gold's own type.

    A value of the gold's type passes because BFCL's gold sometimes holds a variable name or a None
    default where the schema names another type. Without a schema type any type passes here and
    :func:`_equal` decides.
    """
    expected = _SCHEMA_TYPES.get(schema_type) if isinstance(schema_type, str) else None
    if expected is None or type(value) is expected or (expected is float and type(value) is int):
        return True
    gold_type = next((type(a) for a in acceptable if a != ""), None)
    return type(value) is gold_type


def _equal(value: Any, answer: Any) -> bool:
    """Whether ``value`` equals one acceptable ``answer``, under BFCL's normalisation."""
    if isinstance(answer, dict) and not all(isinstance(a, list) for a in answer.values()):
        # a literal dict nested in a dict answer (BFCL compares those as they are)
        return (
            isinstance(value, dict)
            and value.keys() == answer.keys()
            and all(_equal(value[k], a) for k, a in answer.items())
        )
    if isinstance(answer, dict):  # BFCL dict answer: {key: [acceptable values]}
        return (
            isinstance(value, dict)
            and all(k in answer and any(_equal(v, a) for a in answer[k]) for k, v in value.items())
            and all(k in value or "" in accepted for k, accepted in answer.items())
        )
    if isinstance(answer, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(answer)
            and all(_equal(v, a) for v, a in zip(value, answer, strict=True))
        )
    if isinstance(answer, str):
        return isinstance(value, str) and standardize_string(value) == standardize_string(answer)
    if isinstance(answer, bool) or isinstance(value, bool):
        return type(value) is type(answer) and value == answer
    if isinstance(answer, int | float):
        return isinstance(value, int | float) and value == answer
    return value == answer


def _describe(action: Action) -> str:
    if isinstance(action, ToolCallsAction):
        names = ", ".join(c.name for c in action.calls)
        return f"{_plural(len(action.calls), 'call')} ({names})"
    return "a refusal" if isinstance(action, BlockedAction) else "a text response"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
