"""From a folder of logged conversations to a probe-verifier bundle, and an agent that loads it.

    .venv/bin/python examples/train_your_own.py [--logs examples/logs] [--small]

Each step is the ``spec-tool-node`` command a user would run (printed before it runs):

1. ``data chat-logs``: every assistant turn of the OpenAI-style logs becomes a decision example
   (context so far, and what the assistant did as the gold action).
2. ``train mine``: the proposer drafts each decision; a draft is right or wrong against the gold.
3. ``train verifier --method probe``: a small head on a frozen model's hidden states learns which
   drafts to accept (grouped cross-validation picks layer, pooling and head, and the threshold).
4. ``bundle``: proposer, strong model, verifier and threshold in one folder.

Then ``SpeculativeActionNode.from_pretrained(bundle)`` runs an agent on it. ``--small`` keeps it
short (the first 16 decisions, SmolLM2-135M as the probe's reader and the strong model; the
proposer stays Qwen2.5-Coder-0.5B so that some drafts are right and some wrong). The shipped logs
(``logs/travel_desk.jsonl``) are a dozen hand-written travel-desk conversations; with so few,
the probe's numbers show that the pipeline runs, not how well it can do.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from add_to_your_agent import build_agent
from langchain_core.messages import HumanMessage
from travel_tools import PROPOSER, SMALL, STRONG, SYSTEM_PROMPT, TOOLS, show

from spec_tool_node import SpeculativeActionNode
from spec_tool_node.cli import main as spec_tool_node
from spec_tool_node.costs import format_table

HERE = Path(__file__).resolve().parent


def run(*argv: str) -> None:
    """Run one ``spec-tool-node`` command, as typed on a shell; stop on failure."""
    print(f"\n$ spec-tool-node {' '.join(argv)}", flush=True)
    if spec_tool_node(list(argv)) != 0:
        raise SystemExit(f"spec-tool-node {argv[0]} {argv[1]} failed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=HERE / "logs", help="folder of *.jsonl logs")
    parser.add_argument("--work", type=Path, default=Path("runs/train_your_own"), help="outputs")
    parser.add_argument("--proposer", default=PROPOSER, help="model that drafts the actions")
    parser.add_argument("--strong", default=STRONG, help="strong model of the bundle")
    parser.add_argument("--reader", default=PROPOSER, help="frozen model the probe reads")
    parser.add_argument("--small", action="store_true", help="smoke-test settings (see above)")
    args = parser.parse_args(argv)
    if args.small:
        args.strong, args.reader = SMALL, SMALL
    limit = ["--limit", "16"] if args.small else []
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    # 1. logs -> decision examples (one file per log file, then one training file)
    examples = work / "examples.jsonl"
    parts = []
    for log in sorted(args.logs.glob("*.jsonl")):
        run("data", "chat-logs", str(log), "--out", str(work / f"examples-{log.stem}.jsonl"))
        parts.append((work / f"examples-{log.stem}.jsonl").read_text())
    if not parts:
        raise SystemExit(f"no *.jsonl logs in {args.logs}")
    examples.write_text("".join(parts))

    # 2. the proposer's drafts, right or wrong against the logged actions (resumable cache)
    drafts = work / "drafts.jsonl"
    run("train", "mine", "--data", str(examples), *limit, "--proposer", args.proposer,
        "--cache", str(drafts), "--max-new-tokens", "64")  # fmt: skip
    cached = [json.loads(line) for line in drafts.read_text().splitlines()]
    right = sum(bool(d.get("right")) for d in cached)
    print(f"{len(cached)} drafts, {right} right")

    # 3. the probe verifier
    probe = work / "probe"
    run("train", "verifier", "--method", "probe", "--data", str(examples), *limit,
        "--base", args.reader, "--drafts", str(drafts), "--out", str(probe),
        "--folds", "3", "--poolings", "mean,last")  # fmt: skip
    threshold = json.loads((probe / "probe.json").read_text())["threshold"]

    # 4. the bundle
    bundle = work / "bundle"
    run("bundle", "--out", str(bundle), "--mode", "D", "--threshold", f"{threshold:.4f}",
        "--proposer", args.proposer, "--strong", args.strong,
        "--verifier", f"{args.reader}@{probe}")  # fmt: skip

    # the agent on the new bundle
    node = SpeculativeActionNode.from_pretrained(bundle, tools=TOOLS, system_prompt=SYSTEM_PROMPT)
    question = "What's the weather in London in celsius?"
    start = time.perf_counter()
    result = build_agent(node).invoke(
        {"messages": [HumanMessage(question)]}, {"recursion_limit": 9}
    )
    print(f"\nagent on {bundle} ({time.perf_counter() - start:.1f} s):")
    show(result["messages"])
    print(format_table(result["spec_ledger"]))


if __name__ == "__main__":
    main()
