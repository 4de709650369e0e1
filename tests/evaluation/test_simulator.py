"""Simulation equals live decisions: scripted models in real nodes against the replayed cache."""

from __future__ import annotations

import pytest

from spec_tool_node.config import CascadeConfig
from spec_tool_node.evaluation import collect, live_check, simulate
from spec_tool_node.example_files import Example
from spec_tool_node.modes import MODES as MODES_TABLE
from spec_tool_node.node import SpeculativeActionNode
from spec_tool_node.safety import SafetyPolicy
from tests.evaluation.fakes import (
    TOOLS,
    LookupChatModel,
    LookupVerifier,
    broken,
    call,
    say,
    text_of,
)

POLICY = SafetyPolicy.from_dict(
    [
        {"id": "big-transfer", "tool": "transfer_money", "reason": "over the limit",
         "when": [{"arg": "amount", "op": "gt", "value": 1000}]},
        {"id": "destructive", "effect": "escalate", "tool": "delete_*", "reason": "destructive"},
    ]
)  # fmt: skip

W = {"get_weather": {"city": ["Paris"]}}
# question -> (proposer entry, strong entry, gold, unsafe)
CASES: dict[str, tuple[dict, dict, object, list]] = {
    "q1 weather in Paris?": (
        {"greedy": call("get_weather", city="Paris"),
         "samples": [call("get_weather", city="Lyon"), call("get_weather", city="Paris")]},
        {"act": call("get_weather", city="Paris"), "judge": "ACCEPT"},
        [W], [],
    ),
    "q2 weather in Rome?": (
        {"greedy": call("get_weather", city="Lyon"),
         "samples": [call("get_weather", city="Rome"), broken()]},
        {"act": call("get_weather", city="Rome"), "judge": "REJECT"},
        [{"get_weather": {"city": ["Rome"]}}], [],
    ),
    "q3 weather in Oslo?": (  # unparseable greedy; unbound and schema-breaking samples
        {"greedy": broken(),
         "samples": [call("send_email", to="x"), call("get_weather", town="Oslo")]},
        {"act": call("get_weather", city="Oslo"), "judge": "ACCEPT"},
        [{"get_weather": {"city": ["Oslo"]}}], [],
    ),
    "q4 wipe everything": (  # escalated draft; the strong model refuses
        {"greedy": call("delete_all_files", path="/"),
         "samples": [call("delete_all_files", path="/"), say("no")]},
        {"act": say("BLOCKED: that would destroy the system"), "judge": "ACCEPT"},
        "blocked", [{"name": "delete_all_files", "arguments": {"path": "/"}}],
    ),
    "q5 clean tmp": (  # escalated draft; the strong model runs it anyway
        {"greedy": call("delete_all_files", path="/tmp"),
         "samples": [call("get_weather", city="Paris"), call("delete_all_files", path="/tmp")]},
        {"act": call("delete_all_files", path="/tmp"), "judge": "ACCEPT"},
        "blocked", [{"name": "delete_all_files", "arguments": {"path": "/tmp"}}],
    ),
    "q6 send 5000 to bob": (  # blocked by the gate whoever proposes it
        {"greedy": call("transfer_money", to="bob", amount=5000),
         "samples": [call("transfer_money", to="bob", amount=500), say("sure")]},
        {"act": call("transfer_money", to="bob", amount=5000), "judge": "ACCEPT"},
        "blocked", [{"name": "transfer_money", "arguments": {"to": "bob", "amount": 5000}}],
    ),
    "q7 weather in Berlin?": (  # the proposer fails on its greedy draft
        {"greedy": RuntimeError("proposer down"),
         "samples": [call("get_weather", city="Berlin"), call("get_weather", city="Bern")]},
        {"act": call("get_weather", city="Berlin"), "judge": "ACCEPT"},
        [{"get_weather": {"city": ["Berlin"]}}], [],
    ),
    "q8 weather in Nice?": (  # the verifier fails on the greedy draft
        {"greedy": call("get_weather", city="Nice"),
         "samples": [call("get_weather", city="Nice"), call("get_weather", city="Nizza")]},
        {"act": call("get_weather", city="Nice"), "judge": "ACCEPT"},
        [{"get_weather": {"city": ["Nice"]}}], [],
    ),
    "q9 tell me a joke": (
        {"greedy": say("Why did the chicken cross the road?"),
         "samples": [call("get_weather", city="Paris"), say("A joke.")]},
        {"act": call("get_weather", city="Paris"), "judge": "REJECT"},
        "respond", [],
    ),
    "q10 weather in Bonn?": (  # the strong model fails
        {"greedy": call("get_weather", city="Bonn"),
         "samples": [call("get_weather", city="Bonn"), call("get_weather", city="Bonn")]},
        {"act": RuntimeError("quota exceeded"), "judge": "ACCEPT"},
        [{"get_weather": {"city": ["Bonn"]}}], [],
    ),
}  # fmt: skip

P = {
    text_of(call("get_weather", city="Paris")): 0.9,
    text_of(call("get_weather", city="Lyon")): 0.2,
    text_of(call("get_weather", city="Rome")): 0.8,
    text_of(call("get_weather", city="Bern")): 0.6,
    text_of(call("get_weather", city="Bonn")): 0.7,
    text_of(call("delete_all_files", path="/")): 0.95,
    text_of(call("delete_all_files", path="/tmp")): 0.9,
    text_of(call("transfer_money", to="bob", amount=5000)): 0.9,
    text_of(call("get_weather", city="Nice")): ValueError("verifier down"),
    text_of(say("Why did the chicken cross the road?")): 0.7,
}
CONFIG = CascadeConfig(threshold=0.5, n_drafts=3)
MODES = "ABCDE"


def examples() -> list[Example]:
    return [
        Example(id=f"ex{i}", tools=TOOLS, messages=[{"role": "user", "content": q}], gold=gold,
                unsafe=unsafe)
        for i, (q, (_, _, gold, unsafe)) in enumerate(CASES.items(), start=1)
    ]  # fmt: skip


def models() -> tuple[LookupChatModel, LookupChatModel, LookupVerifier]:
    proposer = LookupChatModel(name="cheap", table={q: c[0] for q, c in CASES.items()})
    strong = LookupChatModel(name="strong", table={q: c[1] for q, c in CASES.items()})
    return proposer, strong, LookupVerifier(P)


def factory(mode: str, example: Example) -> SpeculativeActionNode:
    fresh = dict(zip(("proposer", "strong", "verifier"), models(), strict=True))
    needed = MODES_TABLE[mode].models  # fresh instances: sampled drafts start over
    return SpeculativeActionNode(
        **{role: model for role, model in fresh.items() if role in needed},
        tools=example.tools,
        config=CONFIG.model_copy(update={"mode": mode}),
        safety=POLICY,
    )


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    proposer, strong, verifier = models()
    data = examples()
    collection = collect(
        data, tmp_path_factory.mktemp("cache"), proposer=proposer, strong=strong,
        verifier=verifier, config=CONFIG, modes=MODES, progress=False,
    )  # fmt: skip
    return simulate(data, collection, CONFIG, modes=MODES, policy=POLICY, thresholds=[0.0, 1.0])


def test_simulation_equals_live_decisions_in_every_mode(simulation):
    check = live_check(examples(), factory, len(CASES), simulation=simulation)
    assert check.disagreements == []
    assert check.n == len(CASES) * len(MODES) and check.agree == check.n
    assert {m: c["agree"] for m, c in check.by_mode.items()} == dict.fromkeys(MODES, len(CASES))


def test_with_accept_calls_off_the_replay_equals_live_decisions(tmp_path):
    """The scorer is asked about the answers only (mode E: a subset of the drafts scored
    together when the cache was collected), and the replay answers from the same record."""
    config = CONFIG.model_copy(update={"accept_calls": False})
    proposer, strong, verifier = models()
    data = examples()
    collection = collect(
        data, tmp_path, proposer=proposer, strong=strong, verifier=verifier, config=CONFIG,
        modes=MODES, progress=False,
    )  # fmt: skip
    replay = simulate(data, collection, config, modes="CDE", policy=POLICY, thresholds=None)

    def build(mode: str, example: Example) -> SpeculativeActionNode:
        fresh = dict(zip(("proposer", "strong", "verifier"), models(), strict=True))
        return SpeculativeActionNode(
            **fresh, tools=example.tools, config=config.model_copy(update={"mode": mode}),
            safety=POLICY,
        )  # fmt: skip

    check = live_check(data, build, len(CASES), simulation=replay, modes="CDE")
    assert check.disagreements == [] and check.agree == len(CASES) * 3
    d, e = _by(replay, "D"), _by(replay, "E")
    assert all(r.path != "accepted" for r in d.values() if r.id != "ex9")
    assert (d["ex9"].path, d["ex9"].p_accept) == ("accepted", 0.7)  # the answer: scored
    # mode E: of the greedy destructive call and the sampled answer "no", only "no" is scored
    assert (e["ex4"].path, e["ex4"].p_accept, e["ex4"].action) == (
        "accepted", 0.5, '{"respond": "no"}',
    )  # fmt: skip


def test_live_check_samples_by_id(simulation):
    check = live_check(examples(), factory, ["ex2", "ex4"], simulation=simulation, modes=["E"])
    assert (check.n, check.agree) == (2, 2)


def _by(simulation, mode):
    return {r.id: r for r in simulation.results[mode]}


def test_the_simulated_decisions_are_the_expected_ones(simulation):
    a, b, c, d, e = (_by(simulation, m) for m in MODES)
    assert (d["ex1"].path, d["ex1"].correct, d["ex1"].calls) == (
        "accepted", True, ["cheap:draft", "verifier:verify"],
    )  # fmt: skip
    assert (d["ex2"].path, d["ex2"].reject_reason, d["ex2"].correct) == (
        "fallback",
        "rejected",
        True,
    )
    assert (e["ex2"].path, e["ex2"].p_accept, e["ex2"].correct) == ("accepted", 0.8, True)
    assert c["ex2"].path == "fallback" and c["ex1"].calls == ["cheap:draft", "strong:judge"]
    # invalid drafts
    assert b["ex3"].path == "invalid" and d["ex3"].reject_reason.startswith("invalid: unparseable")
    assert e["ex3"].path == "fallback" and e["ex3"].correct
    # escalation: a draft is never auto-accepted; without a strong model it is blocked
    assert d["ex4"].reject_reason == "escalate: destructive" and d["ex4"].winner == "strong"
    assert d["ex4"].path == "blocked"  # the strong model refused
    assert d["ex4"].correct and not d["ex4"].unsafe_executed
    assert b["ex4"].path == "blocked" and b["ex4"].correct
    assert d["ex5"].unsafe_executed and a["ex5"].unsafe_executed and not b["ex5"].unsafe_executed
    # blocking: whoever proposes it
    assert {m: _by(simulation, m)["ex6"].path for m in MODES} == dict.fromkeys(MODES, "blocked")
    assert not any(_by(simulation, m)["ex6"].unsafe_executed for m in MODES)
    # failures
    assert d["ex7"].reject_reason == "error: RuntimeError: proposer down"
    assert e["ex7"].path == "accepted" and e["ex7"].p_accept == 0.6  # a sampled draft wins
    assert (
        d["ex8"].reject_reason == "error: ValueError: verifier down" and d["ex8"].path == "fallback"
    )
    assert a["ex10"].path == "error" and a["ex10"].error and d["ex10"].path == "accepted"
    assert b["ex9"].correct and not a["ex9"].correct


def test_the_sweep_replays_every_threshold(simulation):
    d = simulation.sweep["D"]
    assert sorted(d) == [0.0, 0.5, 1.0]
    assert all(r.path != "accepted" for r in d[1.0])
    assert {r.id for r in d[0.0] if r.path == "accepted"} >= {"ex1", "ex2", "ex9"}


def test_live_check_reports_a_disagreement(simulation):
    import copy

    changed = copy.deepcopy(simulation)
    changed.results["D"][0].path = "fallback"
    check = live_check(examples(), factory, 1, simulation=changed, modes=["D"])
    assert (check.n, check.agree) == (1, 0)
    (row,) = check.disagreements
    assert (row["id"], row["live_path"], row["simulated_path"]) == ("ex1", "accepted", "fallback")
