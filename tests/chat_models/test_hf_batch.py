"""HFChatModel batching and float32 logits, on a tiny random Qwen2 model in float32."""

from __future__ import annotations

import torch
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage

from spec_tool_node.chat_models.hf import HFChatModel
from tests.chat_models.test_speculative import qwen2
from tests.conftest import make_tokenizer

QUESTIONS = [
    "What's the weather in Paris in celsius?",
    "Current time",
    "hi",
    "The weather is sunny, 21 degrees. What's the weather in Paris?",
    "get_time zone",
]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


class Counter(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts = 0

    def on_chat_model_start(self, *args, **kwargs) -> None:
        self.starts += 1


def chat(batch_size: int) -> HFChatModel:
    tokenizer = make_tokenizer()
    return HFChatModel(
        model="tiny", loaded=(qwen2(tokenizer, seed=5), tokenizer), max_new_tokens=12,
        batch_size=batch_size, prefix_cache=0,
    )  # fmt: skip


def test_batch_replies_as_invoke_does_and_callbacks_see_every_input():
    model = chat(batch_size=2)  # 5 inputs: batches of 2, 2 and 1
    bound = model.bind_tools([TOOL])
    alone = [bound.invoke([HumanMessage(q)]) for q in QUESTIONS]
    counter = Counter()
    together = bound.batch([[HumanMessage(q)] for q in QUESTIONS], {"callbacks": [counter]})
    assert [m.response_metadata["raw_text"] for m in together] == [
        m.response_metadata["raw_text"] for m in alone
    ]
    assert [m.usage_metadata["input_tokens"] for m in together] == [
        m.usage_metadata["input_tokens"] for m in alone
    ]
    assert counter.starts == len(QUESTIONS)
    assert model._ready == {}  # every precomputed reply was picked up


def test_generate_many_binds_each_conversation_its_own_tools():
    model = chat(batch_size=4)
    tools = [[TOOL], None, [TOOL]]
    replies = model.invoke_many([[HumanMessage(q)] for q in QUESTIONS[:3]], tools)
    for question, tool_list, got in zip(QUESTIONS, tools, replies, strict=False):
        runnable = model.bind_tools(tool_list) if tool_list else model
        alone = runnable.invoke([HumanMessage(question)])
        assert got.response_metadata["raw_text"] == alone.response_metadata["raw_text"]
        assert got.usage_metadata["input_tokens"] == alone.usage_metadata["input_tokens"]


def test_float32_logits_keep_the_body_in_its_dtype():
    tokenizer = make_tokenizer()
    model = qwen2(tokenizer, seed=6).to(torch.bfloat16)
    HFChatModel(model="tiny", loaded=(model, tokenizer), float32_logits=True)
    ids = torch.tensor([tokenizer("Current time", add_special_tokens=False).input_ids])
    with torch.inference_mode():
        logits = model(ids).logits
    assert logits.dtype == torch.float32
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert model.get_output_embeddings().weight.dtype == torch.float32


def test_assisted_generation_replies_as_the_model_alone():
    """A smaller model drafting tokens ahead (transformers' assisted generation) leaves the
    greedy reply as it is."""
    tokenizer = make_tokenizer()
    strong = qwen2(tokenizer, seed=7)
    helper = HFChatModel(
        model="tiny-helper", loaded=(qwen2(tokenizer, seed=8, hidden=32), tokenizer)
    )
    alone = HFChatModel(model="tiny", loaded=(strong, tokenizer), max_new_tokens=16)
    assisted = HFChatModel(
        model="tiny", loaded=(strong, tokenizer), max_new_tokens=16, assistant=helper
    )
    for question in QUESTIONS[:3]:
        want = alone.invoke([HumanMessage(question)]).response_metadata["raw_text"]
        assert assisted.invoke([HumanMessage(question)]).response_metadata["raw_text"] == want
