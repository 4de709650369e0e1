"""Concurrency: 64 trajectories at once through the async node on one compiled graph.

The models answer from the conversation they are shown (each trajectory asks about its own city)
and sleep a varying moment first, so the 64 runs interleave at every await. Each ledger must hold
only its own calls, its totals must equal the sum of its calls, and no call may be lost or
counted twice.
"""

from __future__ import annotations

import asyncio
import os
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from spec_tool_node.actions import Action, ToolCall, ToolCallsAction, canonical_text
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CallRecord, summarize
from spec_tool_node.node import SpeculativeActionNode
from spec_tool_node.verifiers.base import Verdict, Verifier
from tests.reliability.common import RAN, TOOLS, react_graph

N = int(os.environ.get("RELIABILITY_TRAJECTORIES", "64"))
"""Concurrent trajectories (benchmarks/reliability.py runs more)."""


def trajectory_of(messages: Sequence[BaseMessage]) -> int:
    """The trajectory number a conversation belongs to (its question names city ``c<i>``)."""
    question = next(m for m in messages if isinstance(m, HumanMessage))
    match = re.search(r"city c(\d+)", str(question.content))
    assert match, question.content
    return int(match.group(1))


async def jitter(key: str) -> None:
    """A pause that differs per call, so concurrent runs interleave unpredictably."""
    await asyncio.sleep((zlib.crc32(key.encode()) % 7) / 1000)


class CityModel(BaseChatModel):
    """Calls get_weather for the trajectory's city, then answers; tokens encode who asked."""

    name: str
    calls_by_trajectory: Counter = Field(default_factory=Counter)

    @property
    def _llm_type(self) -> str:
        return "city"

    @property
    def model(self) -> str:
        return self.name

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=tools, **kwargs)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise AssertionError("the async node must not take the sync path")

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        i = trajectory_of(messages)
        await jitter(f"{self.name}{i}{len(messages)}")
        self.calls_by_trajectory[i] += 1
        if isinstance(messages[-1], ToolMessage):
            reply = AIMessage(f"It is sunny in c{i}.")
        else:
            call = {"name": "get_weather", "args": {"city": f"c{i}"}, "id": f"w{i}"}
            reply = AIMessage("", tool_calls=[call])
        reply.usage_metadata = {"input_tokens": i, "output_tokens": 1, "total_tokens": i + 1}
        reply.response_metadata = {"model_name": self.name}
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ParityVerifier(Verifier):
    """Accepts the drafts of even trajectories and rejects those of odd ones."""

    def __init__(self) -> None:
        self.calls_by_trajectory: Counter = Counter()

    def score_batch(self, context: Any, tools: Any, drafts: Sequence[Action]) -> list[Verdict]:
        raise AssertionError("the async node must not take the sync path")

    async def ascore_batch(
        self, context: Sequence[BaseMessage], tools: Any, drafts: Sequence[Action]
    ) -> list[Verdict]:
        i = trajectory_of(context)
        await jitter(f"verifier{i}{len(context)}")
        self.calls_by_trajectory[i] += 1
        record = CallRecord(role="verifier", model="parity", purpose="verify", input_tokens=i)
        return [Verdict(1.0 if i % 2 == 0 else 0.0, record) for _ in drafts]


async def run_all(graph: Any) -> list[dict[str, Any]]:
    return await asyncio.gather(
        *(
            graph.ainvoke(
                {"messages": [HumanMessage(f"What's the weather in city c{i}?")]},
                {"configurable": {"thread_id": f"t{i}"}},
            )
            for i in range(N)
        )
    )


def test_concurrent_trajectories_keep_separate_exact_ledgers() -> None:
    RAN.clear()
    cheap, strong, verifier = CityModel(name="cheap"), CityModel(name="strong"), ParityVerifier()
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=strong,
        verifier=verifier,
        tools=TOOLS,
        config=CascadeConfig(mode="D", threshold=0.5),
    )
    outputs = asyncio.run(run_all(react_graph(node, checkpointer=InMemorySaver())))

    assert sorted(args["city"] for _, args in RAN) == sorted(f"c{i}" for i in range(N))
    for i, out in enumerate(outputs):
        ledger = out["spec_ledger"]
        assert len(ledger) == 2, i
        assert out["messages"][-1].content == f"It is sunny in c{i}."
        first = ledger[0]
        assert first.path == ("accepted" if i % 2 == 0 else "fallback")
        expected = ToolCallsAction(
            calls=[ToolCall(name="get_weather", arguments={"city": f"c{i}"})]
        )
        assert first.action == canonical_text(expected)
        calls = [c for turn in ledger for c in turn.calls]
        # only its own calls: every call's input tokens are the trajectory's number
        assert {c.input_tokens for c in calls} == {i}
        # nothing lost or duplicated: the ledger counts exactly the calls each model received
        by_role = Counter(c.role for c in calls)
        assert by_role["cheap"] == cheap.calls_by_trajectory[i] == 2
        assert by_role["verifier"] == verifier.calls_by_trajectory[i] == 2
        assert by_role["strong"] == strong.calls_by_trajectory[i] == (0 if i % 2 == 0 else 2)
        # totals equal the sum of their calls
        summary = summarize(ledger)
        assert summary.cost == pytest.approx(sum(c.cost for c in calls), abs=1e-12)
        for turn in ledger:
            assert turn.cost == pytest.approx(sum(c.cost for c in turn.calls), abs=1e-12)
        assert summary.by_role["cheap"]["input_tokens"] == 2 * i
        usage = [m.usage_metadata for m in out["messages"] if isinstance(m, AIMessage)]
        assert sum(u["input_tokens"] for u in usage) == sum(c.input_tokens for c in calls)
    assert sum(cheap.calls_by_trajectory.values()) == 2 * N
