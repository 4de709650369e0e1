"""Speculative action selection in a ``langchain.agents.create_agent`` agent: two middlewares.

    .venv/bin/python examples/create_agent_middleware.py [--small] [--question "..."]

Before, ``create_agent(model=strong, tools=...)`` calls the strong model on every step. After, the
same call gets ``middleware=[...]``: ``SpeculativeActionMiddleware`` runs the cascade around each
model call (the proposer goes through the agent's own handler, so tools and the system prompt
apply to drafts exactly as to the strong call), and ``SafetyGateMiddleware`` checks every tool
call right before it runs; a forbidden one gets an error ``ToolMessage`` instead of running.
"""

from __future__ import annotations

import argparse
import time

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from travel_tools import (
    SYSTEM_PROMPT,
    TOOLS,
    TRANSFER_LIMIT,
    bundle_settings,
    model_options,
    models,
    show,
)

from spec_tool_node import (
    CascadeConfig,
    SafetyGateMiddleware,
    SpeculativeActionMiddleware,
)
from spec_tool_node.costs import format_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_options(parser)
    parser.add_argument(
        "--question", default="What time is it in Tokyo right now?", help="what the user asks"
    )
    args = parser.parse_args(argv)
    proposer, strong, verifier = models(args)
    question = {"messages": [HumanMessage(args.question)]}
    limit = {"recursion_limit": 9}

    # Before: a plain create_agent agent.
    agent = create_agent(model=strong, tools=TOOLS, system_prompt=SYSTEM_PROMPT)
    start = time.perf_counter()
    before = agent.invoke(question, limit)
    print(f"before (strong model every step, {time.perf_counter() - start:.1f} s):")
    show(before["messages"])

    # After: the same agent with the two middlewares.
    agent = create_agent(
        model=strong,  # the agent's own model is the strong one
        tools=TOOLS,
        system_prompt=SYSTEM_PROMPT,
        middleware=[
            SpeculativeActionMiddleware(
                proposer=proposer,
                verifier=verifier,
                config=CascadeConfig(mode="D", **bundle_settings(args.bundle)),
            ),
            SafetyGateMiddleware(TRANSFER_LIMIT),
        ],
    )
    start = time.perf_counter()
    after = agent.invoke(question, limit)
    print(f"\nafter (cascade + safety gate middleware, {time.perf_counter() - start:.1f} s):")
    show(after["messages"])
    print("\nledger (cost units: strong call 1.0, draft 0.15, verifier 0.05):")
    print(format_table(after["spec_ledger"]))


if __name__ == "__main__":
    main()
