"""Turn a local model's reply text into LangChain tool calls.

Small models write the same call in many surface forms: the chat template's ``<tool_call>`` tags,
a fenced ```json block, bare JSON, several calls in one reply, even braces doubled as in a
format-string template (``{{"name": ...}}``, which Qwen2.5-Coder-1.5B writes after a long system
prompt). Every form becomes
``AIMessage.tool_calls``; a reply that clearly tries to call a tool but does not parse becomes an
entry of ``invalid_tool_calls`` and never an exception, so a misbehaving model cannot crash a run.
That includes a call followed by JSON that is no call (a tool result the model made up itself),
and a call wrapped in chat-control tokens (``<|im_start|>``) instead of the template's tags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages.tool import InvalidToolCall, ToolCall, invalid_tool_call, tool_call

from spec_tool_node.actions import new_call_id

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```[ \t]*([\w-]*)[ \t]*\n?(.*?)```", re.S)
_JSON_FENCE_LANGS = {"", "json", "tool_call", "tool_code", "jsonc"}
_CONTROL = re.compile(r"<\|[a-z_]+\|>(?:(?:assistant|user|system|tool)\n)?")


@dataclass
class ParsedReply:
    """What a reply says: free text, well-formed calls, and calls that did not parse."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = field(default_factory=list)


def _decode_all(blob: str) -> list[Any] | None:
    """Decode one or more concatenated JSON values (JSONL-style); None if any part is not JSON.

    JSON nested deeper than Python's recursion limit counts as not JSON (a model, or an attacker
    writing into a tool result, can produce it; it must not crash the run)."""
    decoder, values, i = json.JSONDecoder(), [], 0
    blob = blob.strip()
    while i < len(blob):
        try:
            value, end = decoder.raw_decode(blob, i)
        except (json.JSONDecodeError, RecursionError):
            return None
        values.append(value)
        i = end
        while i < len(blob) and blob[i] in " \t\r\n,;":
            i += 1
    return values


def _candidates(value: Any) -> list[Any]:
    """Flatten lists and ``{"tool_calls": [...]}`` wrappers into individual call objects."""
    if isinstance(value, list):
        return [c for v in value for c in _candidates(v)]
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        return _candidates(value["tool_calls"])
    return [value]


def _is_call_shaped(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("function"), dict):
        return True
    return "name" in obj and any(k in obj for k in ("arguments", "parameters", "args"))


def _to_call(obj: dict[str, Any]) -> ToolCall | InvalidToolCall:
    """Normalise one call-shaped object; bad names or arguments make an invalid call."""
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    args = next((obj[k] for k in ("arguments", "parameters", "args") if k in obj), {})
    raw = json.dumps(obj, ensure_ascii=False)
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            return invalid_tool_call(
                name=_str_or_none(name),
                args=raw,
                id=new_call_id(),
                error=f"arguments are not JSON: {e}",
            )
    if not isinstance(name, str) or not name:
        return invalid_tool_call(
            name=None, args=raw, id=new_call_id(), error="call has no tool name"
        )
    if not isinstance(args, dict):
        return invalid_tool_call(
            name=name, args=raw, id=new_call_id(), error="arguments are not an object"
        )
    return tool_call(name=name, args=args, id=new_call_id())


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _add(reply: ParsedReply, item: ToolCall | InvalidToolCall) -> None:
    if item.get("type") == "invalid_tool_call":
        reply.invalid_tool_calls.append(item)  # type: ignore[arg-type]
    else:
        reply.tool_calls.append(item)  # type: ignore[arg-type]


def _guess_name(blob: str) -> str | None:
    match = re.search(r'"name"\s*:\s*"([^"]+)"', blob)
    return match.group(1) if match else None


def _parse_blob(blob: str, reply: ParsedReply, *, must_be_call: bool) -> bool:
    """Parse a JSON blob into calls; returns whether the blob was consumed as calls.

    ``must_be_call``: the blob sits inside ``<tool_call>`` tags, so anything that fails to parse
    is an invalid call rather than plain text.
    """
    values = _decode_all(blob)
    doubled = blob.strip()
    if values is None and doubled.startswith("{{") and doubled.endswith("}}"):
        values = _decode_all(doubled[1:-1])  # braces doubled, as in a format-string template
    if values is None:
        if must_be_call or _guess_name(blob):
            reply.invalid_tool_calls.append(
                invalid_tool_call(
                    name=_guess_name(blob),
                    args=blob,
                    id=new_call_id(),
                    error="malformed JSON in tool call",
                )
            )
            return True
        return False
    objects = [c for v in values for c in _candidates(v)]
    shaped = [_is_call_shaped(o) for o in objects]
    if not must_be_call and not any(shaped):
        return False
    for obj, is_call in zip(objects, shaped, strict=True):
        if isinstance(obj, dict) and (is_call or must_be_call):
            _add(reply, _to_call(obj))
            continue
        # beside a call, other JSON is no answer either: small models echo a call and then
        # write its "result" themselves, which must not reach the user as a plain reply
        error = "tool call is not an object" if must_be_call else "JSON beside a call is no call"
        reply.invalid_tool_calls.append(
            invalid_tool_call(name=None, args=json.dumps(obj), id=new_call_id(), error=error)
        )
    return True


def parse_reply(text: str) -> ParsedReply:
    """Parse ``<tool_call>`` tags, fenced JSON blocks, or a bare JSON reply into tool calls.

    Text outside the calls stays as content. A reply with no call-shaped JSON is a plain answer.
    """
    if "<tool_call>" in text:
        reply = ParsedReply(content=_TAGGED.sub("", text).strip())
        for match in _TAGGED.finditer(text):
            _parse_blob(match.group(1), reply, must_be_call=True)
        return reply

    reply = ParsedReply(content=text.strip())
    fences = [m for m in _FENCED.finditer(text) if m.group(1).lower() in _JSON_FENCE_LANGS]
    if fences:
        consumed = [m for m in fences if _parse_blob(m.group(2), reply, must_be_call=False)]
        for m in consumed:
            reply.content = reply.content.replace(m.group(0).strip(), "")
        reply.content = reply.content.strip()
        return reply

    # chat-control tokens a small model writes around a call instead of the template's tags
    # (``<|im_start|>{"name": ...}<|im_start|>``) are no part of what it says; JSON that reads
    # as written keeps them (an argument value may hold the same characters)
    stripped = text.strip()
    if _decode_all(stripped) is None:
        stripped = _CONTROL.sub("\n", stripped).strip()
    if stripped[:1] in "{[" and _parse_blob(stripped, reply, must_be_call=False):
        reply.content = ""
    return reply


def call_forms(calls: Sequence[Mapping[str, Any]]) -> list[str]:
    """The same tool calls in each surface form small models write them in.

    The inverse of :func:`parse_reply`: every text here parses back to ``calls``. Two models that
    agree on an action often disagree on its form (Qwen2.5-Coder-1.5B writes a fenced, indented
    block where the 0.5B writes one line of bare JSON, and each switches with the prompt), so a
    draft is checked in every form (see ``continue_draft``'s ``alternatives``).
    """
    objects = [{"name": c["name"], "arguments": c.get("args", {})} for c in calls]
    if not objects:
        return []

    def dump(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, ensure_ascii=False, indent=indent)

    def fenced(body: str) -> str:
        return f"```json\n{body}\n```"

    forms = [
        "\n".join(dump(o) for o in objects),
        fenced("\n".join(dump(o, 2) for o in objects)),
        "\n".join(f"<tool_call>\n{dump(o)}\n</tool_call>" for o in objects),
        "\n\n".join(fenced(dump(o, 2)) for o in objects),
        fenced(dump(objects, 2)),
        dump(objects),
        fenced("\n".join(dump(o) for o in objects)),
    ]
    return list(dict.fromkeys(forms))


def parse_template_response(message: dict[str, Any]) -> ParsedReply:
    """Convert a message dict from the tokenizer's ``parse_response`` into a ParsedReply."""
    reply = ParsedReply(content=str(message.get("content") or "").strip())
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            _add(reply, _to_call(call))
    return reply
