"""ParsedToolCalls and ServedVerifier against a real llama.cpp server on Qwen2.5-Coder-0.5B."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_function

from spec_tool_node.actions import ToolCall, ToolCallsAction
from spec_tool_node.chat_models.parsed import with_parsed_tool_calls
from spec_tool_node.verifiers.served import ServedVerifier
from tests.llama_server import llama_server

pytestmark = [pytest.mark.slow, pytest.mark.packaged]
MODEL = "qwen2.5-coder-0.5b-instruct"


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: the city name, e.g. Paris
        unit: "celsius" or "fahrenheit"
    """
    return f"{city}: 21 degrees {unit}"


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with llama_server(MODEL, "qwen-0.5b", log) as base_url:  # skips without the remote extra
        from langchain_openai import ChatOpenAI

        yield ChatOpenAI(
            base_url=base_url, model="qwen-0.5b", api_key="none", temperature=0, max_tokens=96
        )


QUESTION = [HumanMessage("What's the weather in Paris in celsius?")]


def test_served_reply_gets_its_text_tool_call_parsed(chat):
    raw = chat.bind_tools([get_weather]).invoke(QUESTION)
    print("raw reply:", repr(raw.content), raw.tool_calls)
    reply = with_parsed_tool_calls(chat).bind_tools([get_weather]).invoke(QUESTION)
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"]
    assert reply.tool_calls[0]["args"]["city"] == "Paris"
    assert reply.usage_metadata["input_tokens"] > 50
    assert reply.usage_metadata["output_tokens"] > 0
    assert reply.response_metadata["model_name"] == "qwen-0.5b"


async def test_async_path_on_the_real_server(chat):
    reply = await with_parsed_tool_calls(chat).bind_tools([get_weather]).ainvoke(QUESTION)
    assert reply.tool_calls[0]["name"] == "get_weather"


def test_served_verifier_reads_label_logprobs(chat):
    verifier = ServedVerifier(chat)
    right = ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})])
    verdict = verifier.score(QUESTION, [convert_to_openai_function(get_weather)], right)
    print("p_accept:", verdict.p_accept)
    assert 0.0 < verdict.p_accept <= 1.0  # the labels are among the top tokens of a real model
    assert verdict.record.input_tokens > 50 and verdict.record.output_tokens == 1
