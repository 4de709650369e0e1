"""The verifier prompt: one format, defined once, read at inference and trained on.

A verifier sees a system instruction and one user message with three parts: the available tools,
the conversation transcript (one block per message, assistant tool calls in the canonical action
text) and the proposed next action in canonical text, followed by the question. Only the tools the
draft calls are shown with their full JSON schema (sorted keys); every other tool is one line of
name and the start of its description. That keeps the prompt short where agents carry dozens of
tools (a verifier that must cut its prompt loses the instruction first), and the schemas it shows
are the ones the draft's arguments are checked against. It answers ``ACCEPT`` or ``REJECT``; a
trained verifier reads only the logits of those two labels' first tokens right after the
generation prompt.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable

from spec_tool_node.actions import Action, ToolCall, ToolCallsAction, canonical_text
from spec_tool_node.chat_models.templates import render_prompt, to_chat_dicts
from spec_tool_node.verifiers.base import Verdict, Verifier

VERIFIER_SYSTEM = (
    "You check whether the proposed next action of a tool-using assistant is correct: the right "
    "tool with the right arguments, a direct answer when no tool fits, or a refusal when the "
    "request must not be carried out. Answer with one word: ACCEPT or REJECT."
)
"""The verifier's system message."""

LABELS = ("ACCEPT", "REJECT")
"""The two answers, accept first."""

QUESTION = "Is the proposed action the correct next step? Answer ACCEPT or REJECT."


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)
    return str(content)


def _arguments(raw: Any) -> dict[str, Any]:
    """Call arguments as a dict (OpenAI dicts carry them as a JSON string)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return {"__raw__": raw}
    return raw if isinstance(raw, dict) else {"__raw__": raw}


def _call(c: dict[str, Any]) -> ToolCall:
    function = c.get("function", c)
    return ToolCall(name=function["name"], arguments=_arguments(function.get("arguments")))


def _block(m: dict[str, Any], call_names: dict[str, str]) -> str:
    role = m.get("role", "user")
    content = _text(m.get("content"))
    if role == "assistant":
        calls = m.get("tool_calls") or []
        parts = [content.strip()] if content.strip() else []
        if calls:
            for c in calls:
                if c.get("id"):
                    call_names[c["id"]] = c.get("function", c)["name"]
            parts.append(canonical_text(ToolCallsAction(calls=[_call(c) for c in calls])))
        return "[assistant] " + "\n".join(parts)
    if role == "tool":
        name = m.get("name") or call_names.get(m.get("tool_call_id") or "")
        return f"[tool {name}] {content}" if name else f"[tool] {content}"
    return f"[{role}] {content}"


BRIEF_DESCRIPTION_CHARS = 160
"""How much of an uncalled tool's description the listing keeps."""


def _listing(tools: Sequence[dict[str, Any]], draft: Action) -> str:
    called = {c.name for c in draft.calls} if isinstance(draft, ToolCallsAction) else set()
    functions = [t.get("function", t) for t in tools]
    full = [
        json.dumps(f, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        for f in functions
        if f.get("name") in called
    ]
    brief = []
    for f in functions:
        if f.get("name") not in called:
            text = " ".join(str(f.get("description") or "").split())
            if len(text) > BRIEF_DESCRIPTION_CHARS:
                text = text[: BRIEF_DESCRIPTION_CHARS - 3].rstrip() + "..."
            brief.append(f"- {f.get('name')}: {text}" if text else f"- {f.get('name')}")
    parts = []
    if full:
        parts.append("Called tools (full schema):\n" + "\n".join(full))
    if brief:
        parts.append(("Other tools:\n" if full else "Tools:\n") + "\n".join(brief))
    return "\n".join(parts) or "(none)"


def verifier_messages(
    context: Sequence[BaseMessage | dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    draft: Action,
) -> list[dict[str, Any]]:
    """The verifier's chat: a system message and one user message (deterministic)."""
    listing = _listing(tools, draft)
    call_names: dict[str, str] = {}
    transcript = "\n".join(_block(m, call_names) for m in to_chat_dicts(context))
    user = (
        f"Available tools:\n{listing}\n\n"
        f"Conversation:\n{transcript or '(empty)'}\n\n"
        f"Proposed next action:\n{canonical_text(draft)}\n\n"
        f"{QUESTION}"
    )
    return [{"role": "system", "content": VERIFIER_SYSTEM}, {"role": "user", "content": user}]


def render_verifier_prompt(
    tokenizer: Any,
    context: Sequence[BaseMessage | dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    draft: Action,
) -> str:
    """The verifier prompt as the model reads it: the chat template, with the generation prompt."""
    return render_prompt(tokenizer, verifier_messages(context, tools, draft), tools=None)


def label_token_ids(tokenizer: Any) -> tuple[int, int]:
    """First token id of ``ACCEPT`` and of ``REJECT`` as written right after the generation prompt.

    Raises:
        ValueError: a label tokenizes to nothing, or both labels start with the same token.
    """
    ids = []
    for label in LABELS:
        tokens = tokenizer(label, add_special_tokens=False).input_ids
        if not tokens:
            raise ValueError(f"label {label!r} tokenizes to no tokens")
        ids.append(int(tokens[0]))
    if ids[0] == ids[1]:
        raise ValueError(
            f"labels {LABELS[0]!r} and {LABELS[1]!r} start with the same token ({ids[0]}); "
            "this tokenizer cannot tell them apart at one position"
        )
    return ids[0], ids[1]


class PromptedVerifier(Verifier):
    """A verifier that asks a chat model the verifier prompt once per draft (:attr:`asked`);
    a subclass reads the verdict from the reply (:meth:`_verdict`): the judge's label, or the
    served verifier's label log-probs."""

    asked: Runnable[list[BaseMessage], AIMessage]
    """The chat model (or its bound form) each draft's prompt is sent to."""

    @abstractmethod
    def _verdict(self, reply: AIMessage, start: float) -> Verdict:
        """The verdict of one reply; ``start`` is when its call began (for the record)."""

    @staticmethod
    def _messages(
        context: Sequence[BaseMessage], tools: Sequence[dict[str, Any]], draft: Action
    ) -> list[BaseMessage]:
        system, user = verifier_messages(context, tools, draft)
        return [SystemMessage(system["content"]), HumanMessage(user["content"])]

    def score_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        verdicts = []
        for draft in drafts:
            start = time.perf_counter()
            reply = self.asked.invoke(self._messages(context, tools, draft))
            verdicts.append(self._verdict(reply, start))
        return verdicts

    async def ascore_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        """The drafts' calls concurrently."""

        async def one(draft: Action) -> Verdict:
            start = time.perf_counter()
            reply = await self.asked.ainvoke(self._messages(context, tools, draft))
            return self._verdict(reply, start)

        return list(await asyncio.gather(*(one(d) for d in drafts)))
