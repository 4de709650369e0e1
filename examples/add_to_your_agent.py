"""Add speculative action selection to an existing LangGraph ReAct agent: a one-line change.

    .venv/bin/python examples/add_to_your_agent.py [--small]

``build_agent`` is an ordinary ReAct graph (model node, ``ToolNode``, ``tools_condition``). Before,
its model node calls the strong model on every step. After, the model node is a
``SpeculativeActionNode``: the cheap proposer drafts each action, the verifier scores the draft,
and the strong model acts only when the draft is rejected. Nothing else in the graph changes; the
node also appends one ledger row per step (``spec_ledger``), priced against calling the strong
model every time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from travel_tools import SYSTEM_PROMPT, TOOLS, bundle_settings, model_options, models, show

from spec_tool_node import CascadeConfig, SpecAgentState, SpeculativeActionNode
from spec_tool_node.costs import format_table

QUESTION = "What's the weather in Paris in celsius?"


def build_agent(model_node: Callable[..., Any]) -> Any:
    """Your existing ReAct graph, unchanged; only the model node passed in differs."""
    builder = StateGraph(SpecAgentState)  # MessagesState plus the ledger
    builder.add_node("agent", model_node)
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_options(parser)
    parser.add_argument("--question", default=QUESTION, help="what the user asks")
    args = parser.parse_args(argv)
    proposer, strong, verifier = models(args)
    limit = {"recursion_limit": 9}  # at most four tool rounds
    question = {"messages": [HumanMessage(args.question)]}

    # Before: the model node calls the strong model on every step.
    bound = strong.bind_tools(TOOLS)

    def call_model(state: SpecAgentState) -> dict[str, Any]:
        return {"messages": [bound.invoke([SystemMessage(SYSTEM_PROMPT), *state["messages"]])]}

    start = time.perf_counter()
    before = build_agent(call_model).invoke(question, limit)
    print(f"before (strong model every step, {time.perf_counter() - start:.1f} s):")
    show(before["messages"])

    # After: the one-line change, the model node is speculative.
    node = SpeculativeActionNode(
        proposer=proposer,
        strong=strong,
        verifier=verifier,
        tools=TOOLS,
        config=CascadeConfig(mode="D", **bundle_settings(args.bundle)),
        system_prompt=SYSTEM_PROMPT,
    )
    start = time.perf_counter()
    after = build_agent(node).invoke(question, limit)
    print(f"\nafter (SpeculativeActionNode, mode D, {time.perf_counter() - start:.1f} s):")
    show(after["messages"])
    print("\nledger (cost units: strong call 1.0, draft 0.15, verifier 0.05):")
    print(format_table(after["spec_ledger"]))


if __name__ == "__main__":
    main()
