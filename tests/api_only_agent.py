"""One create_agent turn with the middleware and two API-style chat models, no local models.

Run as a module (``python -m tests.api_only_agent`` from the repository root) in an install
without the ``local`` extra: it must work, and it must not import torch. ``tests/test_public_api``
runs it in a subprocess so the check also holds in the development install, where torch is
present but must stay unimported.
"""

from __future__ import annotations

import sys

from langchain.agents import create_agent
from langchain_core.tools import tool

import spec_tool_node as stn
from tests.scripted import ScriptedChatModel, call, say


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}."


def main() -> None:
    cheap = ScriptedChatModel(
        name="cheap-api", script=[call("get_weather", city="Paris"), say("Sunny in Paris.")]
    )
    strong = ScriptedChatModel(name="strong-api", script=[say("ACCEPT"), say("ACCEPT")])
    agent = create_agent(
        model=strong,  # the agent's own model is the strong one and the judge (mode C)
        tools=[get_weather],
        middleware=[
            stn.SpeculativeActionMiddleware(proposer=cheap, config=stn.CascadeConfig(mode="judge")),
            stn.SafetyGateMiddleware(stn.SafetyPolicy()),
        ],
    )
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]})
    paths = [t.path for t in out["spec_ledger"]]
    assert paths == ["accepted", "accepted"], paths
    assert out["messages"][-1].content == "Sunny in Paris."
    assert "torch" not in sys.modules, "the API-only path imported torch"
    assert "transformers" not in sys.modules, "the API-only path imported transformers"
    print(f"ok: one turn, decisions {paths}, torch not imported")


if __name__ == "__main__":
    main()
