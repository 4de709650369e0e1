"""Mine greedy actions of a local model on BFCL training-side examples, batched, into a cache.

    nice -n 5 .venv/bin/python benchmarks/probe_mine.py --model qwen2.5-coder-1.5b-instruct \
        --role strong --categories live_simple,live_multiple,live_irrelevance --limit 80 \
        --cache benchmarks/results/probe/cache_train

The records have the evaluation collector's format (``{"id", "act": record}`` in
``strong--KEY.jsonl``, ``{"id", "draft": record}`` in ``proposer--KEY.jsonl``), so the
training-side cache can be simulated with ``spec-tool-node eval`` like the held-out one, and the
probe's labels can say whether deferring to the strong model would change the outcome. Prompts are
grouped by length and decoded greedily in left-padded batches (a 2-core CPU gets several times the
throughput of one prompt at a time); each batch is appended as it finishes, so a rerun resumes.
A batch decodes the way ``HFChatModel`` decodes one prompt, up to the numerical effect of padding.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from langchain_core.messages import AIMessage, convert_to_messages

from spec_tool_node import bfcl
from spec_tool_node.actions import tool_schemas
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.chat_models.speculative import cut_at_end, generate_batch
from spec_tool_node.chat_models.templates import parse_model_reply, render_prompt
from spec_tool_node.evaluation.collector import message_record, model_key
from spec_tool_node.training.data import load_draft_cache


def mine_batch(chat: HFChatModel, examples: list, max_new_tokens: int) -> list[dict]:
    """Greedy replies to ``examples`` in one left-padded ``generate``, as cache records."""
    tokenizer, model = chat.tokenizer, chat.hf_model
    tool_lists = [
        [{"type": "function", "function": f} for f in tool_schemas(e.tools).values()]
        for e in examples
    ]
    prompts = [
        render_prompt(tokenizer, convert_to_messages(e.messages), tools or None)
        for e, tools in zip(examples, tool_lists, strict=True)
    ]
    end_ids = chat._end_token_ids
    start = time.perf_counter()
    out, width = generate_batch(
        model,
        tokenizer,
        [tokenizer(p, add_special_tokens=False).input_ids for p in prompts],
        max_new_tokens=max_new_tokens,
        end_ids=end_ids,
    )
    wall = (time.perf_counter() - start) / len(examples)
    records = []
    for row, (ex, prompt, tools) in enumerate(zip(examples, prompts, tool_lists, strict=True)):
        generated = cut_at_end(out.sequences[row, width:].tolist(), end_ids)
        length = len(generated)
        body = generated[:-1] if generated and generated[-1] in end_ids else generated
        parsed = parse_model_reply(tokenizer, tokenizer.decode(body), prompt, tools or None)
        prompt_len = len(tokenizer(prompt, add_special_tokens=False).input_ids)
        message = AIMessage(
            content=parsed.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata={
                "input_tokens": prompt_len,
                "output_tokens": length,
                "total_tokens": prompt_len + length,
            },
            response_metadata={"model_name": chat.model},
        )
        records.append(
            message_record(message, tool_schemas(ex.tools), wall_s=wall, model_name=chat.model)
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", required=True, help="asset name, folder or hub id")
    parser.add_argument("--role", choices=["proposer", "strong"], required=True)
    parser.add_argument("--categories", required=True, help="comma-separated live_* categories")
    parser.add_argument("--limit", type=int, help="first N examples per category")
    parser.add_argument("--skip", type=int, default=0, help="skip the first N per category")
    parser.add_argument(
        "--drafts",
        help="JSONL draft cache: only examples with a valid draft there, the wrong ones first "
        "(what deferral labels and the threshold choice need)",
    )
    parser.add_argument("--cache", type=Path, required=True, help="cache folder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    examples = []
    for category in args.categories.split(","):
        chosen = bfcl.load_split("train", [category])[args.skip :]
        examples += chosen[: args.limit] if args.limit else chosen
    path = args.cache / f"{args.role}--{model_key(args.model)}.jsonl"
    field = "act" if args.role == "strong" else "draft"
    done = load_draft_cache(path)
    todo = [e for e in examples if e.id not in done]
    if args.drafts:
        drafts = load_draft_cache(args.drafts)
        todo = [e for e in todo if drafts.get(e.id, {}).get("valid")]
        todo.sort(key=lambda e: bool(drafts[e.id].get("right")))  # stable: wrong drafts first
    print(f"{len(examples)} examples, {len(todo)} to do -> {path}", flush=True)
    chat = HFChatModel(model=args.model, max_new_tokens=args.max_new_tokens, prefix_cache=0)
    # Length-sorted batches inside chunks of 4 batches: little padding, and the priority order
    # of ``--drafts`` still holds chunk by chunk.
    chunk = 4 * args.batch_size
    with path.open("a", encoding="utf-8") as f:
        for c in range(0, len(todo), chunk):
            part = sorted(todo[c : c + chunk], key=lambda e: len(json.dumps(e.messages)))
            for b in range(0, len(part), args.batch_size):
                batch = part[b : b + args.batch_size]
                start = time.perf_counter()
                for ex, record in zip(
                    batch, mine_batch(chat, batch, args.max_new_tokens), strict=True
                ):
                    f.write(json.dumps({"id": ex.id, field: record}, ensure_ascii=False) + "\n")
                f.flush()
                print(
                    f"{c + b + len(batch)}/{len(todo)} ({time.perf_counter() - start:.1f} s "
                    f"for {len(batch)})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
