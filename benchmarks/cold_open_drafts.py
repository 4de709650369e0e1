"""Training-side drafts above the cold-prompt limit that a score could accept, and their fate.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cold_open_drafts.py \
        --cache benchmarks/results/probe/cache_train \
        --cache benchmarks/results/first_decision/cache \
        --cache benchmarks/results/cold_prompt/cache \
        --bundle benchmarks/results/default_bundle --out benchmarks/results/cold_prompt/open_drafts

``max_uncached_prompt_tokens`` was chosen on mode-F continuations (``cold_prompt_limit.py``),
where no draft is ever accepted. In a scored mode (D) a draft on a long cold prompt can still pay
by being accepted, so before the limit was extended to those decisions this asks, on
training-side single-turn and first-decision drafts whose prompt is longer than the limit: which
the bundle would score at all (with ``accept_calls`` off a call goes to the strong model
unscored), what the bundle's verifier gives them, whether an accepted one is right (BFCL's
answers), and whether the strong model is right there (it is run on each accepted draft's
example; the caches hold its action only for some). A prompt's length bounds what the strong
model would read cold; an earlier example with the same tools may have cached part of it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spec_tool_node.actions import RespondAction, ToolCallsAction, tool_schemas
from spec_tool_node.bfcl.data import category_of, single_turn_examples
from spec_tool_node.bfcl.matching import matches
from spec_tool_node.bundle import Bundle
from spec_tool_node.cascade import strong_action
from spec_tool_node.evaluation.collector import rebuild_message
from spec_tool_node.jsonl import read_records, write_text


def long_drafts(caches: list[Path], limit: int) -> dict[str, dict]:
    """The greedy drafts of every cache whose prompt is longer than ``limit``, by example id."""
    found: dict[str, dict] = {}
    for cache in caches:
        (path,) = cache.glob("proposer--*.jsonl")
        for record in read_records(path, strict=True):
            draft = record.get("draft") or record["drafts"][0]
            if draft["input_tokens"] > limit:
                found.setdefault(record["id"], draft)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, action="append", required=True)
    parser.add_argument("--bundle", type=Path, default=Path("benchmarks/results/default_bundle"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    config = Bundle.from_pretrained(args.bundle).config
    limit = config.max_uncached_prompt_tokens
    if limit is None or config.verifier is None or config.strong is None:
        raise SystemExit(f"{args.bundle}: needs a cold-prompt limit, a verifier and a strong model")
    drafts = long_drafts(args.cache, limit)
    examples = {}
    for category in sorted({category_of(i)[0] for i in drafts if "/" not in i}):
        examples |= {e.id: e for e in single_turn_examples(category) if e.id in drafts}

    from spec_tool_node.chat_models.hf import HFChatModel
    from spec_tool_node.verifiers.probe import load_verifier

    verifier = load_verifier(config.verifier.model, config.verifier.adapter)
    strong = HFChatModel(model=config.strong.model, float32_logits=True)
    rows = []
    for key, draft in sorted(drafts.items(), key=lambda kv: kv[1]["input_tokens"]):
        row = {"id": key, "prompt_tokens": draft["input_tokens"]}
        example = examples.get(key)
        message = rebuild_message(draft)
        tools = tool_schemas(example.tools) if example else {}
        action, invalid = strong_action(message, tools) if example else (None, None)
        call = bool(message.tool_calls) if action is None else isinstance(action, ToolCallsAction)
        row["draft"] = "invalid" if invalid else ("call" if call else "answer")
        if call or invalid or example is None:
            row["scored"] = False  # a call (accept_calls off) or an invalid draft: no score
            rows.append(row)
            continue
        assert isinstance(action, RespondAction)
        (verdict,) = verifier.score_batch(example.messages, example.tools, [action])
        accepted = verdict.p_accept >= config.accept_threshold(multi_turn=False)
        row |= {"scored": True, "p_accept": round(verdict.p_accept, 4), "accepted": accepted}
        row["draft_right"] = matches(action, example.gold, example.tools)
        reply = strong.bind_tools(example.tools).invoke(example.messages)
        row["strong_right"] = matches(strong_action(reply, tools)[0], example.gold, example.tools)
        rows.append(row)
        print(json.dumps(row), flush=True)

    scored = [r for r in rows if r["scored"]]
    accepted = [r for r in scored if r["accepted"]]
    lines = [
        f"{len(rows)} drafts with a prompt above max_uncached_prompt_tokens ({limit}): "
        f"{sum(r['draft'] == 'call' for r in rows)} calls (not scored: accept_calls "
        f"{config.accept_calls}), {sum(r['draft'] == 'invalid' for r in rows)} invalid, "
        f"{len(scored)} answers scored",
        f"accepted at {config.threshold}: {len(accepted)}; "
        f"right {sum(r['draft_right'] for r in accepted)}; "
        f"the strong model right on the same examples: {sum(r['strong_right'] for r in accepted)}",
    ]
    table = ["| id | prompt tokens | draft | p(ACCEPT) | accepted | draft right | strong right |"]
    table.append("|---|---:|---|---:|---|---|---|")
    for r in rows:
        cells = [r.get(k, "") for k in ("p_accept", "accepted", "draft_right", "strong_right")]
        table.append(
            f"| {r['id']} | {r['prompt_tokens']} | {r['draft']} | "
            + " | ".join(map(str, cells))
            + " |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_text(args.out / "summary.md", "\n".join([*table, "", *lines]) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
