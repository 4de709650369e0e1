"""The repeat guard: small models call a tool again right after its result; an agent must neither
loop nor end on an empty reply (node and middleware, sync and async)."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from spec_tool_node.cascade import answered_calls
from spec_tool_node.config import CascadeConfig
from spec_tool_node.middleware import SpeculativeActionMiddleware
from spec_tool_node.node import SpeculativeActionNode
from tests.scripted import ScriptedChatModel, ScriptedVerifier, call, say
from tests.test_node import QUESTION, RAN, TOOLS, both_drivers, graph, invoke

PARIS = call("get_weather", city="Paris")


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


def test_answered_calls_are_the_last_step_with_its_results():
    step = AIMessage("", tool_calls=[{"name": "ls", "args": {}, "id": "1"}])
    done = ToolMessage("a.txt", tool_call_id="1")
    assert answered_calls([HumanMessage("ls"), step, done]) == {
        '{"tool_calls": [{"arguments": {}, "name": "ls"}]}'
    }
    # the call is no longer "just answered" once anything else happened after it
    assert answered_calls([step, done, HumanMessage("again?")]) == frozenset()
    assert answered_calls([step]) == frozenset()  # no result yet
    other = AIMessage("", tool_calls=[{"name": "cd", "args": {"d": "x"}, "id": "2"}])
    later = [step, done, other, ToolMessage("ok", tool_call_id="2")]
    assert answered_calls(later) == {'{"tool_calls": [{"arguments": {"d": "x"}, "name": "cd"}]}'}


@both_drivers
def test_strong_repeat_is_asked_again_without_tools(use_async):
    strong = ScriptedChatModel(name="strong", script=[PARIS, PARIS, say("Sunny in Paris.")])
    node = SpeculativeActionNode(strong=strong, tools=TOOLS, config=CascadeConfig(mode="A"))
    out = invoke(graph(node), {"messages": QUESTION}, use_async)
    assert RAN == [("get_weather", {"city": "Paris"})]  # the repeat never ran
    assert out["messages"][-1].content == "Sunny in Paris."
    assert "tools" not in strong.kwargs_seen[2]  # the re-ask hides the tools
    last = out["spec_ledger"][-1]
    assert "repeat" in last.reject_reason
    assert [c.purpose for c in last.calls] == ["act", "act"]  # both strong calls are paid for


def test_strong_that_still_calls_ends_with_a_message_not_a_loop():
    strong = ScriptedChatModel(name="strong", script=[PARIS, PARIS, PARIS])
    node = SpeculativeActionNode(strong=strong, tools=TOOLS, config=CascadeConfig(mode="A"))
    out = graph(node).invoke({"messages": QUESTION})
    assert RAN == [("get_weather", {"city": "Paris"})]
    assert out["messages"][-1].content.startswith("Stopped instead of repeating")
    assert not out["messages"][-1].tool_calls


def test_repeating_draft_is_rejected_before_the_verifier():
    cheap = ScriptedChatModel(name="cheap", script=[PARIS, PARIS])
    strong = ScriptedChatModel(name="strong", script=[say("Sunny.")])
    verifier = ScriptedVerifier([0.9])  # scores only the first draft
    node = SpeculativeActionNode(
        proposer=cheap, strong=strong, verifier=verifier, tools=TOOLS, config=CascadeConfig()
    )
    out = graph(node).invoke({"messages": QUESTION})
    assert [t.path for t in out["spec_ledger"]] == ["accepted", "fallback"]
    assert out["spec_ledger"][-1].reject_reason.startswith("invalid: repeats")
    assert out["messages"][-1].content == "Sunny."


def test_a_new_call_after_a_result_is_not_a_repeat():
    strong = ScriptedChatModel(
        name="strong", script=[PARIS, call("get_weather", city="Lyon"), say("Both sunny.")]
    )
    node = SpeculativeActionNode(strong=strong, tools=TOOLS, config=CascadeConfig(mode="A"))
    graph(node).invoke({"messages": QUESTION})
    assert [city["city"] for _, city in RAN] == ["Paris", "Lyon"]


def test_middleware_re_asks_through_the_handler_without_tools():
    cheap = ScriptedChatModel(name="cheap", script=[PARIS, PARIS])
    strong = ScriptedChatModel(name="strong", script=[PARIS, say("Sunny in Paris.")])
    mw = SpeculativeActionMiddleware(
        proposer=cheap, verifier=ScriptedVerifier([0.9]), config=CascadeConfig(mode="D")
    )
    agent = create_agent(model=strong, tools=TOOLS, middleware=[mw])
    out = agent.invoke({"messages": QUESTION})
    assert RAN == [("get_weather", {"city": "Paris"})]
    assert out["messages"][-1].content == "Sunny in Paris."
    assert not strong.kwargs_seen[-1].get("tools")
