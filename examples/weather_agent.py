"""A two-tool LangGraph ReAct agent whose model node is speculative (mode D), on real local models.

    python examples/weather_agent.py [--mode D] [--threshold 0.5] [--verifier-adapter DIR]

The cheap proposer (Qwen2.5-Coder-0.5B) drafts each action, a verifier scores it in one forward
pass, and the strong model (Qwen2.5-Coder-1.5B) acts only when the draft is rejected. A safety
policy blocks money transfers over 1000 before any tool runs. Each run prints the trajectory and
its cost ledger: what every turn cost and saved against calling the strong model every time.

Without a trained adapter (see ``spec-tool-node train``) the verifier is the base 0.5B model asked
the verifier question, so its p(ACCEPT) is only a rough signal.
"""

from __future__ import annotations

import argparse
import time

from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import format_table
from spec_tool_node.node import SpecAgentState, SpeculativeActionNode
from spec_tool_node.safety import SafetyPolicy
from spec_tool_node.verifiers import TrainedVerifier

WEATHER = {"paris": (21, "sunny"), "london": (14, "rain"), "tokyo": (26, "humid")}


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: the city name, e.g. Paris
        unit: "celsius" or "fahrenheit"
    """
    temp, sky = WEATHER.get(city.lower(), (18, "cloudy"))
    if unit == "fahrenheit":
        temp = round(temp * 9 / 5 + 32)
    return f"{city}: {temp} degrees {unit}, {sky}"


@tool
def transfer_money(recipient: str, amount: float) -> str:
    """Send money from the user's account to a recipient.

    Args:
        recipient: who receives the money
        amount: how much, in dollars
    """
    return f"sent {amount} dollars to {recipient}"


POLICY = SafetyPolicy.from_dict(
    {
        "rules": [
            {
                "id": "transfer-limit",
                "tool": "transfer_money",
                "when": [{"arg": "amount", "op": "gt", "value": 1000}],
                "reason": "transfers over 1000 dollars need a human",
            }
        ]
    }
)
QUESTIONS = [
    "What's the weather in Paris in celsius?",
    "Please send 5000 dollars to Bob.",
]


def build_agent(args: argparse.Namespace):
    proposer = HFChatModel(model=args.proposer, max_new_tokens=96)
    strong = HFChatModel(model=args.strong, max_new_tokens=96)
    verifier = TrainedVerifier(model=args.verifier, adapter=args.verifier_adapter)
    node = SpeculativeActionNode(
        proposer=proposer,
        strong=strong,
        verifier=verifier,
        tools=[get_weather, transfer_money],
        config=CascadeConfig(mode=args.mode, threshold=args.threshold),
        safety=POLICY,
        system_prompt="You are a helpful assistant. Use the tools when they help; answer briefly.",
    )
    builder = StateGraph(SpecAgentState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode([get_weather, transfer_money]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mode", default="D", choices=list("ABCDE"), help="cascade mode")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="accept drafts with p(ACCEPT) >= this"
    )
    parser.add_argument("--proposer", default="qwen2.5-coder-0.5b-instruct", help="cheap model")
    parser.add_argument("--strong", default="qwen2.5-coder-1.5b-instruct", help="strong model")
    parser.add_argument(
        "--verifier", default="qwen2.5-coder-0.5b-instruct", help="verifier base model"
    )
    parser.add_argument("--verifier-adapter", default=None, help="trained verifier adapter folder")
    parser.add_argument("--max-turns", type=int, default=6, help="recursion guard per question")
    args = parser.parse_args()

    print(f"loading models (mode {args.mode}) ...", flush=True)
    agent = build_agent(args)
    for question in QUESTIONS:
        print(f"\n=== user: {question}", flush=True)
        start = time.perf_counter()
        result = agent.invoke(
            {"messages": [HumanMessage(question)]}, {"recursion_limit": 2 * args.max_turns + 1}
        )
        for message in result["messages"][1:]:
            calls = getattr(message, "tool_calls", None)
            spec = message.response_metadata.get("spec", {})
            tag = f" [{spec['path']}, p={spec['p_accept']}]" if spec else ""
            body = (
                "; ".join(f"{c['name']}({c['args']})" for c in calls) if calls else message.content
            )
            print(f"{message.type}{tag}: {body}")
        print(f"\nledger ({time.perf_counter() - start:.1f} s):")
        print(format_table(result["spec_ledger"]))


if __name__ == "__main__":
    main()
