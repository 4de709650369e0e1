"""Live multi-turn trajectories: BFCL multi-turn tasks run as LangGraph agents with the node.

    results = run_trajectories(["multi_turn_base_1", "multi_turn_miss_func_3"], factory)
    report = trajectory_report(results)
    write_trajectory_report("runs/eval", results)

Each held-out BFCL multi-turn task (``multi_turn_base``, ``multi_turn_miss_func``,
``multi_turn_miss_param``, ``multi_turn_long_context``; odd task numbers, see
:func:`spec_tool_node.bfcl.data.split_of`) runs as a real ReAct agent::

    StateGraph(SpecAgentState): START -> agent (SpeculativeActionNode) -tools_condition-> tools
                                ToolNode -> agent

The node comes from ``node_factory(tools, task)``. Its tools are the task's function docs as
LangChain ``StructuredTool`` objects (JSON schema from
:func:`spec_tool_node.bfcl.data.convert_function`)
that run in a fresh instance of BFCL's executable environment for the task (its
``involved_classes`` loaded with its ``initial_config``, through BFCL's own
``execute_multi_turn_func_call``), so a tool message carries exactly what BFCL's inference loop
would feed back, errors included (``"Error during execution: ..."``).

The user turns are fed one after another, as BFCL's inference loop does: append the turn's user
message(s), run the graph until the agent answers without a tool call. A ``miss_func`` task starts
without its held-out functions and gets them at their turn (the node and ``ToolNode`` are rebuilt
with the longer tool list, and the turn's user message is BFCL's
:data:`~spec_tool_node.bfcl.data.ADDED_FUNCTIONS_PROMPT`); ``miss_param`` turns run as they
are. A turn allows at most ``max_steps_per_turn`` model decisions; when the agent still calls
tools at the last one, those calls run and the trajectory is force-quit there, as BFCL's loop
does (BFCL then fails the task unless it was the last turn). BFCL's own limit is 20 executed
steps before it quits after the 21st, i.e. ``max_steps_per_turn=21``; the default here is 10 to
bound CPU time.

Success is BFCL's verdict: :func:`multi_turn_checker` from ``bfcl_eval`` (imported, not copied)
runs on the calls that were executed, step by step and turn by turn: after every turn that has
ground-truth calls, the model must have made a call in that turn, the state of every environment
instance (its public attributes) must equal the state after the ground-truth calls, and the
ground truth's execution results must be among the model's. Alongside, ``state_per_turn`` and
``final_state_match`` compare the live instances of the run itself with the ground truth's after
each turn (BFCL's ``state_checker``); the environments are deterministic, so the two agree on state.

Whole-task success is strict (one failed turn fails the task), so the report adds per-turn
accuracy: :func:`turn_checks` applies the checker's per-turn steps (a call in the turn, the state,
the ground truth's results among the model's so far) to every turn with ground-truth calls, without
stopping at the first failure, and the share of turns that pass is reported per mode.

Calls that name a function that is not bound at that turn, or that use an argument name that is
not a Python identifier, are never executed (``ToolNode`` answers an unknown name with its own
error message; a bad argument name gets BFCL's error form) and are left out of the checked calls:
BFCL would ``eval`` such a string, and a crafted name could run arbitrary code; leaving them out
changes no environment state.

Every trajectory keeps the graph state's ``spec_ledger`` (one :class:`TurnRecord` per decision)
and reports its cost, the always-strong baseline, savings, relative cost, number of decisions and
accept rate (:func:`spec_tool_node.costs.summarize`). :func:`trajectory_report` gives the
distribution of per-trajectory savings and relative cost (min, p25, median, p75, max, mean), the
success rate and one row per trajectory.

Command line: ``spec-tool-node eval ... --trajectories N`` (after the single-turn evaluation) or
``spec-tool-node eval --data bfcl-trajectories --trajectories N ...`` (trajectories only).
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from spec_tool_node.bfcl.data import MULTI_TURN_CATEGORIES, convert_function
from spec_tool_node.bfcl.environment import BFCLEnvironment, call_string, cleanup_namespace
from spec_tool_node.bfcl.tasks import MultiTurnTask, load_task
from spec_tool_node.costs import CostModel, TrajectorySummary, TurnRecord, percentile, summarize
from spec_tool_node.jsonl import open_for_append, read_records

if TYPE_CHECKING:  # the graph stack is imported when a trajectory runs, not by the CLI parser
    from langchain_core.messages import BaseMessage
    from langchain_core.tools import BaseTool


DEFAULT_MAX_STEPS_PER_TURN = 10
BFCL_MAX_STEPS_PER_TURN = 21
"""BFCL's inference loop quits a turn after its 21st executed step (``MAXIMUM_STEP_LIMIT = 20``)."""

NodeFactory = Callable[[list["BaseTool"], "MultiTurnTask"], Any]
"""``node_factory(tools, task)`` -> the agent node (a :class:`SpeculativeActionNode`)."""

_QUANTILES = (("min", 0), ("p25", 25), ("median", 50), ("p75", 75), ("max", 100))


# --------------------------------------------------------------------------------------------
# tools over BFCL's executable environment


def _checker() -> Any:
    return importlib.import_module("bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker")


def make_tools(functions: Sequence[dict[str, Any]], env: BFCLEnvironment) -> list[BaseTool]:
    """One ``StructuredTool`` per BFCL function doc, executed in ``env``.

    The argument schema is the converted JSON schema as it is (no pydantic model in between), so
    the arguments reach the environment exactly as the model wrote them, and a wrong one fails
    there, with BFCL's error text, as it would in BFCL's own loop.
    """
    from langchain_core.tools import StructuredTool

    tools: list[BaseTool] = []
    for doc in functions:
        spec = convert_function(doc)["function"]
        tools.append(
            StructuredTool(
                name=spec["name"],
                description=spec["description"] or spec["name"],
                args_schema=spec["parameters"],
                func=_runner(env, spec["name"]),
            )
        )
    return tools


def _runner(env: BFCLEnvironment, name: str) -> Callable[..., str]:
    def run(**arguments: Any) -> str:
        return env.call(name, arguments)

    run.__name__ = name
    return run


# --------------------------------------------------------------------------------------------
# results


class TrajectoryResult(BaseModel):
    """One task run live: BFCL's verdict, the calls that ran, and the trajectory's ledger."""

    task_id: str
    category: str
    mode: str
    success: bool = Field(
        description="BFCL's multi-turn checker on the executed calls: per-turn state, execution "
        "results and no empty turn where the ground truth has calls; a force-quit before the last "
        "turn fails."
    )
    check: dict[str, Any] = Field(
        default_factory=dict, description="BFCL's error_type and error_message when it failed."
    )
    state_per_turn: list[bool] = Field(
        default_factory=list,
        description="Live instances equal the ground truth's after each turn (state only).",
    )
    turn_checks: list[bool] | None = Field(
        default=None,
        description="BFCL's checks after each turn that has ground-truth calls (a call in the "
        "turn, state, results), every turn checked; a turn that did not run fails. None in "
        "results cached before it existed (filled in when they are read).",
    )
    final_state_match: bool = False
    force_terminated: bool = False
    turns: int = Field(description="User turns of the task.")
    turns_run: int
    calls: list[list[list[str]]] = Field(
        default_factory=list, description="Executed calls per turn, per model step."
    )
    ledger: list[TurnRecord] = Field(default_factory=list)
    summary: TrajectorySummary
    error: str | None = None
    wall_s: float = 0.0

    @property
    def cost(self) -> float:
        return self.summary.cost

    @property
    def baseline_cost(self) -> float:
        return self.summary.baseline_cost

    @property
    def savings(self) -> float:
        return self.summary.savings

    @property
    def relative_cost(self) -> float:
        return self.summary.relative_cost

    @property
    def decisions(self) -> int:
        return self.summary.turns

    @property
    def accept_rate(self) -> float:
        return self.summary.accept_rate

    def row(self) -> dict[str, Any]:
        """The flat per-trajectory row of the report."""
        return {
            "task_id": self.task_id,
            "category": self.category,
            "mode": self.mode,
            "success": self.success,
            "final_state_match": self.final_state_match,
            "turn_checks": self.turn_checks,
            "force_terminated": self.force_terminated,
            "turns": self.turns,
            "turns_run": self.turns_run,
            "decisions": self.decisions,
            "cost": self.cost,
            "baseline_cost": self.baseline_cost,
            "savings": self.savings,
            "relative_cost": self.relative_cost,
            "accept_rate": self.accept_rate,
            "error_type": self.check.get("error_type"),
            "error": self.error,
            "wall_s": self.wall_s,
        }


# --------------------------------------------------------------------------------------------
# running


def build_graph(node: Any, tools: Sequence[BaseTool]) -> Any:
    """The ReAct loop: ``agent`` (the node) -> ``tools_condition`` -> ``ToolNode`` -> ``agent``."""
    from langgraph.graph import START, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from spec_tool_node.node import SpecAgentState

    builder = StateGraph(SpecAgentState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode(list(tools), handle_tool_errors=True))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


def run_trajectory(
    task: MultiTurnTask | str,
    node_factory: NodeFactory,
    *,
    max_steps_per_turn: int = DEFAULT_MAX_STEPS_PER_TURN,
    on_error: str = "raise",
) -> TrajectoryResult:
    """Run one task live and check it (see the module docstring).

    Args:
        task: a :class:`MultiTurnTask` or a held-out task id.
        node_factory: ``node_factory(tools, task)`` -> the agent node; called again at a turn
            that adds functions (``miss_func``).
        max_steps_per_turn: model decisions allowed per user turn.
        on_error: ``"raise"`` lets an exception of the run propagate (a failing strong model);
            ``"record"`` ends the trajectory there and records it as failed with the error.
    """
    if max_steps_per_turn < 1:
        raise ValueError("max_steps_per_turn must be at least 1")
    if on_error not in ("raise", "record"):
        raise ValueError(f"on_error must be 'raise' or 'record', not {on_error!r}")
    from langchain_core.messages import convert_to_messages
    from langgraph.errors import GraphBubbleUp, GraphRecursionError

    if isinstance(task, str):
        task = load_task(task)
    start = time.perf_counter()
    env = BFCLEnvironment(task, "model")
    truth = BFCLEnvironment(task, "truth")
    state: dict[str, Any] = {"messages": [], "spec_ledger": []}
    calls: list[list[list[str]]] = []
    state_per_turn: list[bool] = []
    mode = "?"
    error: str | None = None
    forced = False
    graph, bound = None, None
    config = {"recursion_limit": 2 * max_steps_per_turn, "max_concurrency": 1}
    try:
        for t, user_messages in enumerate(task.turns):
            functions = task.functions_at(t)
            names = [d["name"] for d in functions]
            if names != bound:
                tools = make_tools(functions, env)
                node = node_factory(tools, task)
                mode = str(getattr(getattr(node, "config", None), "mode", mode))
                graph, bound = build_graph(node, tools), names
            before = len(state["messages"])
            inputs = {
                "messages": [*state["messages"], *convert_to_messages(user_messages)],
                "spec_ledger": list(state["spec_ledger"]),
            }
            try:
                for values in graph.stream(inputs, config, stream_mode="values"):
                    state = values
            except GraphRecursionError:
                forced = True
            except GraphBubbleUp:
                raise
            except Exception as e:
                if on_error == "raise":
                    raise
                error = f"turn {t}: {type(e).__name__}: {e}"
            calls.append(_executed_calls(state["messages"][before:], set(names)))
            truth.execute(task.ground_truth[t])
            state_per_turn.append(_same_state(env.instances, truth.instances))
            if forced or error:
                break
        turns_run = len(calls)
        check = _bfcl_check(task, calls, forced and turns_run < len(task.turns), error)
        checks = turn_checks(task, calls)
        ledger = list(state.get("spec_ledger") or [])
        return TrajectoryResult(
            task_id=task.id,
            category=task.category,
            mode=mode,
            success=check.get("valid", False),
            check={k: v for k, v in check.items() if k in ("error_type", "error_message")},
            state_per_turn=state_per_turn,
            turn_checks=checks,
            final_state_match=bool(state_per_turn)
            and turns_run == len(task.turns)
            and state_per_turn[-1],
            force_terminated=forced,
            turns=len(task.turns),
            turns_run=turns_run,
            calls=calls,
            ledger=ledger,
            summary=summarize(ledger),
            error=error,
            wall_s=time.perf_counter() - start,
        )
    finally:
        env.close()
        truth.close()


def load_results(path: str | Path) -> dict[str, TrajectoryResult]:
    """Finished results of a trajectory cache by task id (missing file: none; a half-written
    last line of a killed run is dropped; the last line of a task wins)."""
    results: dict[str, TrajectoryResult] = {}
    for number, record in enumerate(read_records(path, strict=True), start=1):
        try:
            result = TrajectoryResult.model_validate(record)
        except ValueError as e:
            raise ValueError(f"{path}: record {number} is not a trajectory result: {e}") from e
        results[result.task_id] = result
    return results


def repriced(result: TrajectoryResult, cost_model: CostModel) -> TrajectoryResult:
    """``result`` with its ledger and summary priced under ``cost_model``."""
    ledger = [cost_model.repriced(turn) for turn in result.ledger]
    return result.model_copy(update={"ledger": ledger, "summary": summarize(ledger)})


def run_trajectories(
    task_ids: Iterable[str | MultiTurnTask],
    node_factory: NodeFactory,
    *,
    max_steps_per_turn: int = DEFAULT_MAX_STEPS_PER_TURN,
    on_error: str = "raise",
    progress: bool = False,
    cache: str | Path | None = None,
    cost_model: CostModel | None = None,
) -> list[TrajectoryResult]:
    """Run held-out multi-turn tasks live, one :class:`TrajectoryResult` each, in order.

    See :func:`run_trajectory` for the arguments; ``progress`` prints one line per trajectory.
    ``cache`` is a JSONL file of finished results: tasks found there are not run again and each
    new result is appended as soon as it is done, so a long run continues where it stopped. A
    result that ended in an exception is not cached (a rerun tries it again). ``cost_model``
    (the nodes' own) re-prices the cached results, which may have been priced under another:
    prices change what a trajectory cost, not what its models did.
    """
    tasks = [t if isinstance(t, MultiTurnTask) else load_task(t) for t in task_ids]
    done = load_results(cache) if cache is not None else {}
    results: list[TrajectoryResult] = []
    for i, task in enumerate(tasks, start=1):
        if task.id in done:
            result = done[task.id]
            if result.turn_checks is None:
                result.turn_checks = turn_checks(task, result.calls)
            if cost_model is not None:
                result = repriced(result, cost_model)
            results.append(result)
            continue
        result = run_trajectory(
            task, node_factory, max_steps_per_turn=max_steps_per_turn, on_error=on_error
        )
        results.append(result)
        if cache is not None and result.error is None:
            with open_for_append(cache) as f:
                f.write(result.model_dump_json() + "\n")
        if progress:
            verdict = "success" if result.success else result.check.get("error_type", "failed")
            print(
                f"[{i}/{len(tasks)}] {task.id} mode {result.mode}: {verdict}; "
                f"{result.decisions} decisions, relative cost {result.relative_cost:.3f}, "
                f"savings {result.savings:.3f} ({result.wall_s:.0f}s)",
                flush=True,
            )
    return results


def _executed_calls(messages: Sequence[BaseMessage], bound: set[str]) -> list[list[str]]:
    """The calls of a turn's AI messages that reached the environment, one list per step."""
    from langchain_core.messages import AIMessage

    steps: list[list[str]] = []
    for message in messages:
        if not isinstance(message, AIMessage) or not message.tool_calls:
            continue
        step = []
        for tc in message.tool_calls:
            text = call_string(tc["name"], tc.get("args") or {})
            if tc["name"] in bound and text is not None:
                step.append(text)
        if step:
            steps.append(step)
    return steps


def turn_checks(task: MultiTurnTask, calls: Sequence[Sequence[Sequence[str]]]) -> list[bool]:
    """BFCL's per-turn verdicts on the executed ``calls`` (per turn, per step), one per turn
    with ground-truth calls: the turn made a call, every instance's state equals the ground
    truth's, and the ground truth's results are among the model's results so far. The steps are
    ``multi_turn_checker``'s, in its order, but every turn is checked; turns missing from
    ``calls`` (the run stopped) fail."""
    checker = _checker()
    verdicts: list[bool] = []
    results: list[str] = []
    with BFCLEnvironment(task, "check") as model, BFCLEnvironment(task, "check_truth") as truth:
        for t, expected in enumerate(task.ground_truth):
            steps = calls[t] if t < len(calls) else None
            for step in steps or []:
                results.extend(model.execute(step))
            expected_results = truth.execute(expected)
            if not expected:  # nothing to check here (BFCL skips such turns too)
                continue
            verdicts.append(
                bool(steps)
                and checker.state_checker(model.instances, truth.instances)["valid"]
                and checker.response_checker(results, expected_results, t)["valid"]
            )
    return verdicts


def _same_state(model: dict[str, Any], truth: dict[str, Any]) -> bool:
    return bool(_checker().state_checker(model, truth)["valid"])


def _bfcl_check(
    task: MultiTurnTask, calls: list[list[list[str]]], force_terminated: bool, error: str | None
) -> dict[str, Any]:
    """BFCL's verdict on the executed calls (``_evaluate_single_multi_turn_entry``'s order)."""
    if error is not None:
        return {"valid": False, "error_type": "multi_turn:inference_error", "error_message": error}
    if force_terminated or len(calls) != len(task.ground_truth):
        return {
            "valid": False,
            "error_type": "multi_turn:force_terminated",
            "error_message": f"Model was force-terminated during inference: {len(calls)} of "
            f"{len(task.ground_truth)} turns ran.",
        }
    name = f"spec_tool_node_{uuid.uuid4().hex}_check"
    try:
        return _checker().multi_turn_checker(
            calls, task.ground_truth, task.entry(), task.category, name
        )
    finally:
        cleanup_namespace(name)


# --------------------------------------------------------------------------------------------
# report


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """min, p25, median, p75, max (linear interpolation, as numpy's default) and mean."""
    if not values:
        return {key: None for key, _ in _QUANTILES} | {"mean": None}
    out: dict[str, float | None] = {key: percentile(values, q) for key, q in _QUANTILES}
    out["mean"] = sum(sorted(values)) / len(values)  # summed in order, as the reports were
    return out


def _group(results: Sequence[TrajectoryResult]) -> dict[str, Any]:
    n = len(results)
    cost = sum(r.cost for r in results)
    baseline = sum(r.baseline_cost for r in results)
    decisions = sum(r.decisions for r in results)
    accepted = sum(t.path == "accepted" for r in results for t in r.ledger)
    checked = [v for r in results for v in r.turn_checks or []]
    return {
        "n": n,
        "success_rate": sum(r.success for r in results) / n if n else None,
        "turn_accuracy": sum(checked) / len(checked) if checked else None,
        "turns_checked": len(checked),
        "final_state_match_rate": sum(r.final_state_match for r in results) / n if n else None,
        "force_terminated": sum(r.force_terminated for r in results),
        "errors": sum(r.error is not None for r in results),
        "savings": distribution([r.savings for r in results]),
        "relative_cost": distribution([r.relative_cost for r in results]),
        "cost": cost,
        "baseline_cost": baseline,
        "total_savings": baseline - cost,
        "total_relative_cost": cost / baseline if baseline else None,
        "decisions": decisions,
        "decisions_per_trajectory": decisions / n if n else None,
        "accept_rate": accepted / decisions if decisions else None,
    }


def trajectory_report(
    results: Sequence[TrajectoryResult], *, max_steps_per_turn: int | None = None
) -> dict[str, Any]:
    """Totals and distributions over all trajectories, per mode and per category, and the rows.

    Top-level keys (all trajectories together): ``n``, ``success_rate``,
    ``final_state_match_rate``, ``savings`` and ``relative_cost`` as distributions (``min``,
    ``p25``, ``median``, ``p75``, ``max``, ``mean`` over trajectories), ``cost``,
    ``baseline_cost``, ``total_savings``, ``total_relative_cost``, ``decisions``,
    ``accept_rate``; then ``tasks`` (distinct task ids), ``by_mode`` (each with its own
    ``by_category``), ``by_category`` (the same keys per group, all modes together) and ``rows``.
    """

    def by_category(group: Sequence[TrajectoryResult]) -> dict[str, Any]:
        present = [c for c in MULTI_TURN_CATEGORIES if any(r.category == c for r in group)]
        return {c: _group([r for r in group if r.category == c]) for c in present}

    report = _group(results)
    report["tasks"] = len({r.task_id for r in results})
    report["by_mode"] = {}
    for mode in sorted({r.mode for r in results}):
        group = [r for r in results if r.mode == mode]
        report["by_mode"][mode] = {**_group(group), "by_category": by_category(group)}
    report["by_category"] = by_category(results)
    report["max_steps_per_turn"] = max_steps_per_turn
    report["rows"] = [r.row() for r in results]
    return report


def _num(value: Any, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def _turns(group: dict[str, Any]) -> str:
    """Per-turn accuracy as a share and a count."""
    if not group.get("turns_checked"):
        return "-"
    passed = round(group["turn_accuracy"] * group["turns_checked"])
    return f"{group['turn_accuracy']:.0%} ({passed}/{group['turns_checked']})"


def _passed(checks: list[bool] | None) -> str:
    return "-" if checks is None else f"{sum(checks)}/{len(checks)}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One line per mode of a :func:`trajectory_report`: success, savings, relative cost."""
    lines = []
    for mode, g in report["by_mode"].items():
        s = g["savings"]
        lines.append(
            f"mode {mode}: success {_pct(g['success_rate'])} of {g['n']}; per-turn accuracy "
            f"{_turns(g)}; savings per "
            f"trajectory min {_num(s['min'])} median {_num(s['median'])} max {_num(s['max'])}; "
            f"relative cost {_num(g['total_relative_cost'])}"
        )
    return lines


def trajectory_markdown(report: dict[str, Any], *, heading: str = "##") -> str:
    """The trajectory section of ``report.md`` (also written alone as ``trajectories.md``)."""
    lines = [f"{heading} Multi-turn trajectories (BFCL, live LangGraph agents)", ""]
    steps = report.get("max_steps_per_turn")
    categories = ", ".join(report["by_category"]) or "none"
    modes = ", ".join(report["by_mode"]) or "none"
    lines += [
        f"{report['tasks']} held-out BFCL multi-turn tasks ({categories}) ran live in mode(s) "
        f"{modes}: the node as the agent of a ReAct graph whose `ToolNode` executes in BFCL's "
        "own environments"
        + (f", at most {steps} model decisions per user turn" if steps else "")
        + ". Success is BFCL's multi-turn checker on the executed calls (after every turn with "
        "ground-truth calls: same environment state as the ground truth, the ground truth's "
        "results among the model's, no empty turn). Per-turn accuracy applies the same checks to "
        "every such turn without stopping at the first failure: turns passed of turns checked. "
        "Savings are per trajectory, against calling the strong model for every decision of the "
        "same trajectory.",
        "",
        "| mode | n | success | per-turn accuracy | final state | savings min | p25 | median "
        "| p75 | max | mean | relative cost (median) | relative cost (total) | accept rate "
        "| decisions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, g in report["by_mode"].items():
        s = g["savings"]
        lines.append(
            f"| {mode} | {g['n']} | {_pct(g['success_rate'])} | {_turns(g)} | "
            f"{_pct(g['final_state_match_rate'])} | "
            + " | ".join(_num(s[k]) for k in ("min", "p25", "median", "p75", "max", "mean"))
            + f" | {_num(g['relative_cost']['median'])} | {_num(g['total_relative_cost'])} | "
            f"{_pct(g['accept_rate'])} | {g['decisions']} |"
        )
    notes = []
    if report["force_terminated"]:
        notes.append(f"{report['force_terminated']} trajectories hit the step limit")
    if report["errors"]:
        notes.append(f"{report['errors']} ended with an error")
    if notes:
        lines += ["", "Note: " + "; ".join(notes) + " (counted as failures)."]
    if len(report["by_category"]) > 1:
        lines += [
            "",
            "| mode | category | n | success | per-turn accuracy | savings median "
            "| relative cost (total) |",
        ]
        lines.append("|---|---|---|---|---|---|---|")
        for mode, per_mode in report["by_mode"].items():
            for category, g in per_mode["by_category"].items():
                lines.append(
                    f"| {mode} | {category} | {g['n']} | {_pct(g['success_rate'])} | "
                    f"{_turns(g)} | "
                    f"{_num(g['savings']['median'])} | {_num(g['total_relative_cost'])} |"
                )
    lines += [
        "",
        "| task | mode | success | turns | turns passed | decisions | cost | baseline | savings "
        "| relative cost | accept rate | failure |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        failure = row["error_type"] or ""
        if row["error"]:
            failure = f"{failure}: {row['error']}"
        lines.append(
            f"| {row['task_id']} | {row['mode']} | {'yes' if row['success'] else 'no'} | "
            f"{row['turns_run']}/{row['turns']} | {_passed(row['turn_checks'])} | "
            f"{row['decisions']} | {_num(row['cost'])} | "
            f"{_num(row['baseline_cost'])} | {_num(row['savings'])} | "
            f"{_num(row['relative_cost'])} | {_pct(row['accept_rate'])} | "
            f"{failure.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def write_trajectory_report(
    out: str | Path,
    results: Sequence[TrajectoryResult],
    *,
    max_steps_per_turn: int | None = None,
    command: str | None = None,
    append_to: str | Path | None = None,
) -> dict[str, Path]:
    """Write ``trajectories.jsonl`` (one result per line, ledger included),
    ``trajectories.json`` (:func:`trajectory_report`) and ``trajectories.md`` into ``out``.

    ``append_to`` (e.g. the ``report.md`` just written) gets the same section appended.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = trajectory_report(results, max_steps_per_turn=max_steps_per_turn)
    if command:
        report["command"] = command
    paths = {
        "jsonl": out / "trajectories.jsonl",
        "json": out / "trajectories.json",
        "markdown": out / "trajectories.md",
    }
    with paths["jsonl"].open("w", encoding="utf-8") as f:
        for result in results:
            f.write(result.model_dump_json() + "\n")
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    section = trajectory_markdown(report)
    standalone = section.replace("## ", "# ", 1)
    if command:
        standalone += f"\nCommand:\n\n```\n{command}\n```\n"
    paths["markdown"].write_text(standalone)
    if append_to is not None:
        with Path(append_to).open("a", encoding="utf-8") as f:
            f.write("\n" + section)
        paths["report"] = Path(append_to)
    return paths
