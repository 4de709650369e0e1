"""The verifier protocol: score drafts of the next action with p(ACCEPT).

One abstract method, like RouteLLM's ``Router``: :meth:`Verifier.score_batch` scores several drafts
of the same decision (mode E reranks them); :meth:`Verifier.score` is the one-draft case. A verifier
that can also score a draft from what the proposer's own drafting pass returned (a probe on the
proposer's hidden states) overrides :meth:`Verifier.drafting_options` and
:meth:`Verifier.score_drafted`; mode G then uses it with no model call of its own.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from spec_tool_node.actions import Action
from spec_tool_node.costs import CallRecord
from spec_tool_node.errors import ConfigError


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

    @property
    def reads_drafting_pass(self) -> bool:
        """Whether :meth:`score_drafted` can score drafts (mode G then uses this verifier)."""
        return False

    def drafting_options(self, proposer: Any) -> dict[str, Any]:
        """The call options under which ``proposer``'s drafting pass returns what
        :meth:`score_drafted` reads (mode G binds them to the proposer).

        Raises:
            ConfigError: this verifier needs a pass of its own over each draft (the default),
                or cannot read this proposer's drafting pass.
        """
        raise ConfigError(
            f"{type(self).__name__} scores a draft with a pass of its own, not from the "
            "proposer's drafting pass: mode G takes a probe verifier trained on the 'drafting' "
            "pooling of the proposer's own hidden states (`spec-tool-node train verifier "
            "--method probe --poolings drafting`), or no verifier (its log-prob gate)"
        )

    def score_drafted(self, message: AIMessage) -> float | None:
        """p(ACCEPT) from what the drafting pass left in ``message`` (see
        :meth:`drafting_options`); ``None`` when it is not there."""
        return None
