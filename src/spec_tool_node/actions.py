"""The three things an agent can do next, and the one text form everything compares them in.

A draft from any model becomes an :data:`Action`: a :class:`ToolCallsAction`, a
:class:`RespondAction` or a :class:`BlockedAction`. The canonical text form (stable JSON with
sorted keys, no call ids) is what verifier prompts, training data and matching read, so two models
that write the same call in different surface forms produce the same action.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import jsonschema
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from spec_tool_node.errors import SpecToolNodeError

BLOCKED_PREFIX = "BLOCKED:"
"""A model refuses an action by answering with this prefix followed by its reason."""


class InvalidActionError(SpecToolNodeError, ValueError):
    """A draft that cannot become a runnable action: unparseable, unbound tool, or bad arguments."""


class ToolCall(BaseModel):
    """One call of a bound tool."""

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, description="Call id; not part of the canonical form.")


class ToolCallsAction(BaseModel):
    """Run one or more tools (parallel calls keep their order)."""

    kind: Literal["tool_calls"] = "tool_calls"
    calls: list[ToolCall] = Field(min_length=1)


class RespondAction(BaseModel):
    """Answer the user without calling a tool."""

    kind: Literal["respond"] = "respond"
    content: str


class BlockedAction(BaseModel):
    """An action that was refused, by the safety gate (``rule`` set) or by the model itself."""

    kind: Literal["blocked"] = "blocked"
    reason: str
    rule: str | None = None
    attempted: ToolCallsAction | None = None


Action = Annotated[ToolCallsAction | RespondAction | BlockedAction, Field(discriminator="kind")]


def new_call_id() -> str:
    """A fresh tool-call id in OpenAI's shape, so ToolNode can pair results with calls."""
    return f"call_{uuid.uuid4().hex[:24]}"


def action_from_message(message: AIMessage) -> Action:
    """Read the action an AIMessage takes.

    Raises:
        InvalidActionError: the message carries tool calls that did not parse.
    """
    if message.invalid_tool_calls:
        bad = message.invalid_tool_calls[0]
        raise InvalidActionError(
            f"unparseable tool call {bad.get('name')!r}: {bad.get('error') or bad.get('args')}"
        )
    if message.tool_calls:
        return ToolCallsAction(
            calls=[
                ToolCall(name=c["name"], arguments=c["args"], id=c.get("id"))
                for c in message.tool_calls
            ]
        )
    text = (
        message.text.strip() if isinstance(message.content, list) else str(message.content).strip()
    )
    if text.upper().startswith(BLOCKED_PREFIX):
        return BlockedAction(reason=text[len(BLOCKED_PREFIX) :].strip() or "refused by the model")
    return RespondAction(content=text)


def action_to_message(action: Action, **fields: Any) -> AIMessage:
    """Build the AIMessage that carries ``action`` (extra ``fields`` go to the AIMessage).

    A BLOCKED action is a message with no tool calls whose content says what was refused and why,
    so the agent loop ends and the user sees the refusal.
    """
    if isinstance(action, ToolCallsAction):
        calls = [
            {"name": c.name, "args": c.arguments, "id": c.id or new_call_id(), "type": "tool_call"}
            for c in action.calls
        ]
        return AIMessage(content=fields.pop("content", ""), tool_calls=calls, **fields)
    if isinstance(action, RespondAction):
        return AIMessage(content=action.content, **fields)
    return AIMessage(content=blocked_text(action), **fields)


def blocked_text(action: BlockedAction) -> str:
    """The user-facing text of a BLOCKED action."""
    if action.attempted is None:
        return f"{BLOCKED_PREFIX} {action.reason}"
    names = ", ".join(c.name for c in action.attempted.calls)
    rule = f" (rule {action.rule})" if action.rule else ""
    return f"{BLOCKED_PREFIX} refused to call {names}{rule}: {action.reason}"


def canonical_text(action: Action) -> str:
    """Stable JSON with sorted keys and no call ids: one text per action, whoever wrote it."""
    if isinstance(action, ToolCallsAction):
        payload: dict[str, Any] = {
            "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in action.calls]
        }
    elif isinstance(action, RespondAction):
        payload = {"respond": action.content}
    else:
        payload = {"blocked": action.reason}
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def action_from_canonical(text: str) -> Action:
    """Inverse of :func:`canonical_text` (used by training data and caches)."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidActionError(f"not a canonical action: {e}") from e
    if not isinstance(payload, dict) or len(payload) != 1:
        raise InvalidActionError(f"not a canonical action: {text[:80]!r}")
    ((key, value),) = payload.items()
    if key == "tool_calls":
        return ToolCallsAction(calls=[ToolCall(**c) for c in value])
    if key == "respond":
        return RespondAction(content=value)
    if key == "blocked":
        return BlockedAction(reason=value)
    raise InvalidActionError(f"unknown action kind {key!r}")


ToolLike = BaseTool | type[BaseModel] | Callable[..., Any] | dict[str, Any]
"""What ``convert_to_openai_tool`` reads: a LangChain tool, a pydantic model, a function, or an
OpenAI tool dict."""


def tool_schemas(tools: Sequence[ToolLike]) -> dict[str, dict[str, Any]]:
    """Map each tool's name to its OpenAI function schema (LangChain tools, pydantic, dicts)."""
    schemas: dict[str, dict[str, Any]] = {}
    for tool in tools:
        function = convert_to_openai_tool(tool)["function"]
        schemas[function["name"]] = function
    return schemas


def normalize_tool_name(name: str) -> str:
    """The form tool names are compared in: NFKC, no invisible format characters, no surrounding
    whitespace, case-folded. Models and attackers vary exactly these; a rule must not miss them."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return text.strip().casefold()


def resolve_tool_names(action: Action, schemas: dict[str, dict[str, Any]]) -> Action:
    """``action`` with each call's name replaced by the bound tool it unambiguously means.

    A model (or an attacker) may write ``" Transfer_Money"`` for ``transfer_money``: names are
    compared after :func:`normalize_tool_name` (NFKC, no invisible characters, no surrounding
    whitespace, case-folded), so the call either becomes the bound tool's, rules included, or
    keeps a name that :func:`validate_action` rejects. A name two bound tools share after
    normalisation resolves only when it equals one of them exactly.
    """
    if not isinstance(action, ToolCallsAction):
        return action
    by_normal: dict[str, list[str]] = {}
    for name in schemas:
        by_normal.setdefault(normalize_tool_name(name), []).append(name)
    calls = []
    for call in action.calls:
        candidates = by_normal.get(normalize_tool_name(call.name), [])
        if call.name not in schemas and len(candidates) == 1:
            call = call.model_copy(update={"name": candidates[0]})
        calls.append(call)
    return action.model_copy(update={"calls": calls})


def resolve_action(action: Action, tools: Sequence[ToolLike] | dict[str, dict[str, Any]]) -> Action:
    """:func:`resolve_tool_names`, then :func:`validate_action`: the runnable form of ``action``.

    Raises:
        InvalidActionError: naming the call and what was wrong with it.
    """
    schemas = tools if isinstance(tools, dict) else tool_schemas(tools)
    resolved = resolve_tool_names(action, schemas)
    validate_action(resolved, schemas)
    return resolved


def validate_action(action: Action, tools: Sequence[ToolLike] | dict[str, dict[str, Any]]) -> None:
    """Check that every call names a bound tool and that its arguments satisfy the tool's schema.

    Raises:
        InvalidActionError: naming the call and what was wrong with it.
    """
    if not isinstance(action, ToolCallsAction):
        return
    schemas = tools if isinstance(tools, dict) else tool_schemas(tools)
    for i, call in enumerate(action.calls):
        function = schemas.get(call.name)
        if function is None:
            bound = ", ".join(sorted(schemas)) or "none"
            raise InvalidActionError(
                f"call {i} names tool {call.name!r}, which is not bound (bound: {bound})"
            )
        parameters = function.get("parameters") or {"type": "object"}
        validator = jsonschema.Draft202012Validator(parameters)
        error = jsonschema.exceptions.best_match(validator.iter_errors(call.arguments))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "arguments"
            raise InvalidActionError(f"call {i} to {call.name!r}: {where}: {error.message}")
