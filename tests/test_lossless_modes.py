"""Mode F (lossless), the speculative fallback and mode G (gate) through the real node.

The strong model is a tiny random Qwen2 taught one tool call, loaded in a real ``HFChatModel``:
continuing a draft is what only a local model can do, so it is the real thing here.
"""

from __future__ import annotations

import math

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CallRecord, CostModel, TokenPrice
from spec_tool_node.errors import ConfigError
from spec_tool_node.node import SpeculativeActionNode
from spec_tool_node.verifiers.gate import argument_value_mask, gate_signal, value_logprobs
from tests.chat_models.test_speculative import qwen2
from tests.conftest import CORPUS, make_tokenizer, teach
from tests.scripted import ScriptedChatModel, ScriptedVerifier, call

QUESTION = [HumanMessage("What's the weather in Paris in celsius?")]


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


@pytest.fixture(scope="module")
def strong() -> HFChatModel:
    """A tiny model taught to answer QUESTION with CORPUS[0]'s get_weather call."""
    tokenizer = make_tokenizer()
    model = qwen2(tokenizer, seed=4)
    chat = HFChatModel(model="tiny-strong", loaded=(model, tokenizer), max_new_tokens=48)
    tools = chat.bind_tools([get_weather]).kwargs["tools"]
    teach(model, tokenizer, chat._prompt(QUESTION, tools, None), CORPUS[0], steps=60)
    return chat


def decide_once(node: SpeculativeActionNode):
    out = node.invoke({"messages": QUESTION})
    return out["messages"][-1], out["spec_ledger"][-1]


def test_mode_f_refuses_a_strong_model_that_cannot_continue_a_draft():
    cheap, api = ScriptedChatModel(name="cheap"), ScriptedChatModel(name="api-strong")
    with pytest.raises(ConfigError, match=r"mode F \(lossless\).*vLLM.*speculative"):
        SpeculativeActionNode(
            proposer=cheap, strong=api, tools=[get_weather], config=CascadeConfig(mode="lossless")
        )


def test_mode_f_action_is_mode_a_action_whatever_the_draft(strong):
    a_message, a_turn = decide_once(
        SpeculativeActionNode(strong=strong, tools=[get_weather], config=CascadeConfig(mode="A"))
    )
    assert a_turn.action.startswith('{"tool_calls": [{"arguments": {"city": "Paris"')

    # the strong model's own reply as the draft (a local proposer's raw text): kept whole
    same = HFChatModel(model="tiny-cheap", loaded=(strong.hf_model, strong.tokenizer))
    node = SpeculativeActionNode(
        proposer=same, strong=strong, tools=[get_weather], config=CascadeConfig(mode="F")
    )
    _, kept = decide_once(node)
    assert (kept.path, kept.action, kept.full_draft_kept) == ("accepted", a_turn.action, True)
    assert kept.kept_tokens == kept.draft_tokens > 0
    assert [c.purpose for c in kept.calls] == ["draft", "continue"]
    assert kept.calls[1].output_tokens == 0 and kept.calls[1].kept_tokens == kept.kept_tokens

    # a wrong draft from an API-like proposer: rendered with the template, partly rewritten
    wrong = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Lyon")])
    node = SpeculativeActionNode(
        proposer=wrong, strong=strong, tools=[get_weather], config=CascadeConfig(mode="F")
    )
    message, fixed = decide_once(node)
    assert (fixed.path, fixed.action, fixed.full_draft_kept) == ("continued", a_turn.action, False)
    assert 0 < fixed.kept_tokens < fixed.draft_tokens
    assert message.tool_calls[0]["args"] == a_message.tool_calls[0]["args"]
    assert message.response_metadata["spec"]["kept_tokens"] == fixed.kept_tokens


@pytest.mark.parametrize("speculative", [True, False])
def test_rejected_draft_is_continued_by_the_strong_model(strong, speculative):
    """Mode D's fallback continues the rejected draft when the strong model can; the action is
    the strong model's own either way."""
    cheap = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Lyon")])
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=strong,
        verifier=ScriptedVerifier([0.1]),
        tools=[get_weather],
        config=CascadeConfig(mode="D", speculative_fallback=speculative),
    )
    _, turn = decide_once(node)
    assert turn.path == "fallback" and '"city": "Paris"' in turn.action
    assert turn.calls[-1].purpose == ("continue" if speculative else "act")
    assert (turn.kept_tokens is not None) == speculative


def _with_logprobs(message: AIMessage, text: str, value_logprob: float) -> AIMessage:
    """A draft carrying per-token log-probs: -0.01 for syntax, ``value_logprob`` for values."""
    tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
    mask = argument_value_mask(text)
    logprobs = [
        {"token": t, "logprob": value_logprob if any(mask[i * 3 : i * 3 + 3]) else -0.01}
        for i, t in enumerate(tokens)
    ]
    return message.model_copy(update={"response_metadata": {"logprobs": {"content": logprobs}}})


@pytest.mark.parametrize(("value_logprob", "path"), [(-0.05, "accepted"), (-2.0, "fallback")])
def test_mode_g_gates_on_the_argument_values_only(value_logprob, path):
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>'
    draft = _with_logprobs(call("get_weather", city="Lyon"), text, value_logprob)
    cheap = ScriptedChatModel(name="cheap", script=[draft])
    api = ScriptedChatModel(name="strong", script=[call("get_weather", city="Paris")])
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=api,
        tools=[get_weather],
        config=CascadeConfig(mode="gate", gate_threshold=0.9),
    )
    _, turn = decide_once(node)
    assert turn.path == path
    assert turn.p_accept == pytest.approx(math.exp(value_logprob))
    assert cheap.kwargs_seen[0]["logprobs"] is True  # asked for the drafting pass's log-probs
    assert [c.purpose for c in turn.calls] == ["draft"] + (["act"] if path == "fallback" else [])


def test_argument_value_mask_marks_values_not_keys_or_syntax():
    text = (
        '```json\n{"name": "f", "arguments": {"a": 10, "b": "x\\"y", "c": [1, {"k": true}]}}\n```'
    )
    marked = "".join(c if m else "_" for c, m in zip(text, argument_value_mask(text), strict=True))
    assert marked.replace("_", " ").split() == ["10", '"x\\"y"', "[1", "{", "true}]"]
    assert value_logprobs(["ab", "c"], [-1.0, -2.0]) == []
    assert gate_signal(AIMessage("hi")) is None


def test_continuation_is_priced_by_the_work_it_did():
    """Per call with a prefill weight: read tokens at the weight, decoding steps at 1, relative
    to writing the same action from scratch; per token, input and output as they were."""
    continued = CallRecord(
        role="strong",
        model="s",
        purpose="continue",
        input_tokens=200 + 40,  # prompt + checked draft
        output_tokens=11,  # written after keeping 30 of the 40 draft tokens
        checked_tokens=40,
        kept_tokens=30,
    )
    share = (0.05 * 240 + 10) / (0.05 * 200 + 40)  # output 41 tokens: 40 steps from scratch
    assert CostModel(prefill_weight=0.05).cost(continued) == pytest.approx(share)
    assert CostModel().cost(continued) == 1.0  # no weight: a strong call is a strong call
    # 150 of the prompt's tokens came from a prefix cache: neither way reads them
    cached = continued.model_copy(update={"cached_tokens": 150})
    share = (0.05 * 90 + 10) / (0.05 * 50 + 40)
    assert CostModel(prefill_weight=0.05).cost(cached) == pytest.approx(share)
    prices = {r: TokenPrice(input=1.0, output=4.0) for r in ("strong", "cheap", "verifier")}
    tokens = CostModel(basis="tokens", prices=prices)
    assert tokens.cost(continued) == pytest.approx((240 + 4 * 11) / 1e6)
    assert tokens.baseline([continued]) == pytest.approx((200 + 4 * 41) / 1e6)


def test_mode_f_when_the_proposer_fails_the_strong_model_writes_alone(strong):
    broken = ScriptedChatModel(name="cheap", script=[RuntimeError("proposer down")])
    node = SpeculativeActionNode(
        proposer=broken, strong=strong, tools=[get_weather], config=CascadeConfig(mode="F")
    )
    _, turn = decide_once(node)
    assert (turn.path, turn.kept_tokens) == ("fallback", None)
    assert "proposer down" in turn.reject_reason and '"city": "Paris"' in turn.action
    assert [c.purpose for c in turn.calls] == ["draft", "act"]
