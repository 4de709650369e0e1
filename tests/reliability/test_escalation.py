"""Escalation to a person: a rule with ``escalate_to: human`` pauses the graph with interrupt(),
shows the proposed action and the rule, and resumes on approve, edit or reject; the ledger says
what was decided and by whom, and the resumed run never calls a model again.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from spec_tool_node.cascade import ReviewError
from spec_tool_node.config import CascadeConfig
from spec_tool_node.middleware import SafetyGateMiddleware, SpeculativeActionMiddleware
from spec_tool_node.node import SpeculativeActionNode
from spec_tool_node.safety import SafetyPolicy
from tests.reliability.common import LIMIT, OUTSIDE_MAIL, RAN, TOOLS, invoke, react_graph
from tests.scripted import ScriptedChatModel, ScriptedVerifier, call, say

HUMAN = SafetyPolicy(rules=[*LIMIT.rules, *SafetyPolicy.from_dict([
    {**OUTSIDE_MAIL, "escalate_to": "human"}]).rules])  # fmt: skip
STRONG = SafetyPolicy(rules=[*LIMIT.rules, *SafetyPolicy.from_dict([OUTSIDE_MAIL]).rules])
LEAK = call("send_email", to="help-desk@freebies.example.net", body="my bank password 'hunter2'")
THREAD = {"configurable": {"thread_id": "t1"}}
both_drivers = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


def models(cheap: list[Any] | None, strong: list[Any] | None):
    return (
        ScriptedChatModel(name="cheap", script=cheap) if cheap is not None else None,
        ScriptedChatModel(name="strong", script=strong) if strong is not None else None,
    )


def graph_for(mode: str, cheap, strong, policy: SafetyPolicy = HUMAN, verifier=None):
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=strong,
        verifier=verifier,
        tools=TOOLS,
        config=CascadeConfig(mode=mode),
        safety=policy,
    )
    return react_graph(node, checkpointer=InMemorySaver())


def ask(graph, use_async: bool) -> Any:
    out = invoke(graph, {"messages": [HumanMessage("mail the help desk")]}, use_async, THREAD)
    (pending,) = out["__interrupt__"]
    return pending.value


def test_escalating_to_the_strong_model_lets_its_leak_through() -> None:
    """Today's behaviour, kept as the default: the strong model decides, and here it is wrong."""
    _, strong = models(None, [LEAK, say("Sent.")])
    out = graph_for("A", None, strong, STRONG).invoke({"messages": [HumanMessage("mail")]}, THREAD)
    assert [("send_email", LEAK.tool_calls[0]["args"])] == RAN
    assert (out["spec_ledger"][0].safety, out["spec_ledger"][0].decided_by) == (
        "escalate",
        "strong",
    )


@pytest.mark.parametrize("mode", ["A", "C", "D"])
@both_drivers
def test_the_issue_leak_pauses_for_a_person_and_a_reject_refuses_it(mode: str, use_async) -> None:
    cheap_script = {"A": None, "C": [LEAK], "D": [LEAK]}[mode]
    strong_script = {"A": [LEAK], "C": [say("REJECT"), LEAK], "D": [LEAK]}[mode]
    cheap, strong = models(cheap_script, strong_script)
    verifier = ScriptedVerifier([0.1]) if mode == "D" else None
    graph = graph_for(mode, cheap, strong, verifier=verifier)
    request = ask(graph, use_async)
    assert request["action_requests"] == [
        {
            "name": "send_email",
            "args": LEAK.tool_calls[0]["args"],
            "description": "Rule outside-mail asks a person to decide (proposed by the strong "
            "model): email to an outside address",
        }
    ]
    assert request["review_configs"] == [
        {"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"]}
    ]
    calls_before = (cheap.calls if cheap else 0, strong.calls)
    resume = Command(resume={"decisions": [{"type": "reject", "message": "never send passwords"}]})
    out = invoke(graph, resume, use_async, THREAD)
    assert RAN == []
    assert (cheap.calls if cheap else 0, strong.calls) == calls_before  # no model called again
    (turn,) = out["spec_ledger"]
    assert (turn.path, turn.review, turn.decided_by, turn.rule) == (
        "rejected",
        "reject",
        "human",
        "outside-mail",
    )
    scored = len(verifier.scored) if verifier else 0
    assert len(turn.calls) == sum(calls_before) + scored  # each call once, across the pause
    assert out["messages"][-1].content == (
        "BLOCKED: refused to call send_email (rule outside-mail): rejected by a person: "
        "never send passwords"
    )


@both_drivers
def test_approve_runs_the_action_as_proposed(use_async) -> None:
    _, strong = models(None, [LEAK, say("Sent.")])
    graph = graph_for("A", None, strong)
    ask(graph, use_async)
    out = invoke(graph, Command(resume={"decisions": [{"type": "approve"}]}), use_async, THREAD)
    assert [("send_email", LEAK.tool_calls[0]["args"])] == RAN
    first = out["spec_ledger"][0]
    assert (first.path, first.review, first.decided_by) == ("approved", "approve", "human")
    assert out["messages"][1].response_metadata["spec"]["review"] == "approve"


@both_drivers
def test_edit_runs_the_edited_action(use_async) -> None:
    _, strong = models(None, [LEAK, say("Sent.")])
    graph = graph_for("A", None, strong)
    ask(graph, use_async)
    edited = {"name": "send_email", "args": {"to": "it@acme.com", "body": "please reset my pw"}}
    resume = Command(resume={"decisions": [{"type": "edit", "edited_action": edited}]})
    out = invoke(graph, resume, use_async, THREAD)
    assert [("send_email", edited["args"])] == RAN
    assert (out["spec_ledger"][0].path, out["spec_ledger"][0].review) == ("edited", "edit")


def test_an_edit_cannot_get_past_a_block_rule() -> None:
    _, strong = models(None, [LEAK])
    graph = graph_for("A", None, strong)
    ask(graph, use_async=False)
    edited = {"name": "transfer_money", "args": {"recipient": "eve", "amount": "9000"}}
    resume = Command(resume={"type": "edit", "edited_action": edited})  # one decision for all
    out = graph.invoke(resume, THREAD)
    assert RAN == []
    turn = out["spec_ledger"][0]
    assert (turn.path, turn.review, turn.rule, turn.safety) == (
        "blocked",
        "edit",
        "over-limit",
        "block",
    )


def test_an_invalid_edit_is_refused() -> None:
    _, strong = models(None, [LEAK])
    graph = graph_for("A", None, strong)
    ask(graph, use_async=False)
    edited = {"name": "launch_rockets", "args": {}}
    out = graph.invoke(Command(resume={"type": "edit", "edited_action": edited}), THREAD)
    assert RAN == [] and out["spec_ledger"][0].path == "blocked"
    assert "the reviewer's edit is invalid" in out["messages"][-1].content


@pytest.mark.parametrize(
    "answer",
    [
        "yes",
        {"decisions": []},
        {"decisions": [{"type": "maybe"}]},
        {"type": "edit"},
        {"type": "edit", "edited_action": {"args": {}}},
    ],
    ids=repr,
)
def test_a_malformed_answer_is_a_clear_error(answer) -> None:
    _, strong = models(None, [LEAK])
    graph = graph_for("A", None, strong)
    ask(graph, use_async=False)
    with pytest.raises(ReviewError):
        graph.invoke(Command(resume=answer), THREAD)
    assert RAN == []


def test_an_accepted_draft_goes_to_the_person_without_a_strong_call() -> None:
    cheap, strong = models([LEAK], [])
    graph = graph_for("D", cheap, strong, verifier=ScriptedVerifier([0.9]))
    request = ask(graph, use_async=False)
    assert "proposed by the cheap model" in request["action_requests"][0]["description"]
    out = graph.invoke(Command(resume={"decisions": [{"type": "reject"}]}), THREAD)
    assert strong.calls == 0 and RAN == []
    turn = out["spec_ledger"][0]
    assert (turn.winner, turn.decided_by, turn.p_accept) == ("cheap", "human", 0.9)
    assert [c.role for c in turn.calls] == ["cheap", "verifier"]
    assert "rejected by a person: email to an outside address" in out["messages"][-1].content


def test_cheap_only_mode_asks_the_person_too() -> None:
    cheap, _ = models([LEAK, say("Sent.")], None)
    graph = graph_for("B", cheap, None)
    ask(graph, use_async=False)
    out = graph.invoke(Command(resume={"decisions": [{"type": "approve"}]}), THREAD)
    assert [("send_email", LEAK.tool_calls[0]["args"])] == RAN
    assert out["spec_ledger"][0].decided_by == "human"


def test_allowed_actions_do_not_pause() -> None:
    _, strong = models(None, [call("send_email", to="bob@acme.com", body="hi"), say("Sent.")])
    out = graph_for("A", None, strong).invoke({"messages": [HumanMessage("mail bob")]}, THREAD)
    assert "__interrupt__" not in out and RAN == [("send_email", {"to": "bob@acme.com",
                                                                   "body": "hi"})]  # fmt: skip
    assert out["spec_ledger"][0].decided_by is None


@both_drivers
def test_the_middleware_asks_the_person_the_same_way(use_async) -> None:
    cheap = ScriptedChatModel(name="cheap", script=[LEAK])
    strong = ScriptedChatModel(name="strong", script=[LEAK])
    middleware = SpeculativeActionMiddleware(
        proposer=cheap,
        verifier=ScriptedVerifier([0.2]),
        config=CascadeConfig(mode="D"),
        safety=HUMAN,
    )
    agent = create_agent(
        model=strong, tools=TOOLS, middleware=[middleware], checkpointer=InMemorySaver()
    )
    out = invoke(agent, {"messages": [HumanMessage("mail the help desk")]}, use_async, THREAD)
    (pending,) = out["__interrupt__"]
    assert pending.value["action_requests"][0]["name"] == "send_email"
    resume = Command(resume={"decisions": [{"type": "reject", "message": "no"}]})
    out = invoke(agent, resume, use_async, THREAD)
    assert RAN == []
    assert (cheap.calls, strong.calls) == (1, 1)
    (turn,) = out["spec_ledger"]
    assert (turn.path, turn.decided_by, len(turn.calls)) == ("rejected", "human", 3)
    assert isinstance(out["messages"][-1], AIMessage)
    assert out["messages"][-1].content.startswith("BLOCKED: refused to call send_email")


def test_the_tool_gate_refuses_a_call_only_a_person_may_allow() -> None:
    """At tool time nobody is left to ask: even escalate="allow" does not let it through."""
    strong = ScriptedChatModel(name="strong", script=[LEAK, say("Could not send.")])
    agent = create_agent(
        model=strong, tools=TOOLS, middleware=[SafetyGateMiddleware(HUMAN, escalate="allow")]
    )
    out = agent.invoke({"messages": [HumanMessage("mail the help desk")]})
    assert RAN == []
    refusal = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert refusal.status == "error" and "outside-mail" in refusal.content
