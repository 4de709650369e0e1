"""Write the committed default bundle: the configuration `make demo` and the examples load.

    python benchmarks/default_bundle.py [--verifier-bundle DIR]

Mode F (lossless): the strong model checks the proposer's draft in one pass and writes only from
the first token it disagrees with, so every action equals always-strong's. Its cost model prices a
continued strong call by the work it did, with a read token weighted by this machine's measured
decode/prefill speed ratio for the strong model (benchmarks/results/assets.md: Qwen2.5-Coder-1.5B
decodes 4.14 tok/s and prefills 107.1 tok/s, so one read token costs 4.14 / 107.1 = 0.039 of a
written one). With ``--verifier-bundle`` the verifier of that bundle is carried along with its
thresholds and card, so users can switch to mode D with the speculative fallback without another
download. Two settings are written into the bundle afterwards, each by the command that measured
it (both recorded in the card): the multi-turn threshold (``spec-tool-node train calibrate
--write``) and ``max_uncached_prompt_tokens`` (``benchmarks/cold_prompt_limit.py --write``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spec_tool_node.bundle import Bundle
from spec_tool_node.config import CascadeConfig, ModelSpec
from spec_tool_node.costs import CostModel

DECODE_TOK_S, PREFILL_TOK_S = 4.14, 107.1  # benchmarks/results/assets.md, qwen2.5-coder-1.5b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/default_bundle"))
    parser.add_argument("--verifier-bundle", type=Path, help="bundle whose verifier to carry")
    parser.add_argument(
        "--calls-to-strong",
        type=Path,
        metavar="STUDY",
        help="set accept_calls off (mode D sends every tool-call draft to the strong model), "
        "citing the training-side study folder that chose it",
    )
    args = parser.parse_args()
    verifier = None
    card: dict[str, object] = {
        "mode": "F (lossless): actions equal mode A's",
        "cost_model": f"prefill_weight = {DECODE_TOK_S} / {PREFILL_TOK_S} (assets.md)",
        "rebuild": "python benchmarks/default_bundle.py"
        + (f" --verifier-bundle {args.verifier_bundle}" if args.verifier_bundle else "")
        + (f" --calls-to-strong {args.calls_to_strong}" if args.calls_to_strong else ""),
    }
    if args.calls_to_strong:
        card["accept_calls"] = (
            "off: in modes C, D, E and G every tool-call draft goes to the strong model (whose "
            "speculative fallback keeps a call it agrees with in full) and the verifier judges "
            f"answers and refusals only; chosen on training-side data, see {args.calls_to_strong}"
        )
        card["multi_turn_threshold"] = (
            "recalibrated on the training-side multi-turn answers alone (the drafts the verifier "
            "still judges), after this script: spec-tool-node train calibrate --bundle "
            f"{args.out} --data runs/probe/mt_train/examples.jsonl --drafts "
            "runs/probe/mt_train/drafts.jsonl --precision 0.715 --write (the data: "
            "benchmarks/multi_turn_drafts.py, as in benchmarks/results/probe_v6/multi_turn/; "
            f"output in {args.calls_to_strong}/multi_turn_calibrate_fail_closed.txt). No "
            "threshold reaches the target there (best precision 0.333, 3 of 13 answers right), "
            "so later decisions accept nothing (1.01): each goes to the strong model, which "
            "keeps the draft where it agrees with it"
        )
        card["multi_turn_speculative_fallback"] = (
            "off: with later decisions accepting nothing, a later draft serves only the "
            "fallback; on the 29 training-side later decisions mode F cost 1.002 of "
            "always-strong (the strong model kept 54 of 1,253 draft tokens, no draft whole), so "
            "by the rule fixed before measuring (benchmarks/results/multi_turn_drafting/) later "
            "decisions skip the proposer and the strong model acts alone (in mode F too, which "
            "stays lossless: the strong model's own action)"
        )
    thresholds: dict[str, float | None] = {}
    if args.verifier_bundle:
        source = Bundle.from_pretrained(args.verifier_bundle)
        verifier = source.config.verifier
        thresholds = {
            "threshold": source.config.threshold,
            "multi_turn_threshold": source.config.multi_turn_threshold,
        }
        card["verifier"] = {"from": str(args.verifier_bundle), **source.card}
    config = CascadeConfig(
        mode="F",
        **thresholds,
        accept_calls=not args.calls_to_strong,
        multi_turn_speculative_fallback=False if args.calls_to_strong else None,
        cost_model=CostModel(prefill_weight=round(DECODE_TOK_S / PREFILL_TOK_S, 3)),
        proposer=ModelSpec(model="qwen2.5-coder-0.5b-instruct"),
        strong=ModelSpec(model="qwen2.5-coder-1.5b-instruct"),
        verifier=verifier,
    )
    print(Bundle(config=config, card=card).save_pretrained(args.out))


if __name__ == "__main__":
    main()
