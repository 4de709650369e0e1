"""The cascade and the tool gate as create_agent middleware."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage

from spec_tool_node.config import CascadeConfig
from spec_tool_node.middleware import SafetyGateMiddleware, SpeculativeActionMiddleware
from spec_tool_node.node import STREAM_KEY
from spec_tool_node.safety import SafetyPolicy
from tests.scripted import ScriptedChatModel, ScriptedVerifier, call, say
from tests.test_node import POLICY, QUESTION, RAN, TOOLS


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


def agent(cheap, strong, verifier, mode="D", extra=()):
    middleware = [
        SpeculativeActionMiddleware(
            proposer=cheap, verifier=verifier, config=CascadeConfig(mode=mode)
        ),
        *extra,
    ]
    return create_agent(model=strong, tools=TOOLS, middleware=middleware, system_prompt="Be brief.")


def test_mode_d_through_create_agent():
    cheap = ScriptedChatModel(
        name="cheap", script=[call("get_weather", city="Lyon"), say("Sunny in Paris.")]
    )
    strong = ScriptedChatModel(name="strong", script=[call("get_weather", city="Paris")])
    out = agent(cheap, strong, ScriptedVerifier([0.1], [0.9])).invoke({"messages": QUESTION})
    assert RAN == [("get_weather", {"city": "Paris"})]
    assert [t.path for t in out["spec_ledger"]] == ["fallback", "accepted"]
    assert strong.calls == 1 and cheap.calls == 2
    assert cheap.seen[0][0].content == "Be brief."  # drafts see the agent's system prompt
    assert out["messages"][-1].content == "Sunny in Paris."
    assert out["messages"][-1].response_metadata["spec"]["winner"] == "cheap"


async def test_async_and_streamed_decisions():
    cheap = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Paris"), say("ok")])
    strong = ScriptedChatModel(name="strong")
    events = []
    async for mode, data in agent(cheap, strong, ScriptedVerifier([0.9], [0.9])).astream(
        {"messages": QUESTION}, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            events.append(data[STREAM_KEY])
    assert [e["path"] for e in events] == ["accepted", "accepted"] and strong.calls == 0


def test_mode_c_judge_is_the_agent_model():
    cheap = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Paris"), say("ok")])
    strong = ScriptedChatModel(name="strong", script=[say("ACCEPT"), say("ACCEPT")])
    out = agent(cheap, strong, None, mode="C").invoke({"messages": QUESTION})
    assert [t.path for t in out["spec_ledger"]] == ["accepted", "accepted"]
    assert [c.purpose for c in out["spec_ledger"][0].calls] == ["draft", "judge"]


def test_safety_gate_middleware_refuses_forbidden_tool_calls():
    strong = ScriptedChatModel(
        name="strong", script=[call("delete_all_files", path="/"), say("I could not.")]
    )
    gate = SafetyGateMiddleware(SafetyPolicy.from_dict(POLICY))
    out = create_agent(model=strong, tools=TOOLS, middleware=[gate]).invoke(
        {"messages": [HumanMessage("wipe it")]}
    )
    refusal = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert refusal.status == "error" and "no-delete" in refusal.content
    assert RAN == []


def test_mode_d_without_verifier_fails_at_construction():
    with pytest.raises(ValueError, match="mode D needs a verifier"):
        SpeculativeActionMiddleware(proposer=ScriptedChatModel(), config=CascadeConfig(mode="D"))


@pytest.mark.parametrize(
    ("mode", "paths", "strong_calls", "cheap_calls"),
    [
        ("A", ["strong", "strong"], 2, 0),
        ("B", ["accepted", "accepted"], 0, 2),
        ("E", ["accepted", "fallback"], 1, 6),
    ],
)
def test_other_modes_through_create_agent(mode, paths, strong_calls, cheap_calls):
    first = [call("get_weather", city="Paris")]
    answer = [say("Sunny.")]
    cheap_script = {"A": [], "B": first + answer, "E": first * 3 + answer * 3}[mode]
    strong_script = {"A": first + answer, "B": [], "E": answer}[mode]
    cheap = ScriptedChatModel(name="cheap", script=cheap_script)
    strong = ScriptedChatModel(name="strong", script=strong_script)
    verifier = ScriptedVerifier([0.2, 0.9, 0.1], [0.1, 0.2, 0.3]) if mode == "E" else None
    config = CascadeConfig(mode=mode)
    middleware = SpeculativeActionMiddleware(
        proposer=cheap if mode != "A" else None, verifier=verifier, config=config
    )
    out = create_agent(model=strong, tools=TOOLS, middleware=[middleware]).invoke(
        {"messages": QUESTION}
    )
    assert [t.path for t in out["spec_ledger"]] == paths
    assert (strong.calls, cheap.calls) == (strong_calls, cheap_calls)
    assert RAN == [("get_weather", {"city": "Paris"})] and out["messages"][-1].content == "Sunny."
    if mode == "E":
        assert [kw.get("do_sample") for kw in cheap.kwargs_seen[:3]] == [None, True, True]
