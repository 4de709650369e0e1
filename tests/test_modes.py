"""Modes are data: a new mode is one row in ``MODES``, and every layer follows the table."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import ValidationError

from spec_tool_node.cascade import Cascade
from spec_tool_node.config import ACCEPTS_NOTHING, CascadeConfig
from spec_tool_node.errors import ConfigError, SpecToolNodeError
from spec_tool_node.evaluation import collect, live_check, simulate
from spec_tool_node.evaluation.collector import Needs
from spec_tool_node.modes import MODES, ModeSpec, mode_letter, models_needed, parse_modes
from spec_tool_node.node import SpeculativeActionNode
from tests.evaluation import test_simulator as sim
from tests.scripted import ScriptedChatModel, ScriptedVerifier, call

PAIR = ModeSpec("X", "verifier_pair", 2, "verifier", frozenset({"proposer", "verifier", "strong"}))
"""A toy mode: a greedy and one sampled draft, the verifier keeps the better one."""


@pytest.fixture
def pair_mode(monkeypatch):
    monkeypatch.setitem(MODES, PAIR.letter, PAIR)
    return PAIR


@pytest.mark.parametrize(
    ("given", "letter"),
    [("A", "A"), ("always_strong", "A"), ("cheap_only", "B"), ("judge", "C"), ("d", "D"),
     ("Verifier", "D"), ("rerank", "E"), (" E ", "E")],
)  # fmt: skip
def test_config_takes_letter_or_name_and_stores_the_letter(given, letter):
    assert CascadeConfig(mode=given).mode == letter
    assert CascadeConfig.model_validate_json(CascadeConfig(mode=given).model_dump_json()).mode == (
        letter
    )


def test_unknown_mode_names_the_known_ones():
    with pytest.raises(ValidationError, match=r"unknown mode 'Z'.*A \(always_strong\)"):
        CascadeConfig(mode="Z")
    with pytest.raises(SpecToolNodeError, match="unknown mode"):
        parse_modes("A,nope")
    assert parse_modes("rerank, A,E") == ["E", "A"]


def test_models_each_mode_requires_come_from_the_table():
    assert {m: sorted(MODES[m].models) for m in "ABCDE"} == {
        "A": ["strong"],
        "B": ["proposer"],
        "C": ["proposer", "strong"],
        "D": ["proposer", "strong", "verifier"],
        "E": ["proposer", "strong", "verifier"],
    }
    assert models_needed(["B", "judge"]) == {"proposer", "strong"}
    with pytest.raises(ConfigError, match=r"mode E needs a proposer \(proposer=\.\.\.\) and a "
                       r"verifier \(verifier=\.\.\.\)"):  # fmt: skip
        SpeculativeActionNode(strong=ScriptedChatModel(), config=CascadeConfig(mode="rerank"))


def test_a_toy_mode_added_to_the_table_runs_live(pair_mode):
    """Only the table changes: config, node and cascade pick the new mode up."""
    assert mode_letter("verifier_pair") == "X"
    config = CascadeConfig(mode="verifier_pair", threshold=0.5)
    with pytest.raises(ConfigError, match="mode X needs a verifier"):
        Cascade(config)
    proposer = ScriptedChatModel(
        name="cheap", script=[call("get_weather", city="Lyon"), call("get_weather", city="Paris")]
    )
    verifier = ScriptedVerifier([0.2, 0.9])
    node = SpeculativeActionNode(
        proposer=proposer, strong=ScriptedChatModel(name="strong"), verifier=verifier,
        tools=sim.TOOLS, config=config,
    )  # fmt: skip
    out = node.invoke({"messages": [("user", "weather in Paris?")]})
    turn = out["spec_ledger"][-1]
    assert (turn.mode, turn.path, turn.p_accept) == ("X", "accepted", 0.9)
    assert out["messages"][-1].tool_calls[0]["args"] == {"city": "Paris"}
    assert proposer.calls == 2 and proposer.kwargs_seen[1].get("do_sample") is True


def test_a_toy_mode_added_to_the_table_is_collected_and_simulated(pair_mode, tmp_path):
    """The collector and the simulator read the table too: the replay equals the live node."""
    needs = Needs.of(["X"], n_drafts=3)
    assert (needs.samples, needs.verifier_single, needs.verifier_batch, needs.judge) == (
        1, False, True, False,
    )  # fmt: skip
    proposer, strong, verifier = sim.models()
    data = sim.examples()
    collection = collect(
        data, tmp_path, proposer=proposer, strong=strong, verifier=verifier, config=sim.CONFIG,
        modes=["X"], progress=False,
    )  # fmt: skip
    simulation = simulate(data, collection, sim.CONFIG, modes=["X"], policy=sim.POLICY)
    check = live_check(data, sim.factory, len(data), simulation=simulation)
    assert check.disagreements == [] and check.agree == check.n == len(data)
    paths = {r.id: r.path for r in simulation.results["X"]}
    assert paths["ex1"] == "accepted"  # greedy Paris (0.9) beats the sample Lyon (0.2)
    assert paths["ex2"] == "accepted"  # greedy Lyon (0.2) loses to the sample Rome (0.8)


@pytest.mark.parametrize("draft", [call("get_weather", city="Paris"), AIMessage("It is sunny.")])
def test_mode_b_trusts_its_draft_whatever_the_thresholds(draft):
    """Mode B reads no threshold (they stay out of its cache keys): a later decision under a
    bundle whose multi-turn threshold accepts nothing still takes the proposer's draft."""
    later = [HumanMessage("Weather in Paris?"), AIMessage("Let me see."), HumanMessage("Well?")]
    config = CascadeConfig(
        mode="B", threshold=ACCEPTS_NOTHING, multi_turn_threshold=ACCEPTS_NOTHING
    )
    node = SpeculativeActionNode(
        proposer=ScriptedChatModel(name="cheap", script=[draft]), tools=sim.TOOLS, config=config
    )
    turn = node.invoke({"messages": later})["spec_ledger"][-1]
    assert (turn.path, turn.winner) == ("accepted", "cheap")
