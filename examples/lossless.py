"""Mode F (lossless) on a tool-use agent: the strong model's own actions, written only where the
cheap draft is wrong; its kept-token share and wall time against mode A.

    .venv/bin/python examples/lossless.py [--small] [--question "..."]

In mode F the proposer drafts each action and the strong model reads the draft in one forward
pass (teacher forcing): it keeps the leading tokens that equal its own greedy choice and writes
greedily only from the first token it disagrees with. Every action is therefore exactly the one
mode A (the strong model alone) takes, and the saving is the strong model's decoding of the kept
tokens. The example runs the same questions in both modes and prints, per mode, the wall time, the
actions, and for mode F how many draft tokens were kept. ``--small`` uses SmolLM2-135M for both
models (a smoke test: one model agrees with itself, so every draft is kept).
"""

from __future__ import annotations

import argparse
import time

from add_to_your_agent import build_agent
from langchain_core.messages import HumanMessage
from travel_tools import PROPOSER, SMALL, STRONG, SYSTEM_PROMPT, TOOLS

from spec_tool_node import CascadeConfig, HFChatModel, SpeculativeActionNode

QUESTIONS = ["What's the weather in Paris in celsius?", "Convert 250 EUR to USD."]


def run(mode: str, proposer: HFChatModel | None, strong: HFChatModel, questions: list[str]):
    """Run the questions in one mode; returns (wall seconds, actions per question, ledger)."""
    node = SpeculativeActionNode(
        proposer=proposer,
        strong=strong,
        tools=TOOLS,
        config=CascadeConfig(mode=mode),
        system_prompt=SYSTEM_PROMPT,
    )
    agent = build_agent(node)
    start, actions, ledger = time.perf_counter(), [], []
    for question in questions:
        out = agent.invoke({"messages": [HumanMessage(question)]}, {"recursion_limit": 9})
        actions.append([turn.action for turn in out["spec_ledger"]])
        ledger += out["spec_ledger"]
    return time.perf_counter() - start, actions, ledger


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposer", default=PROPOSER, help="cheap model that drafts actions")
    parser.add_argument("--strong", default=STRONG, help="strong model that checks and writes")
    parser.add_argument("--question", action="append", help="a question (repeatable)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="reply budget per call")
    parser.add_argument("--small", action="store_true", help=f"{SMALL} as both models")
    args = parser.parse_args(argv)
    names = (SMALL, SMALL) if args.small else (args.proposer, args.strong)
    budget = 24 if args.small else args.max_new_tokens
    proposer = HFChatModel(model=names[0], max_new_tokens=budget)
    strong = HFChatModel(model=names[1], max_new_tokens=budget)
    # the same weights with an empty prefix cache, so mode F reuses nothing mode A computed
    strong_f = HFChatModel(
        model=names[1], max_new_tokens=budget, loaded=(strong.hf_model, strong.tokenizer)
    )
    questions = args.question or QUESTIONS

    wall_a, actions_a, _ = run("A", None, strong, questions)
    wall_f, actions_f, ledger = run("F", proposer, strong_f, questions)

    drafted = sum(turn.draft_tokens or 0 for turn in ledger)
    kept = sum(turn.kept_tokens or 0 for turn in ledger)
    whole = sum(bool(turn.full_draft_kept) for turn in ledger)
    print(f"proposer {names[0]}, strong {names[1]}, {len(questions)} questions")
    for question, a, f in zip(questions, actions_a, actions_f, strict=True):
        print(f"\nuser: {question}\n  mode A actions: {a}\n  mode F actions: {f}")
        print(f"  same actions: {a == f}")
    share = kept / drafted if drafted else 0.0
    print(
        f"\nmode F kept {kept} of {drafted} draft tokens ({share:.0%}); "
        f"{whole} of {len(ledger)} drafts kept whole"
    )
    print(f"wall time: mode A {wall_a:.1f} s, mode F {wall_f:.1f} s ({wall_f / wall_a:.2f} of A)")


if __name__ == "__main__":
    main()
