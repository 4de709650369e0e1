"""Proposer and strong model behind OpenAI-compatible servers, and the ledger in per-token prices.

Start two servers on the packaged models (llama.cpp's server here; vLLM works the same way, see
``spec-tool-node serve-config``), then run the agent against them:

    python -m llama_cpp.server --port 8001 --model_alias proposer --n_ctx 4096 \\
        --model "$(spec-tool-node models gguf qwen2.5-coder-0.5b-instruct)" &
    python -m llama_cpp.server --port 8002 --model_alias strong --n_ctx 4096 \\
        --model "$(spec-tool-node models gguf qwen2.5-coder-1.5b-instruct)" &
    .venv/bin/python examples/remote_models.py

Both servers return Qwen2.5-Coder's tool calls as JSON text in ``content`` with ``tool_calls``
empty, so each ``ChatOpenAI`` is wrapped with ``with_parsed_tool_calls``. The verifier is the
bundle's verifier, run in-process (one forward pass, no generation); ``--verifier-url``
reads it from a server instead. The ledger prices every call per token (``CostModel`` basis
``tokens``, prices per million tokens as price sheets quote them) from the usage the servers
report.
"""

from __future__ import annotations

import argparse
import time

from add_to_your_agent import build_agent
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from travel_tools import BUNDLE, SYSTEM_PROMPT, TOOLS, bundle_settings, bundle_verifier, show

from spec_tool_node import (
    CascadeConfig,
    CostModel,
    SpeculativeActionNode,
)
from spec_tool_node.chat_models.parsed import with_parsed_tool_calls
from spec_tool_node.costs import TokenPrice, format_table, summarize
from spec_tool_node.verifiers.served import ServedVerifier

# Your price sheet, in dollars per million tokens (these values are placeholders to edit).
PRICES = CostModel(
    basis="tokens",
    prices={
        "strong": TokenPrice(input=0.60, output=2.40),
        "cheap": TokenPrice(input=0.05, output=0.20),
        "verifier": TokenPrice(input=0.02, output=0.02),
    },
)


def served(base_url: str, name: str, max_tokens: int) -> ChatOpenAI:
    """A model on an OpenAI-compatible server (servers started without a key accept any)."""
    return ChatOpenAI(
        base_url=base_url, model=name, api_key="none", temperature=0, max_tokens=max_tokens
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposer-url", default="http://localhost:8001/v1")
    parser.add_argument("--proposer-name", default="proposer", help="model name it serves")
    parser.add_argument("--strong-url", default="http://localhost:8002/v1")
    parser.add_argument("--strong-name", default="strong", help="model name it serves")
    parser.add_argument(
        "--verifier-url", default=None, help="a served verifier (default: the bundle's, local)"
    )
    parser.add_argument("--verifier-name", default="verifier", help="model name it serves")
    parser.add_argument("--bundle", default=str(BUNDLE), help="bundle with the local verifier")
    parser.add_argument("--max-tokens", type=int, default=128, help="reply budget per call")
    parser.add_argument("--question", default="What's the weather in Paris in celsius?")
    args = parser.parse_args(argv)

    proposer = with_parsed_tool_calls(
        served(args.proposer_url, args.proposer_name, args.max_tokens)
    )
    strong = with_parsed_tool_calls(served(args.strong_url, args.strong_name, args.max_tokens))
    if args.verifier_url:
        verifier = ServedVerifier(served(args.verifier_url, args.verifier_name, 1))
    else:
        verifier = bundle_verifier(args.bundle)
    node = SpeculativeActionNode(
        proposer=proposer,
        strong=strong,
        verifier=verifier,
        tools=TOOLS,
        config=CascadeConfig(mode="D", **bundle_settings(args.bundle), cost_model=PRICES),
        system_prompt=SYSTEM_PROMPT,
    )
    agent = build_agent(node)  # the ReAct graph of add_to_your_agent.py

    start = time.perf_counter()
    result = agent.invoke({"messages": [HumanMessage(args.question)]}, {"recursion_limit": 9})
    print(f"trajectory ({time.perf_counter() - start:.1f} s):")
    show(result["messages"])

    ledger = result["spec_ledger"]
    print("\nledger in dollars (cost against the strong model answering every turn):")
    print(format_table(ledger))
    print("\nevery call, with the tokens the servers reported:")
    for i, turn in enumerate(ledger):
        for call in turn.calls:
            print(
                f"  turn {i} {call.role:8s} {call.purpose:6s} {call.model:10s} "
                f"in={call.input_tokens:5d} out={call.output_tokens:4d} ${call.cost:.8f}"
            )
    summary = summarize(ledger)
    print(
        f"\ntotal ${summary.cost:.8f} vs ${summary.baseline_cost:.8f} always-strong: "
        f"relative cost {summary.relative_cost:.2f}, {summary.accept_rate:.0%} drafts accepted"
    )


if __name__ == "__main__":
    main()
