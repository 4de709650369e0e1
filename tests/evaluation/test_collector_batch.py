"""Batched collection: local models write greedy drafts and strong actions in left-padded batches
and the cache holds the same actions as one example at a time (tiny random Qwen2, float32)."""

from __future__ import annotations

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.evaluation import collect
from tests.chat_models.test_speculative import qwen2
from tests.conftest import make_tokenizer
from tests.evaluation.toy import examples


def models() -> tuple[HFChatModel, HFChatModel]:
    tokenizer = make_tokenizer()
    options = {"max_new_tokens": 10, "prefix_cache": 0, "batch_size": 3}
    return (
        HFChatModel(model="cheap", loaded=(qwen2(tokenizer, seed=9), tokenizer), **options),
        HFChatModel(model="strong", loaded=(qwen2(tokenizer, seed=10), tokenizer), **options),
    )


def test_batched_collection_caches_the_actions_of_unbatched_collection(tmp_path):
    proposer, strong = models()
    cached = {}
    for batch_size in (1, 3):
        collection = collect(
            examples(), tmp_path / str(batch_size), proposer=proposer, strong=strong,
            modes="AB", progress=False, batch_size=batch_size,
        )  # fmt: skip
        cached[batch_size] = {
            i: (c.draft["raw_text"], c.draft["action"], c.strong["raw_text"], c.strong["action"])
            for i, c in collection.records.items()
        }
        assert all(c.draft["mean_logprob"] is not None for c in collection.records.values())
    assert cached[3] == cached[1] and len(cached[1]) == 4
