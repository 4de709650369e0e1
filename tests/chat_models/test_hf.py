"""HFChatModel on a tiny random-initialised model built (and taught one reply) inside the test."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from peft import LoraConfig, get_peft_model

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.chat_models.loading import load_pretrained
from spec_tool_node.chat_models.templates import (
    ReplyRenderError,
    render_prompt,
    render_reply,
    template_supports_tools,
)
from tests.conftest import PLAIN_TEMPLATE, make_model, make_tokenizer, teach

CALL = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    "\n</tool_call>"
)
QUESTION = "What's the weather in Paris in celsius?"


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


@tool
def get_time(zone: str) -> str:
    """Current time in a time zone."""
    return "12:00"


@pytest.fixture(scope="module")
def taught() -> HFChatModel:
    """A tiny model overfitted to answer QUESTION (with both tools bound) with CALL."""
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    chat = HFChatModel(model="tiny", loaded=(model, tokenizer), max_new_tokens=48)
    prompt = chat._prompt(
        [HumanMessage(QUESTION)], chat.bind_tools([get_weather, get_time]).kwargs["tools"], None
    )
    teach(model, tokenizer, prompt, CALL)
    return chat


def test_tools_appear_in_rendered_prompt(tiny_tokenizer):
    bound = HFChatModel(model="t", loaded=(make_model(tiny_tokenizer), tiny_tokenizer)).bind_tools(
        [get_weather]
    )
    prompt = render_prompt(tiny_tokenizer, [HumanMessage("hi")], bound.kwargs["tools"])
    assert template_supports_tools(tiny_tokenizer)
    assert '"name": "get_weather"' in prompt and "Current weather for a city." in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_tool_support_is_remembered_beside_the_tokenizer_not_on_it():
    from spec_tool_node.chat_models import templates

    tokenizer = make_tokenizer(PLAIN_TEMPLATE)
    before = vars(tokenizer).copy()
    assert not template_supports_tools(tokenizer)
    assert vars(tokenizer).keys() == before.keys()  # nothing written onto the tokenizer
    assert templates._SUPPORTS_TOOLS[tokenizer] is False
    count = len(templates._SUPPORTS_TOOLS)
    del tokenizer
    gc.collect()
    assert len(templates._SUPPORTS_TOOLS) == count - 1  # forgotten with the tokenizer


def test_template_without_tools_uses_documented_fallback():
    tokenizer = make_tokenizer(PLAIN_TEMPLATE)
    chat = HFChatModel(model="t", loaded=(make_model(tokenizer), tokenizer))
    tools = chat.bind_tools([get_weather]).kwargs["tools"]
    history = [
        SystemMessage("Be brief."),
        HumanMessage(QUESTION),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1", name="get_weather"),
    ]
    prompt = render_prompt(tokenizer, history, tools)
    assert not template_supports_tools(tokenizer)
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\nYou can call the following tools.")
    assert '"name": "get_weather"' in prompt
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        in prompt
    )
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>" in prompt


def test_a_reply_renders_right_after_its_prompt_through_end_of_turn(tiny_tokenizer):
    reply = AIMessage(
        "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c"}]
    )
    history = [HumanMessage(QUESTION)]
    prompt, completion = render_reply(tiny_tokenizer, history, [], reply)
    assert prompt == render_prompt(tiny_tokenizer, history, [])
    assert completion.startswith("<tool_call>\n") and completion.endswith("</tool_call><|im_end|>")


def test_a_template_that_rewrites_earlier_turns_cannot_render_a_reply():
    counting = "{{ messages | length }} turns\n{% for m in messages %}{{ m.content }}\n{% endfor %}"
    with pytest.raises(ReplyRenderError, match="does not start with the inference prompt"):
        render_reply(make_tokenizer(counting), [HumanMessage("hi")], [], AIMessage("ok"))


def test_history_with_tool_calls_renders_natively(tiny_tokenizer):
    history = [
        HumanMessage(QUESTION),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1"),
    ]
    prompt = render_prompt(tiny_tokenizer, history, [])
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        in prompt
    )
    assert "<tool_response>\nsunny\n</tool_response>" in prompt


def test_generated_tool_call_is_parsed_with_usage(taught):
    reply = taught.bind_tools([get_weather, get_time]).invoke([HumanMessage(QUESTION)])
    assert reply.tool_calls == [
        {
            "name": "get_weather",
            "args": {"city": "Paris", "unit": "celsius"},
            "id": reply.tool_calls[0]["id"],
            "type": "tool_call",
        }
    ]
    assert reply.tool_calls[0]["id"].startswith("call_")
    assert reply.invalid_tool_calls == []
    usage = reply.usage_metadata
    prompt_len = len(
        taught.tokenizer(
            taught._prompt(
                [HumanMessage(QUESTION)],
                taught.bind_tools([get_weather, get_time]).kwargs["tools"],
                None,
            ),
            add_special_tokens=False,
        ).input_ids
    )
    assert usage["input_tokens"] == prompt_len
    assert usage["output_tokens"] == len(
        taught.tokenizer(CALL + "<|im_end|>", add_special_tokens=False).input_ids
    )
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert reply.response_metadata["model_name"] == "tiny"
    assert reply.response_metadata["finish_reason"] == "tool_calls"


def test_a_follow_up_turn_prefills_only_what_is_new_and_decodes_the_same(tiny_tokenizer):
    model = make_model(tiny_tokenizer)
    tools, opts = [get_weather, get_time], {"max_new_tokens": 12, "return_logprobs": True}

    def chat(**kw):
        return HFChatModel(model="t", loaded=(model, tiny_tokenizer), **kw).bind_tools(tools)

    cached, plain = chat(**opts), chat(**opts, prefix_cache=0)
    first = [HumanMessage(QUESTION)]
    reply = cached.invoke(first)
    assert reply.usage_metadata["input_token_details"]["cache_read"] == 0
    call_c1 = {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}
    follow = [
        *first,
        AIMessage("", tool_calls=[call_c1]),
        ToolMessage("sunny", tool_call_id="c1"),
        HumanMessage("And in Lyon?"),
    ]
    again, fresh = cached.invoke(follow), plain.invoke(follow)
    read = again.usage_metadata["input_token_details"]["cache_read"]
    assert reply.usage_metadata["input_tokens"] <= read < again.usage_metadata["input_tokens"]
    assert fresh.usage_metadata["input_token_details"]["cache_read"] == 0
    assert again.content == fresh.content
    assert [t["token"] for t in again.response_metadata["logprobs"]["content"]] == [
        t["token"] for t in fresh.response_metadata["logprobs"]["content"]
    ]
    assert again.response_metadata["logprobs"]["mean"] == pytest.approx(
        fresh.response_metadata["logprobs"]["mean"], abs=1e-4
    )
    same = cached.invoke(follow)  # the whole prompt is cached now: only its last token is fed
    details, tokens = (
        same.usage_metadata["input_token_details"],
        same.usage_metadata["input_tokens"],
    )
    assert details["cache_read"] == tokens - 1


def test_uncached_prompt_tokens_counts_what_no_kept_prefix_supplies(tiny_tokenizer):
    """What a call would read, told without reading: the whole prompt at first, after a reply
    only what the next prompt adds (what the call then reads), nothing with no cache kept."""
    model = make_model(tiny_tokenizer)
    tools = [get_weather, get_time]
    chat = HFChatModel(model="t", loaded=(model, tiny_tokenizer), max_new_tokens=8)
    first = [HumanMessage(QUESTION)]
    before = chat.uncached_prompt_tokens(first, tools)
    reply = chat.bind_tools(tools).invoke(first)
    assert before == reply.usage_metadata["input_tokens"]
    follow = [*first, reply, HumanMessage("And in Lyon?")]
    ahead = chat.uncached_prompt_tokens(follow, tools)
    again = chat.bind_tools(tools).invoke(follow).usage_metadata
    assert 0 < ahead == again["input_tokens"] - again["input_token_details"]["cache_read"]
    assert ahead < before
    assert chat.uncached_prompt_tokens(follow, tools) == 0  # kept whole after that call
    chat.clear_prefix_cache()
    assert chat.uncached_prompt_tokens(follow, tools) == again["input_tokens"]


def test_prefix_cache_keeps_the_latest_state_of_each_conversation(tiny_tokenizer):
    """A conversation whose next prompt does not extend its last reply token for token (the
    template renders a call its own way) keeps a new prefix per decision; with two kept, a
    second conversation of two decisions must not push the first one out: a third conversation
    opening as the first did then finds that opening cached."""
    chat = HFChatModel(
        model="t",
        loaded=(make_model(tiny_tokenizer), tiny_tokenizer),
        max_new_tokens=3,
        prefix_cache=2,
    )

    def decisions(system: str, question: str, steps: int) -> None:
        messages = [SystemMessage(system), HumanMessage(question)]
        for step in range(steps):
            chat.invoke(messages)  # keeps prompt + reply; the next prompt has another reply
            messages = [*messages, AIMessage(f"step {step} done"), HumanMessage("Go on.")]

    decisions("You plan trips. " * 12, "Book Paris.", 3)
    decisions("You answer sums. " * 12, "Add 2 and 3.", 2)
    opening = [SystemMessage("You plan trips. " * 12), HumanMessage("Book Rome.")]
    _, _, ids = chat._prompt_ids(opening, None)
    _, _, first = chat._prompt_ids([SystemMessage("You plan trips. " * 12)], None)
    assert chat.uncached_prompt_tokens(opening) < len(ids) - len(first) + 8
    assert len(chat._prefixes) == 2


def test_length_finish_reason_when_budget_runs_out(taught):
    reply = taught.bind_tools([get_weather, get_time]).invoke(
        [HumanMessage(QUESTION)], max_new_tokens=12
    )
    assert reply.response_metadata["finish_reason"] == "length"
    assert reply.usage_metadata["output_tokens"] == 12
    assert (
        reply.tool_calls == [] and len(reply.invalid_tool_calls) == 1
    )  # a cut-off call is invalid, not an error


def test_logprobs_and_hidden_state_shapes(taught):
    reply = taught.bind_tools([get_weather, get_time]).invoke(
        [HumanMessage(QUESTION)], return_logprobs=True, hidden_layers=(0, 2)
    )
    logprobs = reply.response_metadata["logprobs"]
    assert len(logprobs["content"]) == reply.usage_metadata["output_tokens"]
    assert all(t["logprob"] <= 0 for t in logprobs["content"])
    assert logprobs["mean"] > -0.5  # the taught reply is confident
    states = reply.response_metadata["hidden_states"]
    assert sorted(states) == ["0", "2"]
    assert all(len(v) == taught.hf_model.config.hidden_size for v in states.values())


def test_n_sampled_replies(taught):
    tools = taught.bind_tools([get_weather, get_time]).kwargs["tools"]
    result = taught.generate(
        [[HumanMessage(QUESTION)]],
        n=3,
        do_sample=True,
        temperature=1.5,
        return_logprobs=True,
        tools=tools,
    )
    generations = result.generations[0]
    assert len(generations) == 3
    for g in generations:
        assert isinstance(g.message, AIMessage)
        assert (
            len(g.message.response_metadata["logprobs"]["content"])
            == g.message.usage_metadata["output_tokens"]
        )


def test_teacher_forcing_agrees_with_own_greedy_output(taught):
    tools = [get_weather, get_time]
    score = taught.score_continuation([HumanMessage(QUESTION)], CALL, tools=tools)
    assert score.fully_agreed and score.agreed == len(score.token_ids)
    assert len(score.logprobs) == len(score.greedy_ids) == len(score.token_ids)
    assert score.next_greedy_id == taught.tokenizer.convert_tokens_to_ids("<|im_end|>")
    other = taught.score_continuation(
        [HumanMessage(QUESTION)], CALL.replace("Paris", "Lyon"), tools=tools
    )
    assert 0 < other.agreed < len(other.token_ids)
    assert other.mean_logprob < score.mean_logprob


async def test_async_does_not_block_the_event_loop(taught):
    bound = taught.bind_tools([get_weather, get_time])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    replies = await asyncio.gather(*(bound.ainvoke([HumanMessage(QUESTION)]) for _ in range(2)))
    elapsed = time.perf_counter() - start
    task.cancel()
    assert all(r.tool_calls[0]["name"] == "get_weather" for r in replies)
    assert ticks > elapsed * 100  # the loop kept ticking while the model generated


def test_bad_generation_options(taught):
    with pytest.raises(TypeError, match="unknown generation options"):
        taught.invoke("hi", temprature=0.5)
    with pytest.raises(ValueError, match="n > 1 needs do_sample=True"):
        taught.invoke("hi", n=2)


def test_unknown_model_name_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"not an offline asset \(qwen2.5-coder-0.5b-instruct"):
        load_pretrained("no-such-org/no-such-model")


def test_local_folder_and_peft_adapter(tmp_path, tiny_tokenizer, tiny_model):
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    tiny_model.save_pretrained(base_dir)
    tiny_tokenizer.save_pretrained(base_dir)
    peft_model = get_peft_model(
        tiny_model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.save_pretrained(adapter_dir)
    base = HFChatModel(model=str(base_dir), dtype="float32")
    adapted = HFChatModel(model=str(base_dir), adapter=str(adapter_dir), dtype="float32")
    a = base.score_continuation([HumanMessage("hi")], "sunny")
    b = adapted.score_continuation([HumanMessage("hi")], "sunny")
    assert a.token_ids == b.token_ids and a.logprobs != b.logprobs
    with pytest.raises(ValueError, match="adapter folder"):
        HFChatModel(model=str(base_dir), adapter=str(tmp_path / "missing"))


def test_openai_dicts_render_like_langchain_messages(tiny_tokenizer):
    lc = [
        HumanMessage(QUESTION),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1"),
    ]
    openai = [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]
    assert render_prompt(tiny_tokenizer, openai, []) == render_prompt(tiny_tokenizer, lc, [])


def test_bind_tools_accepts_pydantic_models_and_openai_dicts(tiny_tokenizer):
    from pydantic import BaseModel, Field

    class GetTime(BaseModel):
        """Current time in a time zone."""

        zone: str = Field(description="IANA zone name")

    as_dict = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    chat = HFChatModel(model="t", loaded=(make_model(tiny_tokenizer), tiny_tokenizer))
    tools = chat.bind_tools([GetTime, as_dict]).kwargs["tools"]
    prompt = render_prompt(tiny_tokenizer, [HumanMessage("hi")], tools)
    assert (
        '"name": "GetTime"' in prompt
        and "IANA zone name" in prompt
        and '"name": "get_weather"' in prompt
    )


def test_parse_response_is_used_when_the_tokenizer_has_a_response_template(
    tiny_tokenizer, monkeypatch
):
    from spec_tool_node.chat_models.templates import parse_model_reply

    seen = {}

    def parse_response(text, prefix, tools):
        seen.update(text=text, prefix=prefix)
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_time", "arguments": {"zone": "UTC"}}}
            ],
        }

    tiny_tokenizer.response_template = {"fields": {}}  # presence is what matters here
    monkeypatch.setattr(tiny_tokenizer, "parse_response", parse_response, raising=False)
    parsed = parse_model_reply(tiny_tokenizer, "raw reply", "PROMPT", None)
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == [("get_time", {"zone": "UTC"})]
    assert seen == {"text": "raw reply", "prefix": "PROMPT"}

    def no_match(*args, **kwargs):
        raise ValueError("reply does not match the response template")

    monkeypatch.setattr(tiny_tokenizer, "parse_response", no_match, raising=False)
    parsed = parse_model_reply(
        tiny_tokenizer, CALL, "PROMPT", None
    )  # falls back to the known formats
    assert [c["name"] for c in parsed.tool_calls] == ["get_weather"]
