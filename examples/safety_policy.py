"""A safety policy file, an action it blocks, and the node's decisions as they stream.

    .venv/bin/python examples/safety_policy.py [--small] [--question "..."]

The policy (``policies/travel.yaml``) blocks transfers over 1000 EUR and escalates every other
transfer to the strong model, so a drafted payment never runs on the verifier's word alone. The
gate reads the final action of each turn, whoever produced it, so the node refuses a forbidden
call before any tool runs: the AI message says BLOCKED with the rule, the ledger records it. Each
decision is also written to LangGraph's custom stream, read here with
``graph.stream(..., stream_mode="custom")``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from add_to_your_agent import build_agent
from langchain_core.messages import HumanMessage
from travel_tools import SYSTEM_PROMPT, TOOLS, bundle_settings, model_options, models

from spec_tool_node import CascadeConfig, SafetyPolicy, SpeculativeActionNode
from spec_tool_node.actions import ToolCall, ToolCallsAction
from spec_tool_node.node import STREAM_KEY

POLICY_FILE = Path(__file__).resolve().parent / "policies" / "travel.yaml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_options(parser)
    parser.add_argument("--question", default="Please send 5000 EUR to Bob.", help="user request")
    args = parser.parse_args(argv)

    policy = SafetyPolicy.from_file(POLICY_FILE)
    print(f"policy {POLICY_FILE.name}: {', '.join(rule.id for rule in policy.rules)}")
    for amount in (5000, 200):
        call = ToolCall(name="transfer_money", arguments={"recipient": "Bob", "amount": amount})
        decision = policy.check(ToolCallsAction(calls=[call]))
        print(f"  transfer_money(Bob, {amount}) -> {decision.effect} ({decision.rule})")

    proposer, strong, verifier = models(args)
    node = SpeculativeActionNode(
        proposer=proposer,
        strong=strong,
        verifier=verifier,
        tools=TOOLS,
        config=CascadeConfig(mode="D", **bundle_settings(args.bundle)),
        safety=POLICY_FILE,
        system_prompt=SYSTEM_PROMPT,
    )
    print(f"\nuser: {args.question}\ndecisions as they stream:")
    stream = build_agent(node).stream(
        {"messages": [HumanMessage(args.question)]},
        {"recursion_limit": 9},
        stream_mode="custom",
    )
    for event in stream:
        turn = event[STREAM_KEY]
        p = "-" if turn["p_accept"] is None else f"{turn['p_accept']:.2f}"
        print(
            f"  path={turn['path']} safety={turn['safety']} rule={turn['rule']} "
            f"p_accept={p} winner={turn['winner']} action={turn['action']}"
        )


if __name__ == "__main__":
    main()
