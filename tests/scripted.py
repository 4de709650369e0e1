"""Scripted chat models and verifiers for tests that need exact control of a decision.

Test-only: never a product feature, a demo or a benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from spec_tool_node.actions import Action
from spec_tool_node.costs import CallRecord
from spec_tool_node.verifiers.base import Verdict, Verifier


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage(
        "", tool_calls=[{"name": name, "args": args, "id": f"id_{name}", "type": "tool_call"}]
    )


def say(text: str) -> AIMessage:
    return AIMessage(text)


def stamp(message: AIMessage, model_name: str) -> AIMessage:
    """A copy with the usage and model name a real chat model would set (10 in, 5 out); other
    scripted metadata (token log-probs, say) is kept."""
    return message.model_copy(
        update={
            "usage_metadata": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            "response_metadata": {**message.response_metadata, "model_name": model_name},
        }
    )


class ScriptedChatModel(BaseChatModel):
    """Replies with the next scripted message (or raises the next scripted exception)."""

    name: str = "scripted"
    script: list[Any] = Field(default_factory=list)  # AIMessage or Exception, in order
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    kwargs_seen: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def model(self) -> str:
        return self.name

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=tools, **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        self.kwargs_seen.append(kwargs)
        if not self.script:
            raise AssertionError(f"{self.name} was called more often than scripted")
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return ChatResult(generations=[ChatGeneration(message=stamp(item, self.name))])

    @property
    def calls(self) -> int:
        return len(self.seen)


class ScriptedVerifier(Verifier):
    """Returns scripted p(ACCEPT) values, one list per scoring call (or raises)."""

    def __init__(self, *batches: list[float] | Exception) -> None:
        self.batches = list(batches)
        self.scored: list[list[Action]] = []

    def score_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        self.scored.append(list(drafts))
        batch = self.batches.pop(0)
        if isinstance(batch, Exception):
            raise batch
        assert len(batch) == len(drafts), (batch, drafts)
        record = CallRecord(
            role="verifier", model="scripted-verifier", purpose="verify", input_tokens=20
        )
        return [Verdict(p, record if i == 0 else None) for i, p in enumerate(batch)]
