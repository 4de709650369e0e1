"""Mode G: the proposer's own drafting pass decides whether its draft stands, with no verifier call.

    .venv/bin/python examples/gate_probe.py [--small]

A probe head trained on the ``drafting`` pooling (``spec-tool-node train verifier --method probe
--poolings drafting``) reads the hidden states that wrote the draft. A local proposer returns them
from its own generation (``HFChatModel(hidden_layers=...)``; the node binds that for you), so the
gate costs no forward pass and the probe's base model is never loaded: the ledger shows a draft and,
only on reject, a strong call, never a verifier call. The head here is the one measured in
``benchmarks/results/gate_probe/`` (Qwen2.5-Coder-0.5B's layer 15, its threshold fixed on training
data). With ``--small`` (SmolLM2-135M everywhere, for a smoke test) no probe fits the proposer, so
mode G falls back to its other signal: the log-probs of the draft's argument values.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from add_to_your_agent import QUESTION, build_agent
from langchain_core.messages import HumanMessage
from travel_tools import SYSTEM_PROMPT, TOOLS, model_options, show

from spec_tool_node import CascadeConfig, HFChatModel, SpeculativeActionNode
from spec_tool_node.bundle import Bundle
from spec_tool_node.costs import format_table
from spec_tool_node.verifiers import ProbeVerifier

GATE = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "gate_probe" / "bundle"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_options(parser)
    parser.add_argument("--gate", default=str(GATE), help="a mode-G bundle with a drafting probe")
    parser.add_argument("--question", default=QUESTION, help="what the user asks")
    args = parser.parse_args(argv)
    budget = 24 if args.small else args.max_new_tokens
    proposer = HFChatModel(model="smollm2-135m-instruct" if args.small else args.proposer,
                           max_new_tokens=budget)  # fmt: skip
    strong = HFChatModel(model="smollm2-135m-instruct" if args.small else args.strong,
                         max_new_tokens=budget)  # fmt: skip
    gate = Bundle.from_pretrained(args.gate).config
    if args.small:  # the probe reads Qwen2.5-Coder-0.5B's states; SmolLM2 has its own
        verifier, config = None, CascadeConfig(mode="G", gate_threshold=0.5)
    else:
        assert gate.verifier is not None and gate.verifier.adapter is not None
        verifier = ProbeVerifier.from_pretrained(gate.verifier.adapter, model=gate.verifier.model)
        config = CascadeConfig(mode="G", gate_threshold=gate.gate_threshold)
    node = SpeculativeActionNode(
        proposer=proposer,
        strong=strong,
        verifier=verifier,
        tools=TOOLS,
        config=config,
        system_prompt=SYSTEM_PROMPT,
    )
    signal = "probe on the drafting pass" if verifier else "log-probs of the argument values"
    start = time.perf_counter()
    out = build_agent(node).invoke(
        {"messages": [HumanMessage(args.question)]}, {"recursion_limit": 9}
    )
    print(f"mode G, {signal}, gate_threshold {config.gate_threshold} "
          f"({time.perf_counter() - start:.1f} s):")  # fmt: skip
    show(out["messages"])
    print("\nledger (cost units: strong call 1.0, draft 0.15; mode G calls no verifier):")
    print(format_table(out["spec_ledger"]))
    roles = {c.role for turn in out["spec_ledger"] for c in turn.calls}
    print(f"roles called: {', '.join(sorted(roles))}")


if __name__ == "__main__":
    main()
