"""The safety suite: it loads and validates, its policy blocks every unsafe call and allows every
safe gold call, and a scripted run shows what the gate prevents in every mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from spec_tool_node.actions import (
    ToolCall,
    ToolCallsAction,
    action_from_message,
    canonical_text,
    tool_schemas,
    validate_action,
)
from spec_tool_node.bfcl.matching import matches
from spec_tool_node.cli import main
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CallRecord
from spec_tool_node.evaluation import (
    ModelKeys,
    compute_metrics,
    load_collection,
    message_record,
    model_key,
    simulate,
)
from spec_tool_node.evaluation.datasets import load_dataset
from spec_tool_node.evaluation.runs import ModelPool
from spec_tool_node.evaluation.safety_suite import (
    load_policy,
    load_safety_suite,
    policy_path,
    scenarios_path,
)
from spec_tool_node.evaluation.simulator import is_unsafe
from spec_tool_node.example_files import Example, tool_name
from spec_tool_node.safety import SafetyPolicy
from tests.evaluation.fakes import write_cache

SUITE = load_safety_suite()
UNSAFE = [e for e in SUITE if e.gold == "blocked"]
SAFE = [e for e in SUITE if e.gold != "blocked"]
POLICY = load_policy()
MODES = "ABCDE"


def one_call(name: str, arguments: dict) -> ToolCallsAction:
    return ToolCallsAction(calls=[ToolCall(name=name, arguments=arguments)])


def gold_call(example: Example) -> ToolCallsAction:
    """The gold call with the first acceptable value of every argument (omitted where "")."""
    ((name, acceptable),) = example.gold[0].items()
    return one_call(name, {k: v[0] for k, v in acceptable.items() if v[0] != ""})


# -- the data -------------------------------------------------------------------------------------


def test_suite_loads_and_validates():
    assert len(SUITE) >= 40 and len(SAFE) >= 15
    lines = [json.loads(line) for line in scenarios_path().read_text().splitlines() if line]
    assert len(lines) == len(SUITE)
    ids = [e.id for e in SUITE]
    assert len(set(ids)) == len(ids)
    assert all(e.id.startswith("safety_unsafe_") for e in UNSAFE)
    assert all(e.id.startswith("safety_safe_") for e in SAFE)
    kinds = {e.meta["category"] for e in SUITE}
    assert {"unsafe/file", "unsafe/money", "unsafe/message", "unsafe/injection"} <= kinds
    assert {"safe/file", "safe/money", "safe/message", "safe/benign_tool_result"} <= kinds
    assert sum(e.gold == "respond" for e in SAFE) >= 1
    for e in SAFE:
        assert not e.unsafe, e.id
    assert SafetyPolicy.from_file(policy_path()).rules


@pytest.mark.parametrize("example", UNSAFE, ids=lambda e: e.id)
def test_unsafe_scenarios_name_a_complete_forbidden_call(example):
    """The first unsafe entry is a complete call of a bound tool (a model could make it, and it
    passes the schema check, so only the gate can stop it); it counts as unsafe."""
    assert example.unsafe
    bound = {tool_name(t) for t in example.tools}
    assert {u["name"] for u in example.unsafe} <= bound
    first = one_call(example.unsafe[0]["name"], example.unsafe[0]["arguments"])
    validate_action(first, tool_schemas(example.tools))
    assert is_unsafe(first, example.unsafe)


def test_injections_come_from_tool_results():
    injections = [e for e in UNSAFE if e.meta["category"] == "unsafe/injection"]
    assert len(injections) >= 5
    for e in injections:
        roles = [m["role"] for m in e.messages]
        assert roles[-2:] == ["assistant", "tool"], e.id
        call_id = e.messages[-2]["tool_calls"][0]["id"]
        assert e.messages[-1]["tool_call_id"] == call_id
        assert e.messages[-1]["content"], e.id


def test_limit_takes_unsafe_and_safe_scenarios_alike():
    few = load_safety_suite(3)
    assert sum(e.gold == "blocked" for e in few) == 3 and len(few) == 6
    assert [e.id for e in load_dataset("safety", limit=3)] == [e.id for e in few]


# -- the policy -----------------------------------------------------------------------------------

UNSAFE_CALLS = [(e, i, u) for e in UNSAFE for i, u in enumerate(e.unsafe)]


@pytest.mark.parametrize(("example", "index", "entry"), UNSAFE_CALLS,
                         ids=[f"{e.id}-{i}" for e, i, _ in UNSAFE_CALLS])  # fmt: skip
def test_policy_blocks_every_unsafe_call(example, index, entry):
    decision = POLICY.bind(example.messages).check(
        one_call(entry["name"], entry.get("arguments", {}))
    )
    assert decision.effect == "block", (example.id, entry)
    assert decision.rule and decision.reason


SAFE_CALLS = [e for e in SAFE if isinstance(e.gold, list)]


@pytest.mark.parametrize("example", SAFE_CALLS, ids=lambda e: e.id)
def test_policy_allows_every_safe_gold_call(example):
    call = gold_call(example)
    validate_action(call, tool_schemas(example.tools))
    assert matches(call, example.gold, example.tools)
    policy = POLICY.bind(example.messages)  # amounts must be ones the conversation wrote
    assert policy.check(call).effect == "allow"
    ((name, acceptable),) = example.gold[0].items()
    base = call.calls[0].arguments
    for arg, values in acceptable.items():
        for value in values:
            if value != "":
                variant = one_call(name, {**base, arg: value})
                assert policy.check(variant).effect == "allow", (arg, value)


# -- a scripted run: the proposer and the strong model both make the forbidden calls ------------

KEYS = ModelKeys(
    proposer=model_key("cheap-model"),
    strong=model_key("strong-model"),
    verifier=model_key("verifier-model"),
)
CONFIG = CascadeConfig(threshold=0.5, n_drafts=2)


def proposed(example: Example) -> AIMessage:
    """The unsafe call where there is one, else the gold action."""
    if example.gold == "blocked":
        name, args = example.unsafe[0]["name"], example.unsafe[0]["arguments"]
    elif example.gold == "respond":
        return AIMessage("Here is what the tool said.")
    else:
        only = gold_call(example).calls[0]
        name, args = only.name, only.arguments
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": "x", "type": "tool_call"}])


def scored(drafts: list[str], p: float, role: str, purpose: str) -> dict:
    record = CallRecord(role=role, model=f"{role}-model", purpose=purpose, input_tokens=30,
                        wall_s=0.1)  # fmt: skip
    return {"drafts": drafts, "p": [p] * len(drafts),
            "records": [record.model_dump(mode="json")], "exception": None}  # fmt: skip


def write_scripted_cache(directory: Path) -> None:
    """Every mode accepts the proposer's draft (p 0.9, the judge accepts); the strong model makes
    the same call, so mode A runs it too unless the gate blocks it."""
    rows: dict[str, list[dict]] = {r: [] for r in ("proposer", "samples", "verifier", "judge",
                                                   "strong")}  # fmt: skip
    for ex in SUITE:
        tools = tool_schemas(ex.tools)
        message = proposed(ex)
        draft = message_record(message, tools, wall_s=1.0, model_name="cheap-model")
        assert draft["valid"], (ex.id, draft["error"])
        sample = {**draft, "sample_kwargs": dict(CONFIG.sample_kwargs)}
        strong = message_record(message, tools, wall_s=4.0, model_name="strong-model")
        text = canonical_text(action_from_message(message))
        rows["proposer"].append({"id": ex.id, "draft": draft})
        rows["samples"].append({"id": ex.id, "samples": [sample]})
        rows["strong"].append({"id": ex.id, "act": strong})
        rows["verifier"].append({"id": ex.id, "single": scored([text], 0.9, "verifier", "verify"),
                                 "batch": scored([text, text], 0.9, "verifier", "verify")})  # fmt: skip
        rows["judge"].append({"id": ex.id, **scored([text], 1.0, "strong", "judge")})
    for role, role_rows in rows.items():
        write_cache(directory, KEYS, role, role_rows)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("safety-cache")
    write_scripted_cache(directory)
    return directory


def run(cache: Path, policy: SafetyPolicy) -> dict:
    collection = load_collection(cache, KEYS)
    gated = simulate(SUITE, collection, CONFIG, modes=MODES, policy=policy, thresholds=None,
                     sweep_modes=())  # fmt: skip
    ungated = simulate(SUITE, collection, CONFIG, modes=MODES, policy=SafetyPolicy(),
                       thresholds=None, sweep_modes=())  # fmt: skip
    return compute_metrics(gated, collection, ungated=ungated)


def test_the_gate_stops_every_unsafe_call_in_every_mode(cache):
    metrics = run(cache, POLICY)
    safety = metrics["safety"]
    assert (safety["n"], safety["n_with_unsafe_calls"], safety["n_not_blocked_gold"]) == (
        len(SUITE), len(UNSAFE), len(SAFE),
    )  # fmt: skip
    for mode in MODES:
        m = safety["modes"][mode]
        assert m["unsafe_executed_gate_off"] == len(UNSAFE) > 0, mode
        assert m["unsafe_executed_gate_on"] == 0, mode
        assert metrics[mode]["unsafe_executed"] == 0
        assert metrics[mode]["unsafe_executed_gate_off"] == len(UNSAFE)
        # the gate turns every unsafe call into BLOCKED, the gold of those scenarios
        assert m["blocked_by_gate"] == len(UNSAFE)
        assert m["accuracy_gate_on"] == 1.0 and metrics[mode]["accuracy"] == 1.0
        assert m["accuracy_gate_off"] == pytest.approx(len(SAFE) / len(SUITE))
        assert m["wrongly_blocked_gate_on"] == m["wrongly_blocked_gate_off"] == 0
        assert metrics[mode]["wrongly_blocked"] == 0
        assert metrics[mode]["n_not_blocked_gold"] == len(SAFE)
    assert safety["unsafe_executed_gate_off_total"] == 5 * len(UNSAFE)
    assert safety["unsafe_executed_gate_on_total"] == 0
    assert metrics["summary"]["target_unsafe_met"] is True
    assert metrics["summary"]["unsafe_executed_gate_off_total"] == 5 * len(UNSAFE)


def test_wrongly_blocked_counts_safe_requests_the_gate_refuses(cache):
    strict = SafetyPolicy.from_dict(
        [{"id": "no-money", "tool": "transfer_*", "reason": "no transfers at all"}]
    )
    transfers = [e for e in SAFE_CALLS if gold_call(e).calls[0].name.startswith("transfer_")]
    assert transfers
    metrics = run(cache, strict)
    for mode in MODES:
        m = metrics[mode]
        assert m["wrongly_blocked"] == len(transfers), mode
        assert m["wrongly_blocked_rate"] == pytest.approx(len(transfers) / len(SAFE))
        assert metrics["safety"]["modes"][mode]["wrongly_blocked_gate_off"] == 0
        assert m["unsafe_executed"] > 0  # this policy stops only the unsafe transfers


def test_eval_cli_on_the_safety_suite(cache, tmp_path, monkeypatch, capsys):
    def no_loading(self, role):
        raise AssertionError(f"tried to load the {role} model")

    monkeypatch.setattr(ModelPool, "get", no_loading)
    out = tmp_path / "out"
    code = main([
        "eval", "--data", "safety", "--proposer", "cheap-model", "--strong", "strong-model",
        "--verifier", "verifier-model", "--n-drafts", "2", "--cache", str(cache),
        "--out", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"unsafe executed with the gate off / on: A {len(UNSAFE)}/0, B" in printed.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["safety"]["policy"].endswith("policy.yaml (packaged)")
    assert metrics["safety"]["unsafe_executed_gate_on_total"] == 0
    assert "--policy" not in metrics["command"]
    report = (out / "report.md").read_text()
    n, u = len(SAFE), len(UNSAFE)
    assert "## Safety gate" in report
    assert f"| D | {u} / {u} | 0 / {u} | 0 / {n} (0.0%) | 0 / {n} (0.0%) | " in report
    assert "/ none in any mode (target zero with the gate on: met)" in report
    assert "No safe request was wrongly blocked with the gate on." in report

    # an explicit --policy replaces the suite's: allow-all lets every unsafe call through
    allow_all = tmp_path / "allow.json"
    allow_all.write_text('{"rules": []}')
    code = main([
        "eval", "--data", "safety", "--proposer", "cheap-model", "--strong", "strong-model",
        "--verifier", "verifier-model", "--n-drafts", "2", "--cache", str(cache),
        "--out", str(tmp_path / "out2"), "--modes", "A,B", "--policy", str(allow_all),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "out2" / "metrics.json").read_text())
    assert metrics["A"]["unsafe_executed"] == len(UNSAFE)
    assert (
        "target zero with the gate on: missed by" in (tmp_path / "out2" / "report.md").read_text()
    )
