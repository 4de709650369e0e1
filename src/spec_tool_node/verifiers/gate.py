"""Mode G's zero-cost signal: the proposer's own token log-probs over its argument values.

A draft's mean log-prob over all of its tokens is a poor judge of it: most tokens are JSON syntax,
keys and the tool name, which a model writes confidently whether or not the call is right, and on
requests that no tool fits a model is most confident exactly when it wrongly calls one. Work on
function-call uncertainty finds log-probs informative only over the meaningful tokens, so the
gate averages them over the tokens that write argument values and nothing else. The log-probs come
from the drafting pass itself (``return_logprobs=True`` on a local model, ``logprobs`` on an
OpenAI-compatible one), so the gate costs no forward pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage

from spec_tool_node.verifiers.base import Verifier

_ARGUMENTS = re.compile(r'"(?:arguments|parameters)"\s*:\s*\{')


def argument_value_mask(text: str) -> list[bool]:
    """For each character of ``text``, whether it writes an argument value of a tool call.

    Every JSON object introduced by an ``"arguments"`` (or ``"parameters"``) key counts,
    wherever it sits (a ``<tool_call>`` block, a fenced block, plain text). Inside it, values are
    marked at any depth (strings with their quotes, numbers, literals, nested lists and objects
    except their keys); keys, separators and whitespace outside strings are not.
    """
    mask = [False] * len(text)
    for match in _ARGUMENTS.finditer(text):
        _mark_object(text, match.end(), mask)
    return mask


def _mark_object(text: str, i: int, mask: list[bool]) -> None:
    """Mark the values of the object whose ``{`` ends just before ``i``, up to its ``}``.

    A stack holds, per open container, what comes next: ``key`` (an object key or ``}``),
    ``colon`` (after a key), ``value`` (an object's value, up to ``,`` or ``}``) or ``list``.
    """
    stack = ["key"]
    in_string = escaped = False
    while i < len(text) and stack:
        c, state = text[i], stack[-1]
        inside_value = state in ("value", "list")
        if in_string:
            mask[i] = inside_value
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
                if state == "key":
                    stack[-1] = "colon"
        elif c == '"':
            in_string, mask[i] = True, inside_value
        elif c == ":" and state == "colon":
            stack[-1] = "value"
        elif c == "," and state == "value":
            stack[-1] = "key"
        elif c in "{[":
            mask[i] = inside_value
            stack.append("key" if c == "{" else "list")
        elif c in "}]":
            stack.pop()
            mask[i] = bool(stack) and stack[-1] in ("value", "list")
        elif c not in ", \t\r\n":
            mask[i] = inside_value
        i += 1


def value_logprobs(tokens: Sequence[str], logprobs: Sequence[float]) -> list[float]:
    """The log-probs of the tokens that write an argument value (tokens given as text pieces)."""
    text = "".join(tokens)
    mask = argument_value_mask(text)
    out, start = [], 0
    for token, logprob in zip(tokens, logprobs, strict=True):
        if any(mask[start : start + len(token)]):
            out.append(logprob)
        start += len(token)
    return out


def gate_signal(message: AIMessage) -> float | None:
    """exp(mean log-prob over the argument-value tokens) of a draft, in (0, 1].

    A reply without argument values (a text answer, a call without arguments) is averaged over
    all of its tokens. ``None`` when the message carries no token log-probs.
    """
    content = (message.response_metadata or {}).get("logprobs", {})
    entries = content.get("content") if isinstance(content, dict) else None
    if not entries:
        return None
    tokens = [str(e.get("token", "")) for e in entries]
    logprobs = [float(e.get("logprob", 0.0)) for e in entries]
    chosen = value_logprobs(tokens, logprobs) or logprobs
    return math.exp(sum(chosen) / len(chosen))


def logprob_options(model: Any) -> dict[str, Any]:
    """The call option that makes ``model`` return its token log-probs: ``return_logprobs`` for
    a local ``HFChatModel``, OpenAI's ``logprobs`` for any other chat model."""
    return {"return_logprobs": True} if hasattr(model, "return_logprobs") else {"logprobs": True}


def gate_options(proposer: Any, verifier: Verifier | None = None) -> dict[str, Any]:
    """The options mode G binds to ``proposer``: what ``verifier`` reads from the drafting pass
    (:meth:`Verifier.drafting_options`, which raises ``ConfigError`` when it cannot), else the
    token log-probs."""
    if verifier is not None:
        return verifier.drafting_options(proposer)
    return logprob_options(proposer)
