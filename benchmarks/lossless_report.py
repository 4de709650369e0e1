"""Report of the side-by-side run (``benchmarks/lossless_bfcl.py``): modes A, B, F, D, E and G.

Every decision is replayed with the cascade's own decision function (the simulator's
:func:`~spec_tool_node.evaluation.simulator.replay`) from what the run measured on each example:
the proposer's greedy draft (its exact text and token log-probs), the strong model's own action
(mode A) and its continuation of that draft (mode F; also the speculative fallback of D and G,
which continue the same greedy draft).

Mode D's verifier scores come from one of two sources:
- with ``--rerank`` (``benchmarks/lossless_rerank.py``'s output, which must have scored every
  row with the verifier of ``--bundle``), from there; mode E is replayed too, its fallback
  continuing its best-scored draft (a sample's continuation measured there);
- otherwise from the committed BFCL cache, which scored the same greedy drafts; an example whose
  draft differs from the cached one has no score and is left out of D (counted in the report).

Costs: per-call units (strong 1.00, cheap 0.15, verifier 0.05) with a continuation priced by the
work it did, reading a token at ``prefill_weight`` of a decoding step; the weight is measured from
the run itself (a least-squares fit of the strong model's calls' wall times to tokens read and
decoding steps taken). Wall: each decision's calls, summed, as measured side by side.

    .venv/bin/python benchmarks/lossless_report.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage

from spec_tool_node import bfcl
from spec_tool_node.actions import tool_schemas
from spec_tool_node.chat_models.parsing import parse_reply
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CostModel
from spec_tool_node.evaluation.collector import Collected, message_record
from spec_tool_node.evaluation.simulator import SampleResult, replay
from spec_tool_node.jsonl import read_records
from spec_tool_node.training.data import load_draft_cache

CACHE = Path("benchmarks/results/bfcl/cache")
BUNDLE = Path("benchmarks/results/verifier/bundle/cascade.json")
MODES = {"A": "always strong", "B": "cheap only", "F": "lossless", "D": "verifier + spec. fallback"}
"""The modes every report replays; E (``--rerank``) and G (``--gate``) when their inputs exist."""


def message_of(part: dict[str, Any]) -> AIMessage:
    """The reply a row part describes, rebuilt from its exact text (parsed as the model's is)."""
    parsed = parse_reply(part["raw_text"] or "")
    metadata = {k: part[k] for k in ("raw_text", "end_text") if part.get(k) is not None}
    if part.get("logprobs"):
        metadata["logprobs"] = {"content": part["logprobs"]}
    if part.get("lossless"):
        metadata["lossless"] = part["lossless"]
    tokens_in, tokens_out = part["input_tokens"], part["output_tokens"]
    return AIMessage(
        content=parsed.content,
        tool_calls=parsed.tool_calls,
        invalid_tool_calls=parsed.invalid_tool_calls,
        usage_metadata={
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
        response_metadata=metadata,
    )


def collected_of(
    row: dict[str, Any],
    example: Any,
    scores: dict[str, Any],
    rerank: dict[str, Any] | None = None,
    samples: list[dict[str, Any]] | None = None,
) -> Collected:
    """One row as the simulator's cache entry. With ``rerank`` (a ``lossless_rerank.py`` line)
    and the ``samples`` it scored, the verifier's scores come from it (mode D reads the greedy
    draft's score; its call record is the batch call's, a little longer than a call on the
    greedy draft alone) and mode E can continue its best draft; otherwise mode D reads
    ``scores`` where they scored this row's greedy draft."""
    tools = tool_schemas(example.tools)

    def record(part: dict[str, Any], name: str) -> dict[str, Any]:
        return message_record(message_of(part), tools, wall_s=part["wall_s"], model_name=name)

    draft = record(row["draft"], "qwen2.5-coder-0.5b-instruct")
    verifier = scores.get(row["id"])
    single = (verifier or {}).get("single") or {}
    same = single.get("drafts") == ([draft["action"]] if draft["valid"] else None)
    collected = Collected(
        draft=draft,
        verifier={"single": single} if same else None,
        strong=record(row["A"], "qwen2.5-coder-1.5b-instruct"),
        continued=record(row["F"], "qwen2.5-coder-1.5b-instruct"),
    )
    if rerank is not None:
        batch = rerank["batch"]  # None: no valid draft to score
        collected.samples = samples
        collected.verifier = {"batch": batch} if batch else {}
        if draft["valid"]:
            collected.verifier["single"] = {**batch, "drafts": batch["drafts"][:1],
                                            "p": batch["p"][:1]}  # fmt: skip
        if "continuation" in rerank:
            part = rerank["continuation"]
            collected.continuations[part["of"]] = record(part, "qwen2.5-coder-1.5b-instruct")
    return collected


def check_rerank(path: Path, bundle: Path, rows_path: str) -> None:
    """Refuse a rerank file that is partial or whose scores are another verifier's than the one
    whose threshold is replayed: the report would mix two verifiers under one threshold."""
    lines = list(read_records(path))
    wanted = Path(bundle).resolve().parent if Path(bundle).suffix else Path(bundle).resolve()
    others = {line.get("bundle") for line in lines} - {str(wanted)}
    if others:
        raise SystemExit(f"{path}: scored with the verifier of {sorted(map(str, others))}, "
                         f"not of --bundle {wanted}")  # fmt: skip
    rows = {json.loads(x)["id"] for x in Path(rows_path).read_text().splitlines() if x.strip()}
    left = rows - {line["id"] for line in lines}
    if left:
        raise SystemExit(f"{path}: {len(left)} rows of {rows_path} not scored yet (resume it)")


def prefill_weight(rows: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Seconds per read token and per decoding step of the strong model, fitted by least
    squares (no intercept) over its A and F calls, and their ratio."""
    xs: list[tuple[float, float]] = []
    ys: list[float] = []
    for r in rows:
        a, f = r["A"], r["F"]
        xs.append((a["input_tokens"], max(a["output_tokens"] - 1, 0)))
        ys.append(a["wall_s"])
        xs.append((f["input_tokens"], max(f["lossless"]["generated_tokens"] - 1, 0)))
        ys.append(f["wall_s"])
    s11 = sum(x[0] * x[0] for x in xs)
    s12 = sum(x[0] * x[1] for x in xs)
    s22 = sum(x[1] * x[1] for x in xs)
    t1 = sum(x[0] * y for x, y in zip(xs, ys, strict=True))
    t2 = sum(x[1] * y for x, y in zip(xs, ys, strict=True))
    det = s11 * s22 - s12 * s12
    read, step = (s22 * t1 - s12 * t2) / det, (s11 * t2 - s12 * t1) / det
    return read, step, read / step


def summarize(results: list[SampleResult], baseline: list[SampleResult]) -> dict[str, Any]:
    n = len(results)
    base = {r.id: r for r in baseline}
    ratios = [r.wall_s / base[r.id].wall_s for r in results]
    return {
        "n": n,
        "accuracy": sum(r.correct for r in results) / n,
        "cost": sum(r.cost for r in results) / sum(base[r.id].cost for r in results),
        "wall": sum(r.wall_s for r in results) / sum(base[r.id].wall_s for r in results),
        "median_wall_ratio": statistics.median(ratios),
        "median_wall_s": statistics.median(r.wall_s for r in results),
        "accept_rate": sum(r.path == "accepted" for r in results) / n,
        "same_action_as_A": sum(r.action == base[r.id].action for r in results),
        "fallbacks": sum(r.path == "fallback" for r in results),
        "fallbacks_same_action_as_A": sum(
            r.path == "fallback" and r.action == base[r.id].action for r in results
        ),
    }


def assisted_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Token-level assisted generation beside A and F, on the rows that timed it."""
    timed = [r for r in rows if "assisted" in r]
    if not timed:
        return {"n": 0}
    a = [r["A"]["wall_s"] for r in timed]
    return {
        "n": len(timed),
        "same_text_as_A": sum(r["assisted"]["raw_text"] == r["A"]["raw_text"] for r in timed),
        "wall_vs_A": sum(r["assisted"]["wall_s"] for r in timed) / sum(a),
        "F_wall_vs_A_same_rows": sum(r["draft"]["wall_s"] + r["F"]["wall_s"] for r in timed)
        / sum(a),
        "median_s": {
            "A": statistics.median(a),
            "assisted": statistics.median(r["assisted"]["wall_s"] for r in timed),
            "F (draft + check)": statistics.median(
                r["draft"]["wall_s"] + r["F"]["wall_s"] for r in timed
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="benchmarks/results/lossless/side_by_side.jsonl")
    parser.add_argument("--gate", default="benchmarks/results/gate/calibration.json")
    parser.add_argument("--out", default="benchmarks/results/lossless")
    parser.add_argument(
        "--bundle",
        type=Path,
        default=BUNDLE,
        help="cascade.json whose threshold and fallback setting mode D replays",
    )
    parser.add_argument(
        "--verifier-cache",
        type=Path,
        help="the committed verifier scores mode D reads (default: the first verifier file of "
        "the BFCL cache, as the earlier reports read)",
    )
    parser.add_argument(
        "--rerank",
        type=Path,
        help="lossless_rerank.py's output: adds mode E (with the speculative fallback) and gives "
        "mode D its scores",
    )
    parser.add_argument(
        "--calls-to-strong",
        action="store_true",
        help="also replay mode D with accept_calls off (row 'D-calls': every tool-call draft to "
        "the strong model, the verifier judging answers only)",
    )
    args = parser.parse_args()
    if args.rerank is not None:
        check_rerank(args.rerank, args.bundle, rows_path=args.rows)

    rows = [json.loads(x) for x in Path(args.rows).read_text().splitlines() if x.strip()]
    examples = {ex.id: ex for ex in bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, 50)}
    verifier_file = args.verifier_cache or next(
        CACHE.glob("verifier--*--on--qwen2.5-coder-0.5b-instruct-*.jsonl")
    )
    scores = load_draft_cache(verifier_file)
    # mode A as the committed evaluation collected it: the 1.5B's old, doubled-brace template
    committed = load_draft_cache(next(CACHE.glob("strong--qwen2.5-coder-1.5b-instruct-*.jsonl")))
    read_s, step_s, weight = prefill_weight(rows)
    bundle = CascadeConfig.load(args.bundle)
    gate = json.loads(Path(args.gate).read_text()) if Path(args.gate).exists() else None
    base = bundle.model_copy(
        update={
            "cost_model": CostModel(prefill_weight=weight),
            "gate_threshold": gate["gate_threshold"] if gate else 0.5,
        }
    )
    reranked = {r["id"]: r for r in read_records(args.rerank)} if args.rerank is not None else {}
    sampled = load_draft_cache(next(CACHE.glob("samples--qwen2.5-coder-0.5b-instruct-*.jsonl")))
    collected = {
        r["id"]: collected_of(
            r,
            examples[r["id"]],
            scores,
            reranked.get(r["id"]),
            sampled[r["id"]]["samples"][: bundle.n_drafts - 1] if r["id"] in reranked else None,
        )
        for r in rows
    }
    modes = [*MODES, *(["E"] if reranked else []), *(["G"] if gate else [])]
    modes += ["D-calls"] if args.calls_to_strong else []
    results: dict[str, list[SampleResult]] = {}
    for name in modes:
        mode = name[0]  # a variant is named after its mode's letter
        config = base.model_copy(update={"mode": mode, "accept_calls": name != "D-calls"})
        chosen = [
            r
            for r in rows
            if (mode != "D" or collected[r["id"]].verifier is not None)
            and (mode != "E" or r["id"] in reranked)
        ]
        results[name] = [  # every fallback continues its draft, as a local strong model does
            replay(examples[r["id"]], collected[r["id"]], config, continue_fallbacks=True)
            for r in chosen
        ]
    flat = bundle.model_copy(update={"mode": "F"})  # a continuation priced as a full strong call
    flat_f = [replay(examples[r["id"]], collected[r["id"]], flat) for r in rows]

    summary: dict[str, Any] = {
        "examples": len(rows),
        "by_category": {
            c: sum(r["category"] == c for r in rows)
            for c in dict.fromkeys(r["category"] for r in rows)
        },
        "strong_read_s_per_token": read_s,
        "strong_decode_s_per_step": step_s,
        "prefill_weight": weight,
        "gate": gate,
        "F_same_text_as_A": sum(
            (r["F"]["raw_text"], r["F"]["end_text"]) == (r["A"]["raw_text"], r["A"]["end_text"])
            for r in rows
        ),
        "F_full_draft_kept": sum(r["F"]["lossless"]["full_draft_kept"] for r in rows),
        "F_kept_share_of_output": sum(r["F"]["lossless"]["kept_tokens"] for r in rows)
        / sum(r["A"]["output_tokens"] for r in rows),
        "F_kept_share_of_draft": sum(r["F"]["lossless"]["kept_tokens"] for r in rows)
        / max(sum(r["F"]["lossless"]["draft_tokens"] for r in rows), 1),
        "F_cost_flat_per_call": sum(x.cost for x in flat_f) / len(flat_f),
        "modes": {m: summarize(results[m], results["A"]) for m in modes},
        "F_by_category": {
            c: summarize(
                [x for x in results["F"] if examples[x.id].meta.get("category") == c],
                results["A"],
            )
            for c in dict.fromkeys(r["category"] for r in rows)
        },
        "differences": [
            {"id": r["id"], "A": r["A"]["raw_text"], "F": r["F"]["raw_text"]}
            for r in rows
            if r["F"]["raw_text"] != r["A"]["raw_text"]
        ],
        "D_left_out": len(rows) - len(results["D"]),
        "D_bundle": str(args.bundle),
        "D_verifier_scores": str(args.rerank or verifier_file),
        "assisted": assisted_summary(rows),
        "A_same_action_as_committed_cache": sum(
            collected[r["id"]].strong["action"]
            == committed.get(r["id"], {}).get("act", {}).get("action")
            for r in rows
        ),
        "A_same_action_as_committed_cache_of": sum(r["id"] in committed for r in rows),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (out / "samples.jsonl").open("w") as f:
        for mode in modes:
            for result in results[mode]:
                f.write(json.dumps({**result.to_dict(), "mode": mode}) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "differences"}, indent=2))


if __name__ == "__main__":
    main()
