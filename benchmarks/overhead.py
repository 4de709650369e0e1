"""The node's own overhead per decision, with models that answer instantly.

    python benchmarks/overhead.py --decisions 2000 --concurrency 64

The proposer, strong model and verifier here return a fixed answer at once, so what is timed is
the cascade itself: binding, draft validation against the tool schemas, the safety gate, the
ledger, message building and LangChain's own invoke machinery around each model call. The bare
cost of those instant model calls is measured separately and subtracted, giving the overhead
that spec-tool-node adds on top of the model calls a user pays for anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from spec_tool_node.actions import Action
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import percentile
from spec_tool_node.node import SpeculativeActionNode
from spec_tool_node.safety import SafetyPolicy
from spec_tool_node.verifiers.base import Verdict, Verifier


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather in a city."""
    return "sunny"


@tool
def transfer_money(to: str, amount: float) -> str:
    """Send money."""
    return "done"


class InstantChatModel(BaseChatModel):
    """Answers every call at once with the same tool call (a stand-in to isolate overhead)."""

    @property
    def _llm_type(self) -> str:
        return "instant"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=tools, **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        message = AIMessage(
            "",
            tool_calls=[
                {
                    "name": "get_weather",
                    "args": {"city": "Paris"},
                    "id": "call_1",
                    "type": "tool_call",
                }
            ],
            usage_metadata={"input_tokens": 100, "output_tokens": 20, "total_tokens": 120},
            response_metadata={"model_name": "instant"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


class InstantVerifier(Verifier):
    def __init__(self, p: float) -> None:
        self.p = p

    def score_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        return [Verdict(self.p) for _ in drafts]


POLICY = SafetyPolicy.from_dict(
    {
        "rules": [
            {
                "id": "big",
                "tool": "transfer_money",
                "when": [{"arg": "amount", "op": "gt", "value": 1000}],
                "reason": "limit",
            }
        ]
    }
)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1e3, 3),
        "p95_ms": round(percentile(values, 95) * 1e3, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=2000, help="sync decisions timed per path")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent async trajectories")
    parser.add_argument("--turns", type=int, default=20, help="decisions per async trajectory")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/overhead"), help="output stem"
    )
    args = parser.parse_args()

    model = InstantChatModel()
    state = {"messages": [HumanMessage("What's the weather in Paris?")]}
    tools = [get_weather, transfer_money]
    nodes = {
        "D accepted": SpeculativeActionNode(
            proposer=model,
            strong=model,
            verifier=InstantVerifier(0.9),
            tools=tools,
            safety=POLICY,
            config=CascadeConfig(mode="D"),
        ),
        "D fallback": SpeculativeActionNode(
            proposer=model,
            strong=model,
            verifier=InstantVerifier(0.1),
            tools=tools,
            safety=POLICY,
            config=CascadeConfig(mode="D"),
        ),
    }
    calls_per_decision = {"D accepted": 1, "D fallback": 2}

    bound = model.bind_tools(tools)
    for _ in range(200):
        bound.invoke(state["messages"])
    bare = []
    for _ in range(args.decisions):
        start = time.perf_counter()
        bound.invoke(state["messages"])
        bare.append(time.perf_counter() - start)
    bare_median = statistics.median(bare)

    results: dict[str, Any] = {"bare_model_call": summary(bare)}
    for label, node in nodes.items():
        for _ in range(200):
            node.invoke(state)
        times = []
        for _ in range(args.decisions):
            start = time.perf_counter()
            node.invoke(state)
            times.append(time.perf_counter() - start)
        own = [t - calls_per_decision[label] * bare_median for t in times]
        results[f"sync {label}"] = {
            "total": summary(times),
            "overhead_excluding_model_calls": summary(own),
        }

    async def trajectory(node: SpeculativeActionNode, latencies: list[float]) -> None:
        for _ in range(args.turns):
            start = time.perf_counter()
            await node.ainvoke(state)
            latencies.append(time.perf_counter() - start)

    async def concurrent(node: SpeculativeActionNode) -> tuple[list[float], float]:
        latencies: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(trajectory(node, latencies) for _ in range(args.concurrency)))
        return latencies, time.perf_counter() - start

    asyncio.run(concurrent(nodes["D accepted"]))  # warm-up
    latencies, elapsed = asyncio.run(concurrent(nodes["D accepted"]))
    total = args.concurrency * args.turns
    results[f"async D accepted, {args.concurrency} concurrent"] = {
        "per_decision_latency": summary(latencies),
        "decisions_per_s": round(total / elapsed, 1),
        "cpu_ms_per_decision": round(elapsed / total * 1e3, 3),
    }

    machine = {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    command = (
        f"python benchmarks/overhead.py --decisions {args.decisions} "
        f"--concurrency {args.concurrency} --turns {args.turns}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"machine": machine, "command": command, "results": results}, indent=2)
    )
    bare = results["bare_model_call"]
    lines = [
        "# Node overhead per decision (instant models)",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), Python {machine['python']}.",
        f"Command: `{command}`.",
        f"Sync: {args.decisions} timed decisions per path after 200 warm-up; async: "
        f"{args.concurrency} concurrent trajectories x {args.turns} decisions.",
        "Overhead excluding model calls = total minus (model calls per decision x median bare "
        "instant-model call).",
        "",
        "| path | median ms | p95 ms | overhead excl. model calls: median ms | p95 ms |",
        "|---|---|---|---|---|",
        f"| bare instant model call | {bare['median_ms']} | {bare['p95_ms']} | - | - |",
    ]
    for label in nodes:
        total, own = (
            results[f"sync {label}"][k] for k in ("total", "overhead_excluding_model_calls")
        )
        lines.append(
            f"| sync {label} | {total['median_ms']} | {total['p95_ms']} "
            f"| {own['median_ms']} | {own['p95_ms']} |"
        )
    a = results[f"async D accepted, {args.concurrency} concurrent"]
    lines += [
        "",
        f"Async, {args.concurrency} concurrent trajectories (mode D, accepted): per-decision "
        f"latency median {a['per_decision_latency']['median_ms']} ms, p95 "
        f"{a['per_decision_latency']['p95_ms']} ms (waiting behind the other "
        f"{args.concurrency - 1} trajectories included); throughput {a['decisions_per_s']} "
        f"decisions/s, i.e. {a['cpu_ms_per_decision']} ms of event-loop time per decision.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
