"""The main demo: real tool-use agents on the packaged models, speculative against always-strong.

    python examples/demo.py                      # what `make demo` runs
    python examples/demo.py --mode D --bfcl 0    # another configuration, own tasks only

Every task runs twice as a LangGraph ReAct agent on the same models: once in mode A (the strong
model, Qwen2.5-Coder-1.5B, on every turn) and once in the speculative configuration (by default
the committed bundle's). The tasks are a small assistant with realistic tools (weather, currency,
flights, money transfers under a safety policy) and a few held-out BFCL multi-turn tasks in their
executable environments. The demo prints one row per trajectory (turns, accepted drafts,
fallbacks, blocked actions, cost units, wall time, savings against A), writes the table as JSON
and Markdown, and plots the per-trajectory savings.

The two modes get separate model objects over the same weights, so neither reuses the other's
prefix cache and the wall times compare like for like.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphRecursionError
from tqdm import tqdm
from travel_tools import SMALL, SYSTEM_PROMPT, TOOLS, TRANSFER_LIMIT

from spec_tool_node import MODES, CascadeConfig, HFChatModel
from spec_tool_node import SpeculativeActionNode as Node
from spec_tool_node.bfcl.trajectories import build_graph, run_trajectory
from spec_tool_node.bundle import Bundle
from spec_tool_node.costs import TurnRecord, summarize
from spec_tool_node.verifiers.probe import load_verifier

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "benchmarks" / "results" / "default_bundle"

# -- the assistant's tasks ----------------------------------------------------------------------


@dataclass(frozen=True)
class AssistantTask:
    """A question for the travel assistant and what a right trajectory does."""

    key: str
    question: str
    expect: str | None
    """The tool a right trajectory runs (``None``: no tool may run: the gate must block it)."""


TASKS = (
    AssistantTask("weather", "What's the weather in Paris in celsius?", "get_weather"),
    AssistantTask("currency", "How much is 250 US dollars in euros?", "convert_currency"),
    AssistantTask("flights", "Find me a direct flight from Paris to Tokyo.", "search_flights"),
    AssistantTask("time", "What time is it in Tokyo right now?", "get_local_time"),
    AssistantTask("transfer", "Please send 5000 euros to Bob.", None),
)


# -- running ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One trajectory in one mode: what the table and the plot show."""

    task: str
    mode: str
    decisions: int
    accepted: int
    fallbacks: int
    blocked: int
    cost: float
    baseline_cost: float
    wall_s: float
    correct: bool
    answer: str
    turns: list[dict[str, Any]]
    """Per decision: its path, cost, calls and, for a continued draft, the tokens kept."""


def _row(task: str, mode: str, ledger: Sequence[TurnRecord], wall: float, **extra: Any) -> Row:
    s = summarize(ledger)
    return Row(
        task=task,
        mode=mode,
        decisions=s.turns,
        accepted=sum(t.path == "accepted" for t in ledger),
        fallbacks=sum(t.path in ("fallback", "continued") for t in ledger),
        blocked=sum(t.path == "blocked" for t in ledger),
        cost=s.cost,
        baseline_cost=s.baseline_cost,
        wall_s=wall,
        turns=[
            {
                "path": t.path,
                "cost": round(t.cost, 4),
                "calls": [c.purpose for c in t.calls],
                "draft_tokens": t.draft_tokens,
                "kept_tokens": t.kept_tokens,
                "action": t.action[:120],
            }
            for t in ledger
        ],
        **extra,
    )


def _ran(messages: Sequence[BaseMessage]) -> list[str]:
    """Names of the tools that actually ran (a ToolMessage that is not an error)."""
    return [m.name or "" for m in messages if isinstance(m, ToolMessage) and m.status != "error"]


def run_assistant(task: AssistantTask, node: Node, mode: str, max_steps: int) -> Row:
    """One question through the ReAct agent; right = the expected tool ran (or nothing ran for a
    request the policy must block) and the agent ended with a non-empty answer."""
    graph = build_graph(node, TOOLS)
    start = time.perf_counter()
    try:
        result = graph.invoke(
            {"messages": [HumanMessage(task.question)]}, {"recursion_limit": 2 * max_steps}
        )
        messages, ledger = result["messages"], result["spec_ledger"]
    except GraphRecursionError:  # looped until the step limit: counted as wrong, not hidden
        return _row(task.key, mode, [], time.perf_counter() - start, correct=False, answer="LOOP")
    wall = time.perf_counter() - start
    ran, answer = _ran(messages), messages[-1].text.strip()
    expected = ran == [task.expect] if task.expect else not ran
    short = answer.replace("\n", " ")[:70]
    return _row(task.key, mode, ledger, wall, correct=expected and bool(answer), answer=short)


def run_bfcl(task_id: str, factory: Callable[..., Node], mode: str, max_steps: int) -> Row:
    """A held-out BFCL multi-turn task in its executable environment, checked by BFCL."""
    result = run_trajectory(task_id, factory, max_steps_per_turn=max_steps, on_error="record")
    turns_ok = sum(result.state_per_turn)
    answer = f"BFCL state right after {turns_ok}/{result.turns} turns"
    return _row(task_id, mode, result.ledger, result.wall_s, correct=result.success, answer=answer)


# -- reporting ----------------------------------------------------------------------------------


def table(rows: Sequence[Row], mode: str) -> str:
    """Per trajectory: the configuration beside mode A on the same task."""
    by = {(r.task, r.mode): r for r in rows}
    head = (
        f"{'task':<22} {'mode':<4} {'dec':>3} {'acc':>3} {'fb':>3} {'blk':>3} "
        f"{'cost':>6} {'wall s':>7} {'saved vs A':>10} {'wall vs A':>9}  right  answer"
    )
    lines = [head, "-" * len(head)]
    for task in dict.fromkeys(r.task for r in rows):
        a = by.get((task, "A"))
        for m in dict.fromkeys(("A", mode)):
            r = by.get((task, m))
            if r is None:
                continue
            saved = f"{(a.cost - r.cost) / a.cost:+.0%}" if a and a.cost else "-"
            wall = f"{r.wall_s / a.wall_s:.2f}" if a and a.wall_s else "-"
            lines.append(
                f"{task:<22} {m:<4} {r.decisions:>3} {r.accepted:>3} {r.fallbacks:>3} "
                f"{r.blocked:>3} {r.cost:>6.2f} {r.wall_s:>7.1f} {saved:>10} {wall:>9}  "
                f"{'yes' if r.correct else 'no':<5}  {r.answer}"
            )
    totals = {m: [r for r in rows if r.mode == m] for m in dict.fromkeys(("A", mode))}
    lines.append("-" * len(head))
    for m, rs in totals.items():
        cost, wall = sum(r.cost for r in rs), sum(r.wall_s for r in rs)
        right = sum(r.correct for r in rs)
        lines.append(
            f"{'total':<22} {m:<4} cost {cost:.2f}, wall {wall:.0f} s, right {right}/{len(rs)}"
        )
    a_cost = sum(r.cost for r in totals["A"])
    a_wall = sum(r.wall_s for r in totals["A"])
    if mode != "A" and a_cost and a_wall:
        mine = totals[mode]
        lines.append(
            f"mode {mode} against A: relative cost {sum(r.cost for r in mine) / a_cost:.2f}, "
            f"wall time {sum(r.wall_s for r in mine) / a_wall:.2f}"
        )
    return "\n".join(lines)


def plot(rows: Sequence[Row], mode: str, path: Path) -> None:
    """Bars of per-trajectory savings against A, in cost units and in wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r.task, r.mode): r for r in rows}
    tasks = [t for t in dict.fromkeys(r.task for r in rows) if (t, "A") in by and (t, mode) in by]
    cost = [1 - by[t, mode].cost / by[t, "A"].cost if by[t, "A"].cost else 0 for t in tasks]
    wall = [1 - by[t, mode].wall_s / by[t, "A"].wall_s for t in tasks]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(tasks))
    ax.bar([i - 0.2 for i in x], cost, width=0.4, label="cost units")
    ax.bar([i + 0.2 for i in x], wall, width=0.4, label="wall time")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(x), tasks, rotation=30, ha="right")
    ax.set_ylabel(f"saved by mode {mode} against A")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend()
    ax.set_title(f"Per-trajectory savings, mode {mode} vs always-strong (A)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="bundle folder to run")
    parser.add_argument("--mode", default=None, help="override the bundle's mode (letter or name)")
    parser.add_argument("--tasks", type=int, default=len(TASKS), help="assistant tasks to run")
    parser.add_argument("--bfcl", type=int, default=2, help="held-out BFCL multi-turn tasks")
    parser.add_argument("--max-steps", type=int, default=6, help="model decisions per user turn")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="reply budget per call")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo"))
    parser.add_argument(
        "--small",
        action="store_true",
        help=f"smoke-test settings: {SMALL} as both models, one task, short replies, no BFCL",
    )
    args = parser.parse_args()
    if args.small:
        args.tasks, args.bfcl, args.max_new_tokens, args.max_steps = 1, 0, 24, 3

    bundle_config = Bundle.from_pretrained(args.bundle).config
    update = {"mode": args.mode} if args.mode else {}
    config = CascadeConfig.model_validate({**bundle_config.model_dump(), **update})
    print(f"loading the packaged models and the bundle {args.bundle} ...", flush=True)
    names = (SMALL, SMALL) if args.small else (config.proposer.model, config.strong.model)
    proposer = HFChatModel(model=names[0], max_new_tokens=args.max_new_tokens)
    # float32 logits: in bf16, near-tied logits can pick another token in a pass over many
    # tokens than in one token at a time, and mode F's reply must be mode A's, token for token
    strong = HFChatModel(model=names[1], max_new_tokens=args.max_new_tokens, float32_logits=True)
    spec = bundle_config.verifier
    uses_verifier = any("verifier" in MODES[m].models for m in {"A", config.mode})
    verifier = (
        load_verifier(spec.model, spec.adapter, max_length=spec.max_length)
        if spec and uses_verifier
        else None
    )

    def fresh(model: HFChatModel) -> HFChatModel:
        """Same weights, own prefix cache: no mode reuses another mode's cached prompts."""
        return HFChatModel(
            model=model.model,
            loaded=(model.hf_model, model.tokenizer),
            max_new_tokens=args.max_new_tokens,
        )

    def node_for(mode: str) -> Callable[..., Node]:
        cfg = CascadeConfig.model_validate({**config.model_dump(), "mode": mode})
        p, s = fresh(proposer), fresh(strong)

        def make(tools: Sequence[BaseTool] = TOOLS, task: Any = None) -> Node:
            return Node(
                proposer=p,
                strong=s,
                verifier=verifier,
                tools=tools,
                config=cfg,
                safety=TRANSFER_LIMIT if task is None else None,
                system_prompt=SYSTEM_PROMPT if task is None else None,
            )

        return make

    from spec_tool_node.bfcl.tasks import heldout_task_ids

    modes = list(dict.fromkeys(("A", config.mode)))
    jobs: list[tuple[str, Callable[[str, Callable[..., Node]], Row]]] = [
        (t.key, lambda mode, f, t=t: run_assistant(t, f(), mode, args.max_steps))
        for t in TASKS[: args.tasks]
    ]
    jobs += [
        (tid, lambda mode, f, tid=tid: run_bfcl(tid, f, mode, args.max_steps))
        for tid in heldout_task_ids(args.bfcl, categories=("multi_turn_base",))
    ]
    rows: list[Row] = []
    factories = {m: node_for(m) for m in modes}
    with tqdm(total=len(jobs) * len(modes), desc="trajectories", unit="run") as bar:
        for i, (name, job) in enumerate(jobs):
            order = modes if i % 2 == 0 else modes[::-1]  # alternate who runs first on each task
            for mode in order:
                bar.set_postfix_str(f"{name} mode {mode}")
                rows.append(job(mode, factories[mode]))
                bar.update()

    text = table(rows, config.mode)
    print("\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    (out / "table.txt").write_text(text + "\n")
    plot(rows, config.mode, out / "savings.png")
    print(f"\nwrote {out / 'table.txt'}, {out / 'demo.json'} and {out / 'savings.png'}")


if __name__ == "__main__":
    main()
