"""The verifier protocol: score drafts of the next action with p(ACCEPT).

One abstract method, like RouteLLM's ``Router``: :meth:`Verifier.score_batch` scores several drafts
of the same decision (mode E reranks them); :meth:`Verifier.score` is the one-draft case.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from spec_tool_node.actions import Action
from spec_tool_node.costs import CallRecord


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one draft."""

    p_accept: float
    """Probability that the draft is the right next action, in [0, 1]."""
    record: CallRecord | None = None
    """The model call this verdict cost (shared by a batch: set on the first verdict only)."""


class Verifier(ABC):
    """Scores drafts of the next action given the conversation and the bound tools."""

    @abstractmethod
    def score_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        """Return one verdict per draft, in order. ``tools`` are OpenAI function schemas."""

    def score(
        self, context: Sequence[BaseMessage], tools: Sequence[dict[str, Any]], draft: Action
    ) -> Verdict:
        return self.score_batch(context, tools, [draft])[0]

    async def ascore_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        """Async scoring; the default runs :meth:`score_batch` in a worker thread."""
        return await asyncio.to_thread(self.score_batch, context, tools, drafts)
