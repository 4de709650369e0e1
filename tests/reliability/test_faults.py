"""Fault injection: proposer, verifier and strong model that raise, time out, return nothing,
return garbage or call an unbound tool, through the node in a compiled graph (sync and async).

Proposer and verifier faults fall back to the strong model with the reason in the ledger; a
strong-model fault that is an exception or a timeout surfaces as a CascadeError naming the model
and the turn and carrying every call made; one that is an invalid action ends the turn without
running a tool.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult

from spec_tool_node.actions import Action
from spec_tool_node.cascade import CascadeError
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CallRecord
from spec_tool_node.node import SpeculativeActionNode
from spec_tool_node.verifiers.base import Verdict, Verifier
from tests.reliability.common import RAN, TOOLS, invoke, react_graph
from tests.scripted import ScriptedChatModel, ScriptedVerifier, call, say

TIMEOUT = 1.0
"""Per-call timeout: long enough that a healthy call on a loaded CPU never hits it."""
HUNG_S = 3 * TIMEOUT
GOOD = call("get_weather", city="Paris")
WEATHER = [("get_weather", {"city": "Paris"})]
both_drivers = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


class Hang:
    """A scripted step that takes longer than the cascade's per-call timeout."""


class SlowChatModel(ScriptedChatModel):
    """A scripted chat model for which a :class:`Hang` step sleeps past the timeout."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        if self.script and isinstance(self.script[0], Hang):
            self.script.pop(0)
            self.seen.append(list(messages))
            time.sleep(HUNG_S)
            raise AssertionError("a hung call's result must never be used")
        return super()._generate(messages, *args, **kwargs)

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        if self.script and isinstance(self.script[0], Hang):
            self.script.pop(0)
            self.seen.append(list(messages))
            await asyncio.sleep(HUNG_S)
            raise AssertionError("a hung call's result must never be used")
        return self._generate(messages, *args, **kwargs)


class FaultyVerifier(Verifier):
    """A verifier that hangs, or answers with the wrong number of scores or with NaN."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.name = "faulty-verifier"

    def score_batch(
        self, context: Sequence[BaseMessage], tools: Sequence[dict], drafts: Sequence[Action]
    ) -> list[Verdict]:
        if self.fault == "timeout":
            time.sleep(HUNG_S)
        record = CallRecord(role="verifier", model=self.name, purpose="verify")
        if self.fault == "nan":
            return [Verdict(math.nan, record)]
        return []  # empty: no score for the draft

    async def ascore_batch(
        self, context: Sequence[BaseMessage], tools: Sequence[dict], drafts: Sequence[Action]
    ) -> list[Verdict]:
        if self.fault == "timeout":
            await asyncio.sleep(HUNG_S)
        return self.score_batch(context, tools, drafts) if self.fault != "timeout" else []


def unparseable() -> AIMessage:
    return AIMessage(
        "",
        invalid_tool_calls=[
            {"name": "get_weather", "args": "{city: Par", "id": "x", "error": "bad"}
        ],
    )


def node(
    proposer: list[Any] | None,
    strong: list[Any] | None,
    verifier: Verifier | None = None,
    mode: str = "D",
) -> SpeculativeActionNode:
    return SpeculativeActionNode(
        proposer=SlowChatModel(name="cheap", script=proposer) if proposer is not None else None,
        strong=SlowChatModel(name="strong", script=strong) if strong is not None else None,
        verifier=verifier,
        tools=TOOLS,
        config=CascadeConfig(mode=mode, call_timeout_s=TIMEOUT),
    )


def run(n: SpeculativeActionNode, use_async: bool) -> dict[str, Any]:
    return invoke(react_graph(n), {"messages": [HumanMessage("weather in Paris?")]}, use_async)


PROPOSER_FAULTS: dict[str, tuple[Any, str]] = {
    "raises": (RuntimeError("proposer crashed"), "error: RuntimeError: proposer crashed"),
    "times out": (Hang(), f"error: ModelTimeoutError: no reply within {TIMEOUT:g} s"),
    "empty": (say(""), "invalid: empty reply"),
    "garbage": (unparseable(), "invalid: unparseable tool call 'get_weather'"),
    "unbound tool": (
        call("launch_rockets", count=3),
        "invalid: call 0 names tool 'launch_rockets'",
    ),
}


@pytest.mark.parametrize("fault", PROPOSER_FAULTS, ids=str)
@both_drivers
def test_proposer_fault_falls_back_to_the_strong_model(fault: str, use_async: bool) -> None:
    step, reason = PROPOSER_FAULTS[fault]
    verifier = ScriptedVerifier([0.9])  # asked on turn 1 only: a failed draft is not scored
    out = run(node([step, say("Sunny.")], [GOOD], verifier), use_async)
    assert RAN == WEATHER
    first = out["spec_ledger"][0]
    assert (first.path, first.winner) == ("fallback", "strong")
    assert first.reject_reason.startswith(reason), first.reject_reason
    assert [(c.role, c.purpose, c.ok) for c in first.calls] == [
        ("cheap", "draft", fault not in ("raises", "times out")),
        ("strong", "act", True),
    ]
    assert len(verifier.scored) == 1 and out["spec_ledger"][1].path == "accepted"


VERIFIER_FAULTS: dict[str, tuple[Verifier, str]] = {
    "raises": (ScriptedVerifier(RuntimeError("verifier down")), "RuntimeError: verifier down"),
    "times out": (FaultyVerifier("timeout"), f"ModelTimeoutError: no reply within {TIMEOUT:g} s"),
    "empty": (FaultyVerifier("empty"), "ValueError: expected 1 finite scores, got []"),
    "garbage": (FaultyVerifier("nan"), "ValueError: expected 1 finite scores, got [nan]"),
}


@pytest.mark.parametrize("fault", VERIFIER_FAULTS, ids=str)
@both_drivers
def test_verifier_fault_falls_back_to_the_strong_model(fault: str, use_async: bool) -> None:
    verifier, reason = VERIFIER_FAULTS[fault]
    if isinstance(verifier, ScriptedVerifier):  # fresh script per run
        verifier = ScriptedVerifier(RuntimeError("verifier down"))
    if isinstance(verifier, ScriptedVerifier):
        verifier.batches.append(RuntimeError("verifier down"))  # turn 1 fails the same way
    out = run(node([GOOD, say("Sunny?")], [GOOD, say("Sunny.")], verifier), use_async)
    assert RAN == WEATHER
    assert out["messages"][-1].content == "Sunny."
    first = out["spec_ledger"][0]
    assert (first.path, first.winner, first.p_accept) == ("fallback", "strong", 0.0), first
    assert first.reject_reason == f"error: {reason}"
    roles = [(c.role, c.ok) for c in first.calls]
    assert roles[0] == ("cheap", True) and roles[-1] == ("strong", True)
    assert ("verifier", False) in roles  # the failed call is in the ledger too


STRONG_ERRORS: dict[str, tuple[Any, str]] = {
    "raises": (RuntimeError("rate limited"), "RuntimeError: rate limited"),
    "times out": (Hang(), f"ModelTimeoutError: no reply within {TIMEOUT:g} s"),
}


@pytest.mark.parametrize("fault", STRONG_ERRORS, ids=str)
@pytest.mark.parametrize("mode", ["A", "D"])
@both_drivers
def test_strong_failure_names_model_and_turn_and_keeps_every_call(
    fault: str, mode: str, use_async: bool
) -> None:
    step, what = STRONG_ERRORS[fault]
    # turn 0 runs a tool; turn 1 is where the strong model fails
    proposer = [GOOD, say("It is sunny.")] if mode == "D" else None
    verifier = ScriptedVerifier([0.9], [0.1]) if mode == "D" else None
    strong = [step] if mode == "D" else [GOOD, step]
    with pytest.raises(CascadeError) as info:
        run(node(proposer, strong, verifier, mode=mode), use_async)
    error = info.value
    assert str(error) == (
        f"turn 1: the strong model 'strong' failed, and there is no fallback: {what}"
    )
    assert error.model == "strong"
    assert RAN == WEATHER  # turn 0's tool ran; turn 1 ran nothing
    turn = error.turn
    assert turn is not None and turn.path == "error"
    expected = [("strong", "act", False)]
    if mode == "D":
        expected = [("cheap", "draft", True), ("verifier", "verify", True), *expected]
    assert [(c.role, c.purpose, c.ok) for c in turn.calls] == expected
    assert turn.cost == sum(c.cost for c in turn.calls) > 0
    assert turn.calls[-1].error == f"error: {what}"


STRONG_INVALID = {
    "empty": say(""),
    "garbage": unparseable(),
    "unbound tool": call("launch_rockets", count=3),
}


@pytest.mark.parametrize("fault", STRONG_INVALID, ids=str)
@both_drivers
def test_invalid_strong_action_ends_the_turn_without_a_tool(fault: str, use_async: bool) -> None:
    out = run(node([GOOD], [STRONG_INVALID[fault]], ScriptedVerifier([0.1])), use_async)
    assert RAN == []
    (turn,) = out["spec_ledger"]
    assert (turn.path, turn.winner) == ("invalid", "strong")
    assert turn.reject_reason.startswith("rejected; strong invalid: ")
    assert [(c.role, c.ok) for c in turn.calls] == [("cheap", True), ("verifier", True),
                                                    ("strong", True)]  # fmt: skip
    assert not out["messages"][-1].tool_calls


@pytest.mark.parametrize("fault", ["raises", "times out", "empty", "garbage", "unbound tool"])
def test_cheap_only_mode_answers_without_a_tool_when_its_draft_fails(fault: str) -> None:
    step, reason = PROPOSER_FAULTS[fault]
    out = run(node([step], None, mode="B"), use_async=False)
    assert RAN == []
    (turn,) = out["spec_ledger"]
    assert turn.path == "invalid" and turn.reject_reason.startswith(reason)
    assert not out["messages"][-1].tool_calls


def test_a_hung_call_does_not_hold_the_turn() -> None:
    start = time.perf_counter()
    out = run(node([Hang(), say("Sunny.")], [GOOD], ScriptedVerifier([0.9])), use_async=False)
    assert out["spec_ledger"][0].path == "fallback"
    assert time.perf_counter() - start < HUNG_S  # moved on before the hung call ended
