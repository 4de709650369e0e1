"""Live BFCL multi-turn trajectories: scripted models in a real graph and real BFCL environments."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage

from spec_tool_node import bfcl
from spec_tool_node.bfcl.tasks import MultiTurnTask, heldout_task_ids, load_task
from spec_tool_node.bfcl.trajectories import (
    TrajectoryResult,
    run_trajectories,
    trajectory_markdown,
    trajectory_report,
    turn_checks,
    write_trajectory_report,
)
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CallRecord, CostModel
from spec_tool_node.node import SpeculativeActionNode
from spec_tool_node.verifiers.base import Verdict, Verifier
from tests.scripted import ScriptedChatModel

BASE = "multi_turn_base_1"
MISS_FUNC = "multi_turn_miss_func_1"
DISTRIBUTION = {"min", "p25", "median", "p75", "max", "mean"}


class AcceptAll(Verifier):
    def score_batch(self, context, tools, drafts):
        record = CallRecord(role="verifier", model="accept-all", purpose="verify")
        return [Verdict(0.9, record if i == 0 else None) for i, _ in enumerate(drafts)]


def tool_call(call: str, step: str) -> AIMessage:
    name, args = bfcl.parse_call(call)
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": step, "type": "tool_call"}])


def replay(task: MultiTurnTask, edit: dict[str, str] | None = None) -> list[AIMessage]:
    """The ground truth as a model's script: each call in its own step, then an answer per turn."""
    script = []
    for t, calls in enumerate(task.ground_truth):
        for s, call in enumerate(calls):
            script.append(tool_call((edit or {}).get(call, call), f"call_{t}_{s}"))
        script.append(AIMessage(f"Done with turn {t}."))
    return script


def factory(mode: str, proposer: ScriptedChatModel, strong: ScriptedChatModel | None = None):
    def make(tools, task):
        return SpeculativeActionNode(
            proposer=proposer,
            strong=strong,
            verifier=AcceptAll() if mode == "D" else None,
            tools=tools,
            config=CascadeConfig(mode=mode),
        )

    return make


def test_tasks_are_heldout_and_load_as_bfcl_runs_them():
    assert bfcl.split_of(BASE) == "heldout" and bfcl.split_of(MISS_FUNC) == "heldout"
    with pytest.raises(ValueError, match="training side"):
        load_task("multi_turn_base_2")
    with pytest.raises(ValueError, match="not a BFCL multi-turn task"):
        load_task("simple_python_1")
    assert heldout_task_ids(5) == [
        "multi_turn_base_1", "multi_turn_miss_func_1", "multi_turn_miss_param_1",
        "multi_turn_long_context_1", "multi_turn_base_3",
    ]  # fmt: skip
    task = load_task(MISS_FUNC)
    assert "mv" not in {d["name"] for d in task.functions_at(1)}
    assert "mv" in {d["name"] for d in task.functions_at(2)}
    assert task.turns[2] == [{"role": "user", "content": bfcl.ADDED_FUNCTIONS_PROMPT}]


@pytest.mark.parametrize(("mode", "cost"), [("B", 0.15), ("D", 0.20)])
def test_replaying_the_ground_truth_succeeds_with_one_record_per_decision(mode, cost):
    task = load_task(BASE)
    proposer = ScriptedChatModel(name="cheap", script=replay(task))
    strong = ScriptedChatModel(name="strong") if mode == "D" else None  # never called
    (result,) = run_trajectories([BASE], factory(mode, proposer, strong))

    assert result.success, result.check
    assert result.check == {}
    assert result.state_per_turn == [True] * 4 and result.final_state_match
    assert result.turn_checks == [True] * 4
    assert result.calls == [
        [["ls(a=True)"]],
        [["cd(folder='workspace')"], ["mv(source='log.txt',destination='archive')"]],
        [["cd(folder='archive')"], ["grep(file_name='log.txt',pattern='Error')"]],
        [["tail(file_name='log.txt',lines=20)"]],
    ]
    decisions = sum(len(calls) + 1 for calls in task.ground_truth)  # the calls + one answer a turn
    assert proposer.calls == decisions == result.decisions == len(result.ledger) == 10
    assert {(t.mode, t.path, t.winner) for t in result.ledger} == {(mode, "accepted", "cheap")}
    assert all(t.cost == pytest.approx(cost) and t.baseline_cost == 1.0 for t in result.ledger)
    assert result.cost == pytest.approx(cost * 10) and result.baseline_cost == 10.0
    assert result.savings == pytest.approx(10 * (1 - cost))
    assert result.relative_cost == pytest.approx(cost) and result.accept_rate == 1.0
    # the tools really ran in BFCL's environment: the model saw its outputs
    tool_outputs = [m.content for m in proposer.seen[-1] if m.type == "tool"]
    assert "Error: Something went wrong" in tool_outputs[4] and "Final line." in tool_outputs[5]


def test_a_wrong_call_fails_bfcls_state_check():
    task = load_task(BASE)
    wrong = {
        "mv(source='log.txt',destination='archive')": "mv(source='log.txt',destination='old.txt')"
    }
    proposer = ScriptedChatModel(name="cheap", script=replay(task, wrong))
    (result,) = run_trajectories([task], factory("B", proposer))

    assert not result.success
    assert result.check["error_type"] == "multi_turn:instance_state_mismatch"
    assert result.state_per_turn == [True, False, False, False]
    assert result.turn_checks == [True, False, False, False]
    assert not result.final_state_match
    assert result.decisions == 10  # the run went on; only the check failed


def test_miss_func_adds_the_held_out_function_at_its_turn():
    task = load_task(MISS_FUNC)
    proposer = ScriptedChatModel(name="cheap", script=replay(task))
    (result,) = run_trajectories([MISS_FUNC], factory("B", proposer))

    assert result.success, result.check
    bound = [{t["function"]["name"] for t in kw["tools"]} for kw in proposer.kwargs_seen]
    # turn 0: ls + answer; turn 1 (mv missing): answer only; turn 2 starts with mv bound
    assert "mv" not in bound[0] | bound[1] | bound[2]
    assert "mv" in bound[3]
    prompts = [m.content for m in proposer.seen[3] if m.type == "human"]
    assert prompts[-1] == bfcl.ADDED_FUNCTIONS_PROMPT


def test_the_step_limit_force_quits_and_fails():
    # alternating calls: an immediate repeat of one call is rejected by the repeat guard instead
    looping = [tool_call(f"ls(a={i % 2 == 0})", f"loop_{i}") for i in range(5)]
    proposer = ScriptedChatModel(name="cheap", script=looping)
    (result,) = run_trajectories([BASE], factory("B", proposer), max_steps_per_turn=2)

    assert result.force_terminated and not result.success
    assert result.check["error_type"] == "multi_turn:force_terminated"
    assert (result.turns_run, result.decisions, proposer.calls) == (1, 2, 2)
    assert result.calls == [[["ls(a=True)"], ["ls(a=False)"]]]
    assert result.turn_checks == [True, False, False, False]  # turns that never ran fail


def test_an_unsafe_call_string_is_never_built_or_executed():
    from spec_tool_node.bfcl.environment import call_string

    assert call_string("cd", {"folder": "x"}) == "cd(folder='x')"
    assert call_string("cd", {"folder=open('/tmp/x','w'),y": 1}) is None
    assert call_string("__import__('os').system", {}) is None


def test_report_distribution_and_files(tmp_path):
    task = load_task(BASE)
    good = run_trajectories(
        [task], factory("B", ScriptedChatModel(name="cheap", script=replay(task)))
    )
    silent = ScriptedChatModel(name="cheap", script=[AIMessage("I won't.")] * 4)
    bad = run_trajectories([task], factory("B", silent))
    results = good + bad
    report = trajectory_report(results, max_steps_per_turn=10)
    assert set(report["savings"]) == DISTRIBUTION == set(report["relative_cost"])
    assert report["n"] == 2 and report["success_rate"] == 0.5
    assert report["savings"]["min"] == pytest.approx(0.85 * 4)
    assert report["savings"]["max"] == pytest.approx(0.85 * 10)
    assert report["savings"]["median"] == pytest.approx(0.85 * 7)
    assert report["savings"]["p25"] == pytest.approx(0.85 * 5.5)
    assert set(report["by_mode"]) == {"B"} and set(report["by_category"]) == {"multi_turn_base"}
    assert [r["success"] for r in report["rows"]] == [True, False]
    assert report["rows"][1]["error_type"] == "multi_turn:empty_turn_model_response"

    (tmp_path / "report.md").write_text("# report\n")
    paths = write_trajectory_report(tmp_path, results, append_to=tmp_path / "report.md")
    lines = paths["jsonl"].read_text().splitlines()
    assert [TrajectoryResult.model_validate_json(x).task_id for x in lines] == [BASE, BASE]
    assert json.loads(paths["json"].read_text())["success_rate"] == 0.5
    assert "| B | 2 | 50% |" in paths["markdown"].read_text()
    assert "## Multi-turn trajectories" in (tmp_path / "report.md").read_text()


def test_report_counts_tasks_not_rows_and_splits_categories_by_mode():
    task = load_task(BASE)
    [run] = run_trajectories(
        [task], factory("B", ScriptedChatModel(name="cheap", script=replay(task)))
    )
    other = run.model_copy(
        update={"task_id": "multi_turn_miss_func_1", "category": "multi_turn_miss_func"}
    )
    results = [
        run,
        other,
        run.model_copy(update={"mode": "A"}),
        other.model_copy(update={"mode": "A"}),
    ]
    report = trajectory_report(results)
    assert report["n"] == 4 and report["tasks"] == 2
    assert set(report["by_mode"]["A"]["by_category"]) == {"multi_turn_base", "multi_turn_miss_func"}
    assert report["by_mode"]["A"]["by_category"]["multi_turn_base"]["n"] == 1
    markdown = trajectory_markdown(report)
    assert "2 held-out BFCL multi-turn tasks" in markdown and "mode(s) A, B" in markdown
    assert "| A | multi_turn_miss_func | 1 | 100% |" in markdown
    assert "| B | multi_turn_base | 1 | 100% |" in markdown


def test_cli_runs_trajectories_only(tmp_path, monkeypatch, capsys):
    from spec_tool_node.cli import main
    from spec_tool_node.evaluation.runs import ModelPool

    task = load_task(BASE)
    proposer = ScriptedChatModel(name="cheap", script=replay(task))
    monkeypatch.setattr(ModelPool, "get", lambda self, role: proposer)
    code = main(["eval", "--data", "bfcl-trajectories", "--trajectories", "1", "--proposer", "x",
                 "--trajectory-modes", "B", "--trajectory-categories", "multi_turn_base",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "trajectories.json").read_text())
    assert report["n"] == 1 and report["success_rate"] == 1.0
    assert "--trajectories 1" in report["command"]


def test_cli_trajectories_need_the_models_of_their_mode(tmp_path, capsys):
    from spec_tool_node.cli import main

    code = main(["eval", "--data", "bfcl-trajectories", "--trajectories", "1",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "trajectory modes D need a proposer (--proposer NAME[@ADAPTER]) and a strong model" in (
        capsys.readouterr().err
    )


def test_parallel_calls_of_one_step_run_in_order():
    calls = [("cd", {"folder": "workspace"}), ("ls", {"a": True}), ("cd", {"folder": ".."}),
             ("pwd", {})]  # fmt: skip
    step = AIMessage(
        "", tool_calls=[{"name": n, "args": a, "id": f"c{i}", "type": "tool_call"}
                        for i, (n, a) in enumerate(calls)],
    )  # fmt: skip
    proposer = ScriptedChatModel(name="cheap", script=[step] + [AIMessage("ok")] * 4)
    (result,) = run_trajectories([BASE], factory("B", proposer))
    outputs = [m.content for m in proposer.seen[1] if m.type == "tool"]
    assert '".hidden_file"' in outputs[1] and outputs[3] == '{"current_working_directory": "/alex"}'
    assert result.calls[0] == [["cd(folder='workspace')", "ls(a=True)", "cd(folder='..')", "pwd()"]]


def test_a_cache_skips_finished_tasks_and_keeps_failed_runs_out(tmp_path):
    cache = tmp_path / "runs.jsonl"
    task = load_task(BASE)
    proposer = ScriptedChatModel(name="cheap", script=replay(task))
    (first,) = run_trajectories([task], factory("B", proposer), cache=cache)
    assert first.success and len(cache.read_text().splitlines()) == 1

    # a second run reads the result back instead of calling the (now empty) script again
    empty = ScriptedChatModel(name="cheap", script=[])
    (again,) = run_trajectories([task], factory("B", empty), cache=cache)
    assert again == first and empty.seen == []

    # under other prices the cached run is priced again, not run again
    dearer = CostModel(cheap=0.5)
    (repriced,) = run_trajectories([task], factory("B", empty), cache=cache, cost_model=dearer)
    assert empty.seen == [] and repriced.calls == first.calls
    assert first.cost > 0 and repriced.cost == pytest.approx(first.cost / 0.15 * 0.5)
    assert repriced.summary.by_role["cheap"]["cost"] == pytest.approx(repriced.cost)
    assert run_trajectories([task], factory("B", empty), cache=cache, cost_model=CostModel()) == [
        first
    ]

    # a run that ends in an exception (a failing strong model) is recorded but not cached
    strong = ScriptedChatModel(name="strong", script=[RuntimeError("strong model is down")])
    other = load_task(MISS_FUNC)
    (failed,) = run_trajectories(
        [other], factory("A", empty, strong), cache=cache, on_error="record"
    )
    assert "strong model is down" in failed.error
    assert len(cache.read_text().splitlines()) == 1


def test_per_turn_accuracy_checks_every_turn_and_fills_old_cached_results(tmp_path):
    task = load_task(BASE)
    # turn 1's mv goes wrong: BFCL's checker stops there, the per-turn checks go on
    wrong = {"mv(source='log.txt',destination='archive')": "ls(a=False)"}
    proposer = ScriptedChatModel(name="cheap", script=replay(task, wrong))
    (result,) = run_trajectories([task], factory("B", proposer))
    assert result.check["error_type"] == "multi_turn:instance_state_mismatch"
    assert result.turn_checks == turn_checks(task, result.calls)
    assert result.turn_checks[0] and not result.turn_checks[1]

    cache = tmp_path / "old.jsonl"  # a result cached before turn_checks existed
    cache.write_text(result.model_dump_json(exclude={"turn_checks"}) + "\n")
    (again,) = run_trajectories([task], factory("B", ScriptedChatModel(name="c")), cache=cache)
    assert again.turn_checks == result.turn_checks

    report = trajectory_report([result])
    passed = sum(result.turn_checks)
    assert report["turn_accuracy"] == passed / 4 and report["turns_checked"] == 4
    text = trajectory_markdown(report)
    assert f"| {passed / 4:.0%} ({passed}/4) |" in text and f"| {passed}/4 |" in text


def test_a_cache_drops_a_half_written_last_line_and_names_a_bad_one(tmp_path):
    from spec_tool_node.bfcl.trajectories import load_results

    task = load_task(BASE)
    cache = tmp_path / "runs.jsonl"
    run_trajectories([task], factory("B", ScriptedChatModel(name="c", script=replay(task))),
                     cache=cache)  # fmt: skip
    line = cache.read_text()
    cache.write_text(line + line[:40])
    assert list(load_results(cache)) == [BASE]
    cache.write_text("{oops\n" + line)
    with pytest.raises(ValueError, match=r"runs\.jsonl:1: not JSON"):
        load_results(cache)
