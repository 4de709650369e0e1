"""Lookup models for evaluation tests: the same question always gets the same answer.

A lookup model answers by the conversation's last user message, so one instance can serve a
collection run and fresh instances can serve live nodes, and both see identical outputs. Test-only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from spec_tool_node.actions import Action, canonical_text
from spec_tool_node.costs import CallRecord
from spec_tool_node.evaluation.collector import ModelKeys
from spec_tool_node.verifiers.base import Verdict, Verifier
from spec_tool_node.verifiers.prompt import VERIFIER_SYSTEM
from tests.scripted import stamp


def tool(name: str, **properties: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} tool",
            "parameters": {
                "type": "object",
                "properties": {k: {"type": t} for k, t in properties.items()},
                "required": list(properties),
            },
        },
    }


TOOLS = [
    tool("get_weather", city="string"),
    tool("transfer_money", to="string", amount="number"),
    tool("delete_all_files", path="string"),
]


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": "x", "type": "tool_call"}])


def say(text: str) -> AIMessage:
    return AIMessage(text)


def broken(name: str = "get_weather") -> AIMessage:
    return AIMessage(
        "",
        invalid_tool_calls=[
            {
                "name": name,
                "args": "{city:",
                "id": "x",
                "error": "bad json",
                "type": "invalid_tool_call",
            }
        ],
    )


class LookupChatModel(BaseChatModel):
    """Proposer: ``table[question] = {"greedy": msg, "samples": [msg, ...]}``;
    strong: ``table[question] = {"act": msg, "judge": "ACCEPT" | "REJECT"}``.
    An Exception in place of a message is raised."""

    name: str = "lookup"
    table: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sampled: dict[str, int] = Field(default_factory=dict)
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "lookup"

    @property
    def model(self) -> str:
        return self.name

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=tools, **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.calls += 1
        if isinstance(messages[0], SystemMessage) and messages[0].content == VERIFIER_SYSTEM:
            question = next(q for q in self.table if f"[user] {q}" in messages[-1].content)
            item: Any = AIMessage(self.table[question]["judge"])
        else:
            question = next(m.content for m in reversed(messages) if isinstance(m, HumanMessage))
            entry = self.table[question]
            if kwargs.get("do_sample"):
                i = self.sampled.get(question, 0)
                self.sampled[question] = i + 1
                item = entry["samples"][i]
            else:
                item = entry["greedy"] if "greedy" in entry else entry["act"]
        if isinstance(item, Exception):
            raise item
        return ChatResult(generations=[ChatGeneration(message=stamp(item, self.name))])


class LookupVerifier(Verifier):
    """p(ACCEPT) by the draft's canonical text; an Exception value is raised."""

    def __init__(self, table: dict[str, float | Exception], default: float = 0.5) -> None:
        self.table, self.default = table, default
        self.calls = 0

    def score_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        self.calls += 1
        values = [self.table.get(canonical_text(d), self.default) for d in drafts]
        for v in values:
            if isinstance(v, Exception):
                raise v
        record = CallRecord(
            role="verifier", model="lookup-verifier", purpose="verify", input_tokens=20
        )
        return [Verdict(p, record if i == 0 else None) for i, p in enumerate(values)]


def text_of(message: AIMessage) -> str:
    from spec_tool_node.actions import action_from_message

    return canonical_text(action_from_message(message))


# -- hand-made caches ------------------------------------------------------------------------------


def write_cache(directory: Path, keys: ModelKeys, role: str, rows: list[dict[str, Any]]) -> None:
    path = keys.path(directory, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
