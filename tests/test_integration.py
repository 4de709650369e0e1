"""Mode D end to end on real packaged models: a multi-turn two-tool trajectory and its ledger."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import format_table, summarize
from spec_tool_node.node import SpecAgentState, SpeculativeActionNode
from spec_tool_node.verifiers import TrainedVerifier

CALLED: list[str] = []


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: the city name, e.g. Paris
        unit: "celsius" or "fahrenheit"
    """
    CALLED.append(city)
    return f"{city}: 21 degrees {unit}, sunny"


@tool
def get_time(city: str) -> str:
    """Get the current local time in a city.

    Args:
        city: the city name
    """
    return "14:05"


@pytest.mark.slow
@pytest.mark.packaged
def test_mode_d_trajectory_on_real_models(capsys):
    cheap = HFChatModel(model="qwen2.5-coder-0.5b-instruct", max_new_tokens=64)
    strong = HFChatModel(model="qwen2.5-coder-0.5b-instruct", max_new_tokens=64, do_sample=False)
    verifier = TrainedVerifier(model="qwen2.5-coder-0.5b-instruct")
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=strong,
        verifier=verifier,
        tools=[get_weather, get_time],
        config=CascadeConfig(mode="D", threshold=0.5),
    )
    builder = StateGraph(SpecAgentState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode([get_weather, get_time]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    out = builder.compile().invoke(
        {"messages": [HumanMessage("What's the weather in Paris in celsius?")]},
        {"recursion_limit": 9},
    )
    ledger = out["spec_ledger"]
    with capsys.disabled():
        print("\n" + format_table(ledger))
    assert len(ledger) >= 2  # a tool call, then an answer: a multi-turn trajectory
    assert "Paris" in CALLED
    assert any(isinstance(m, ToolMessage) for m in out["messages"])
    final = out["messages"][-1]
    assert isinstance(final, AIMessage) and not final.tool_calls
    for turn in ledger:
        assert turn.p_accept is None or 0.0 <= turn.p_accept <= 1.0
        assert turn.calls[0].role == "cheap" and turn.calls[0].input_tokens > 0
        # no verifier call only when no draft was valid: the strong model then acted, and its
        # own action may be invalid too (the 0.5B as "strong" here)
        scored = any(c.role == "verifier" for c in turn.calls)
        assert scored or (turn.path in ("fallback", "invalid") and turn.reject_reason)
    summary = summarize(ledger)
    assert summary.baseline_cost == pytest.approx(len(ledger) * 1.0)
    assert summary.cost == pytest.approx(sum(t.cost for t in ledger))
