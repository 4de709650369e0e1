"""What mode E with the speculative fallback needs, on the examples of a mode-F run.

Mode E drafts ``n_drafts`` actions (the greedy draft and sampled ones), the bundle's verifier
scores every valid one, and the best is accepted when its score reaches the threshold; on reject,
the speculative fallback has the strong model continue that best draft (``continue_draft``), so
the strong model's action is unchanged and only its cost depends on the draft. For each row of
``lossless_bfcl.py``'s output this measures, on this machine:

- the verifier's scores of the row's greedy draft and the committed cache's sampled drafts
  (one ``score_batch`` call, as the cascade makes it), and
- when the best-scored draft is a sample, the strong model's continuation of it (the greedy
  draft's is the row's mode F), whatever the threshold, so any threshold can be replayed.

``lossless_report.py --rerank`` replays modes D and E from these with the live decision code.
Rows are appended as they are measured; rerunning the same command continues where it stopped.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lossless_rerank.py \\
        --rows benchmarks/results/lossless/quiet/side_by_side.jsonl \\
        --bundle benchmarks/results/probe_v6/bundle \\
        --out benchmarks/results/lossless/quiet/rerank.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from lossless_bfcl import STRONG, reply
from lossless_report import CACHE, collected_of

from spec_tool_node import bfcl
from spec_tool_node.actions import action_from_canonical, tool_schemas
from spec_tool_node.bundle import Bundle
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation.collector import (
    best_draft,
    context_of,
    draft_text,
    rebuild_message,
    valid_texts,
)
from spec_tool_node.jsonl import read_records
from spec_tool_node.training.data import load_draft_cache
from spec_tool_node.verifiers.probe import load_verifier


def score(verifier: Any, context: Any, tools: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """One ``score_batch`` call on the valid drafts, recorded as the collector records it."""
    start = time.perf_counter()
    verdicts = verifier.score_batch(
        context, list(tools.values()), [action_from_canonical(t) for t in texts]
    )
    return {
        "drafts": texts,
        "p": [float(v.p_accept) for v in verdicts],
        "records": [v.record.model_dump(mode="json") for v in verdicts if v.record is not None],
        "exception": None,
        "wall_s": time.perf_counter() - start,
    }


def measure(
    row: dict[str, Any], example: Any, samples: list[dict[str, Any]], verifier: Any, strong: Any
) -> dict[str, Any]:
    """One row: the verifier's scores of its drafts and, when a sample is best, its
    continuation (the greedy draft's is the row's mode F)."""
    tools = tool_schemas(example.tools)
    tool_list = [{"type": "function", "function": f} for f in tools.values()]
    context = context_of(example)
    draft = collected_of(row, example, {}).draft
    assert draft is not None
    records = [draft, *samples]
    texts = valid_texts(records)
    batch = score(verifier, context, tools, texts) if texts else None
    best = best_draft(records, batch["p"] if batch else [])
    assert best is not None  # the row's greedy draft has a reply
    out: dict[str, Any] = {"id": row["id"], "batch": batch, "best": records.index(best)}
    if best is not draft:
        start = time.perf_counter()
        message = strong.continue_draft(context, rebuild_message(best), tool_list)
        out["continuation"] = {
            **reply(message, time.perf_counter() - start, tools),
            "of": draft_text(best),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", required=True, help="lossless_bfcl.py's output")
    parser.add_argument("--bundle", required=True, help="bundle whose verifier scores the drafts")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    rows = [json.loads(x) for x in Path(args.rows).read_text().splitlines() if x.strip()]
    out = Path(args.out)
    done = {r["id"] for r in read_records(out)} if out.exists() else set()
    todo = [r for r in rows if r["id"] not in done]
    print(f"{len(done)} done, {len(todo)} to do", flush=True)
    if not todo:
        return
    config = Bundle.from_pretrained(args.bundle).config
    count = config.n_drafts - 1
    cached = load_draft_cache(next(CACHE.glob("samples--qwen2.5-coder-0.5b-instruct-*.jsonl")))
    examples = {ex.id: ex for ex in bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, 50)}
    spec = config.verifier
    assert spec is not None, f"bundle {args.bundle} has no verifier"
    verifier = load_verifier(spec.model, spec.adapter, max_length=spec.max_length)
    options = {"max_new_tokens": args.max_new_tokens, "prefix_cache": 0, "float32_logits": True}
    strong = HFChatModel(model=STRONG, **options)
    with out.open("a", encoding="utf-8") as sink:
        for row in todo:
            samples = cached[row["id"]]["samples"][:count]
            line = measure(row, examples[row["id"]], samples, verifier, strong)
            line["bundle"] = str(Path(args.bundle).resolve())  # whose verifier scored it
            sink.write(json.dumps(line, ensure_ascii=False) + "\n")
            sink.flush()
            cont = line.get("continuation")
            print(
                f"{row['id']:24s} p={[round(p, 3) for p in (line['batch'] or {}).get('p', [])]} "
                f"best={line['best']}" + (f" continued {cont['wall_s']:.1f}s" if cont else ""),
                flush=True,
            )


if __name__ == "__main__":
    main()
