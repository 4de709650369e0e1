"""The travel-desk tools and model choices the examples share.

Five tools over a small in-memory world (weather, local time, currency rates, flights, payments),
so an example's agent has real choices to make and its tool results are checkable. The model
helpers pick the packaged models: Qwen2.5-Coder-0.5B drafts, Qwen2.5-Coder-1.5B acts, the
committed default bundle's verifier (the probe on Qwen2.5-Coder-0.5B's hidden states) scores at
its calibrated threshold; ``--small`` swaps in SmolLM2-135M as proposer and strong model so a
smoke test finishes in seconds (its answers are poor, the plumbing is the same).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import tool

from spec_tool_node import HFChatModel, SafetyPolicy
from spec_tool_node.bundle import Bundle
from spec_tool_node.verifiers import Verifier, load_verifier

PROPOSER = "qwen2.5-coder-0.5b-instruct"
STRONG = "qwen2.5-coder-1.5b-instruct"
SMALL = "smollm2-135m-instruct"
BUNDLE = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "default_bundle"
SYSTEM_PROMPT = (
    "You are a travel assistant. Call a tool when it helps, one call per step; "
    "when the tool results answer the question, reply briefly in plain text."
)

WEATHER = {"paris": (21, "sunny"), "london": (14, "rain"), "tokyo": (26, "humid")}
UTC_OFFSET = {"paris": 1, "london": 0, "tokyo": 9, "new york": -5}
EUR_RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "JPY": 161.0}
FLIGHTS = {
    ("paris", "tokyo"): [("AF276", 912.0), ("JL46", 1040.0)],
    ("london", "paris"): [("BA304", 120.0)],
}


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
def get_local_time(city: str) -> str:
    """Get the current local time in a city, as hours:minutes.

    Args:
        city: the city name
    """
    offset = UTC_OFFSET.get(city.lower(), 0)
    return f"{city}: {(12 + offset) % 24:02d}:00"


@tool
def convert_currency(amount: float, source: str, target: str) -> str:
    """Convert an amount of money between currencies.

    Args:
        amount: the amount in the source currency
        source: ISO code of the source currency, e.g. EUR
        target: ISO code of the target currency, e.g. USD
    """
    rate = EUR_RATES[target.upper()] / EUR_RATES[source.upper()]
    return f"{amount} {source.upper()} = {amount * rate:.2f} {target.upper()}"


@tool
def search_flights(origin: str, destination: str) -> str:
    """Search direct flights between two cities, with prices in EUR.

    Args:
        origin: departure city
        destination: arrival city
    """
    found = FLIGHTS.get((origin.lower(), destination.lower()), [])
    return "; ".join(f"{code}: {price} EUR" for code, price in found) or "no direct flights"


@tool
def transfer_money(recipient: str, amount: float) -> str:
    """Send money from the user's account to a recipient.

    Args:
        recipient: who receives the money
        amount: how much, in EUR
    """
    return f"sent {amount} EUR to {recipient}"


TOOLS = [get_weather, get_local_time, convert_currency, search_flights, transfer_money]

TRANSFER_LIMIT = SafetyPolicy.from_dict(
    {
        "rules": [
            {
                "id": "transfer-limit",
                "tool": "transfer_money",
                "when": [{"arg": "amount", "op": "gt", "value": 1000}],
                "reason": "transfers over 1000 need a human",
            }
        ]
    }
)
"""The payments rule of the demo and the middleware example, written in code (the safety-policy
example reads the same rule, and one more, from ``policies/travel.yaml``)."""


def model_options(parser: argparse.ArgumentParser) -> None:
    """The model options every example takes."""
    parser.add_argument("--proposer", default=PROPOSER, help="cheap model that drafts actions")
    parser.add_argument("--strong", default=STRONG, help="strong model, called on reject")
    parser.add_argument("--bundle", default=str(BUNDLE), help="bundle whose verifier scores drafts")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="reply budget per call")
    parser.add_argument(
        "--small",
        action="store_true",
        help=f"smoke-test settings: {SMALL} as every model, short replies",
    )


def models(args: argparse.Namespace) -> tuple[HFChatModel, HFChatModel, Verifier]:
    """(proposer, strong, verifier) as the options say; the verifier is the bundle's."""
    proposer_name, strong_name = (SMALL, SMALL) if args.small else (args.proposer, args.strong)
    budget = 24 if args.small else args.max_new_tokens
    return (
        HFChatModel(model=proposer_name, max_new_tokens=budget),
        HFChatModel(model=strong_name, max_new_tokens=budget),
        bundle_verifier(args.bundle),
    )


def bundle_verifier(bundle: str | Path) -> Verifier:
    """The verifier a bundle ships: a probe head or a LoRA adapter on its base model."""
    spec = Bundle.from_pretrained(bundle).config.verifier
    if spec is None:
        raise SystemExit(f"bundle {bundle} has no verifier")
    return load_verifier(spec.model, spec.adapter, max_length=spec.max_length)


def bundle_settings(bundle: str | Path) -> dict[str, Any]:
    """The decision settings chosen with the bundle's verifier on training data: the accept
    thresholds for a conversation's first and later decisions (above 1: none is accepted),
    whether a tool-call draft may be accepted on its score at all, and whether later decisions
    still draft for the strong model to continue."""
    config = Bundle.from_pretrained(bundle).config
    return config.model_dump(
        include={
            "threshold",
            "multi_turn_threshold",
            "accept_calls",
            "multi_turn_speculative_fallback",
        }
    )


def show(messages: list[BaseMessage]) -> None:
    """Print a conversation: each AI turn with how the node decided it, tool calls, results."""
    for message in messages:
        if isinstance(message, AIMessage):
            spec = message.response_metadata.get("spec", {})
            tag = f" [{spec.get('path')}, p_accept={spec.get('p_accept')}]" if spec else ""
            calls = "; ".join(f"{c['name']}({c['args']})" for c in message.tool_calls)
            print(f"  ai{tag}: {calls or message.content!r}")
        else:
            print(f"  {message.type}: {message.content}")
