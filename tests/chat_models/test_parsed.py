"""ParsedToolCalls: text tool calls of a wrapped chat model become AIMessage.tool_calls."""

from __future__ import annotations

import json

import httpx
import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from spec_tool_node.chat_models.parsed import (
    ParsedToolCalls,
    parse_message,
    with_parsed_tool_calls,
)
from spec_tool_node.config import CascadeConfig
from spec_tool_node.node import SpecAgentState, SpeculativeActionNode
from tests.scripted import ScriptedChatModel, call, say

TEXT_CALL = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: the city name
        unit: celsius or fahrenheit
    """
    return f"{city}: 21 degrees {unit}"


def test_text_call_becomes_tool_call_keeping_usage_and_name():
    model = with_parsed_tool_calls(ScriptedChatModel(name="served", script=[say(TEXT_CALL)]))
    reply = model.bind_tools([get_weather]).invoke("Weather in Paris?")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"})
    ]
    assert reply.content == ""
    assert reply.usage_metadata["input_tokens"] == 10
    assert reply.usage_metadata["output_tokens"] == 5
    assert reply.response_metadata["model_name"] == "served"
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert reply.response_metadata["tool_calls_parsed_from_text"] is True


def test_tagged_and_fenced_forms_parse_too():
    tagged = f"<tool_call>\n{TEXT_CALL}\n</tool_call>"
    fenced = f"Let me check.\n```json\n{TEXT_CALL}\n```"
    model = with_parsed_tool_calls(ScriptedChatModel(script=[say(tagged), say(fenced)]))
    first, second = model.invoke("a"), model.invoke("b")
    assert first.tool_calls[0]["args"]["city"] == "Paris"
    assert second.tool_calls[0]["name"] == "get_weather"
    assert second.content == "Let me check."


def test_native_tool_calls_and_plain_answers_pass_through():
    native = call("get_weather", city="Rome")
    assert parse_message(native) is native
    plain = AIMessage("It is sunny in Paris.")
    assert parse_message(plain) is plain
    model = with_parsed_tool_calls(ScriptedChatModel(script=[native, say("Sunny.")]))
    assert model.invoke("a").tool_calls[0]["id"] == "id_get_weather"
    assert model.invoke("b").content == "Sunny."


def test_malformed_call_is_an_invalid_tool_call_not_an_exception():
    model = with_parsed_tool_calls(
        ScriptedChatModel(script=[say('{"name": "get_weather", "arguments": {"city": ')])
    )
    reply = model.invoke("a")
    assert reply.tool_calls == []
    assert reply.invalid_tool_calls[0]["name"] == "get_weather"


def test_bind_tools_forwards_the_wrapped_models_own_binding():
    inner = ScriptedChatModel(script=[say(TEXT_CALL)])
    model = with_parsed_tool_calls(inner)
    model.bind_tools([get_weather], tool_choice="any").invoke("a", temperature=0.1)
    seen = inner.kwargs_seen[0]
    assert seen["tool_choice"] == "any"
    assert seen["temperature"] == 0.1
    assert [t.name for t in seen["tools"]] == ["get_weather"]


def test_bind_tools_refuses_a_model_that_is_already_bound():
    class Piped(ScriptedChatModel):
        def bind_tools(self, tools, **kwargs):
            return super().bind_tools(tools, **kwargs) | RunnableLambda(lambda m: m)

    with pytest.raises(TypeError, match="wrap the model before binding"):
        ParsedToolCalls(chat_model=Piped()).bind_tools([get_weather])


async def test_async_path_parses():
    model = with_parsed_tool_calls(ScriptedChatModel(script=[say(TEXT_CALL)]))
    reply = await model.bind_tools([get_weather]).ainvoke("Weather in Paris?")
    assert reply.tool_calls[0]["args"] == {"city": "Paris", "unit": "celsius"}


def test_usage_callback_counts_the_call_once_under_the_wrapped_models_name():
    model = with_parsed_tool_calls(ScriptedChatModel(name="served", script=[say(TEXT_CALL)]))
    handler = UsageMetadataCallbackHandler()
    model.invoke("a", config={"callbacks": [handler]})
    assert handler.usage_metadata["served"]["input_tokens"] == 10
    assert model.model_name == "served"


def test_node_runs_the_parsed_call_through_toolnode():
    strong = with_parsed_tool_calls(
        ScriptedChatModel(name="strong", script=[say(TEXT_CALL), say("21 degrees in Paris.")])
    )
    builder = StateGraph(SpecAgentState)
    builder.add_node(
        "agent",
        SpeculativeActionNode(strong=strong, tools=[get_weather], config=CascadeConfig(mode="A")),
    )
    builder.add_node("tools", ToolNode([get_weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    out = builder.compile().invoke({"messages": [HumanMessage("Weather in Paris?")]})
    tool_message = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert tool_message.content == "Paris: 21 degrees celsius"
    assert out["messages"][-1].content == "21 degrees in Paris."
    assert out["spec_ledger"][0].calls[0].model == "strong"


def test_chat_openai_reply_with_json_content_is_parsed():
    """ChatOpenAI against a recorded llama.cpp-server-shaped reply (tool call as text)."""
    langchain_openai = pytest.importorskip(
        "langchain_openai", reason="langchain-openai is in the `remote` extra"
    )
    requests: list[dict] = []

    def server(request: httpx.Request) -> httpx.Response:
        requests.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "qwen2.5-coder-0.5b",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": TEXT_CALL},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 189, "completion_tokens": 23, "total_tokens": 212},
            },
        )

    chat = langchain_openai.ChatOpenAI(
        model="qwen2.5-coder-0.5b",
        base_url="http://server.invalid/v1",
        api_key="none",
        http_client=httpx.Client(transport=httpx.MockTransport(server)),
        max_retries=0,
    )
    reply = with_parsed_tool_calls(chat).bind_tools([get_weather]).invoke("Weather in Paris?")
    assert requests[0]["tools"][0]["function"]["name"] == "get_weather"
    assert reply.tool_calls[0]["args"] == {"city": "Paris", "unit": "celsius"}
    assert reply.usage_metadata["input_tokens"] == 189
    assert reply.response_metadata["model_name"] == "qwen2.5-coder-0.5b"


def test_earlier_tool_calls_go_back_to_the_server_as_text():
    """A history with a tool call and its result: the server gets the call as the reply text the
    model wrote (llama.cpp's server rejects the null content langchain-openai sends with
    structured calls), unless calls_as_text is off."""
    langchain_openai = pytest.importorskip(
        "langchain_openai", reason="langchain-openai is in the `remote` extra"
    )
    requests: list[dict] = []

    def server(request: httpx.Request) -> httpx.Response:
        requests.append(json.loads(request.content))
        message = {"role": "assistant", "content": "21 degrees."}
        return httpx.Response(200, json={
            "id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        })  # fmt: skip

    chat = langchain_openai.ChatOpenAI(
        model="m", base_url="http://server.invalid/v1", api_key="none", max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(server)),
    )  # fmt: skip
    history = [
        HumanMessage("Weather in Paris?"),
        call("get_weather", city="Paris"),
        ToolMessage("Paris: 21 degrees celsius", tool_call_id="id_get_weather"),
    ]
    with_parsed_tool_calls(chat).bind_tools([get_weather]).invoke(history)
    sent = requests[0]["messages"][1]
    assert sent == {"role": "assistant", "content": '{"name": "get_weather", "arguments": '
                    '{"city": "Paris"}}'}  # fmt: skip
    assert requests[0]["messages"][2]["role"] == "tool"
    ParsedToolCalls(chat_model=chat, calls_as_text=False).invoke(history)
    assert requests[1]["messages"][1]["content"] is None
    assert requests[1]["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
