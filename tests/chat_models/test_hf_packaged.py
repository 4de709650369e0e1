"""HFChatModel on the real packaged models: a tool call from SmolLM2 and from Qwen 0.5B."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.chat_models.templates import template_supports_tools


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: the city name, e.g. Paris
        unit: celsius or fahrenheit
    """
    return f"21 degrees {unit} in {city}"


@pytest.mark.packaged
def test_smollm2_smoke_real_model_with_tools():
    """The CI smoke test: a real packaged model, the tool fallback prompt, a parsed reply."""
    chat = HFChatModel(model="smollm2-135m-instruct", max_new_tokens=48)
    assert not template_supports_tools(chat.tokenizer)  # SmolLM2's template has no tools
    reply = chat.bind_tools([get_weather]).invoke(
        [HumanMessage("What's the weather in Paris in celsius?")], return_logprobs=True
    )
    assert isinstance(reply, AIMessage)
    assert reply.tool_calls or reply.invalid_tool_calls or reply.content
    assert reply.usage_metadata["input_tokens"] > 100  # the tool description is in the prompt
    assert 0 < reply.usage_metadata["output_tokens"] <= 48
    assert reply.response_metadata["model_name"] == "smollm2-135m-instruct"
    assert (
        len(reply.response_metadata["logprobs"]["content"]) == reply.usage_metadata["output_tokens"]
    )


@pytest.mark.slow
@pytest.mark.packaged
def test_qwen_05b_calls_get_weather_for_paris():
    chat = HFChatModel(model="qwen2.5-coder-0.5b-instruct", max_new_tokens=64)
    assert template_supports_tools(chat.tokenizer)
    reply = chat.bind_tools([get_weather]).invoke(
        [HumanMessage("What's the weather in Paris in celsius?")]
    )
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"], reply
    assert reply.tool_calls[0]["args"]["city"] == "Paris"
    assert reply.response_metadata["finish_reason"] == "tool_calls"
