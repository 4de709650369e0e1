"""Read tool calls out of the reply text of any chat model (served models that answer in text).

OpenAI-compatible servers often return a model's tool call as plain text: llama.cpp's server on a
Qwen2.5-Coder GGUF answers ``bind_tools`` with ``{"name": "get_weather", "arguments": {...}}`` in
``content`` and ``tool_calls`` empty, and vLLM does the same for Qwen2.5-Coder unless a matching
tool parser is configured. :class:`ParsedToolCalls` wraps such a model and applies the same reply
parser :class:`~spec_tool_node.chat_models.hf.HFChatModel` uses, so the cascade, ``ToolNode`` and
``create_agent`` see real ``AIMessage.tool_calls``:

    strong = with_parsed_tool_calls(ChatOpenAI(base_url="http://localhost:8000/v1", model="m"))
    strong.bind_tools([get_weather]).invoke("Weather in Paris?").tool_calls

Replies that already carry ``tool_calls`` pass through untouched; usage, model name and every
other field of the wrapped model's message are kept. Going the other way, the conversation's
earlier tool calls are sent back as the text the model writes them in (``calls_as_text``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding
from pydantic import ConfigDict

from spec_tool_node.chat_models.parsing import call_forms, parse_reply


def parse_message(message: AIMessage) -> AIMessage:
    """The message with tool calls read out of its text, when it has none of its own."""
    if message.tool_calls or message.invalid_tool_calls:
        return message
    parsed = parse_reply(message.text)
    if not parsed.tool_calls and not parsed.invalid_tool_calls:
        return message
    metadata = {**message.response_metadata, "tool_calls_parsed_from_text": True}
    if parsed.tool_calls:
        metadata["finish_reason"] = "tool_calls"
    return AIMessage(
        content=parsed.content,
        tool_calls=parsed.tool_calls,
        invalid_tool_calls=parsed.invalid_tool_calls,
        usage_metadata=message.usage_metadata,
        response_metadata=metadata,
        additional_kwargs=message.additional_kwargs,
        id=message.id,
        name=message.name,
    )


def calls_as_text(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """``messages`` with each AI message's tool calls written into its text, as bare JSON (one
    call per line, after any text it had), and its structured calls dropped."""
    out: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            text = "\n".join(p for p in (message.text, call_forms(message.tool_calls)[0]) if p)
            message = AIMessage(content=text, id=message.id, name=message.name)
        out.append(message)
    return out


def _parsed(result: ChatResult) -> ChatResult:
    generations = [
        ChatGeneration(
            message=parse_message(g.message) if isinstance(g.message, AIMessage) else g.message,
            generation_info=g.generation_info,
        )
        for g in result.generations
    ]
    return ChatResult(generations=generations, llm_output=result.llm_output)


class ParsedToolCalls(BaseChatModel):
    """A chat model whose replies get their text tool calls parsed into ``tool_calls``.

    Args:
        chat_model: the wrapped model (``ChatOpenAI`` on a vLLM or llama.cpp server, ...).
        calls_as_text: send the conversation's earlier tool calls back as reply text (bare JSON)
            instead of structured ``tool_calls``. A model that writes its calls as text reads
            them best that way, and servers for such models may not take structured calls at
            all: llama.cpp's server rejects an assistant message whose content is null, which is
            how langchain-openai sends one with tool calls, and its chatml format would not show
            the calls to the model anyway. Set it to False for a server with a tool parser.

    ``bind_tools`` asks the wrapped model to format the tools its own way and binds the result to
    the wrapper, so the tools reach the server as they would without it. Calls (sync, async, with
    bound options) run the wrapped model's own generation inside the wrapper's run: one run per
    call, so usage callbacks count its tokens once, under the wrapped model's name.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chat_model: BaseChatModel
    calls_as_text: bool = True

    @property
    def model_name(self) -> str:
        """The wrapped model's name (what ledgers and traces should show)."""
        for attr in ("model_name", "model", "model_id"):
            value = getattr(self.chat_model, attr, None)
            if isinstance(value, str) and value:
                return value
        return type(self.chat_model).__name__

    @property
    def _llm_type(self) -> str:
        return f"parsed-{self.chat_model._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"chat_model": self.chat_model._identifying_params}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | Any],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools exactly as the wrapped model binds them (its formatting and options).

        Raises:
            TypeError: the wrapped model's ``bind_tools`` does not bind options to the model
                itself, so there is nothing to forward.
        """
        bound = self.chat_model.bind_tools(tools, **kwargs)
        if not isinstance(bound, RunnableBinding) or bound.bound is not self.chat_model:
            raise TypeError(
                f"{type(self.chat_model).__name__}.bind_tools returned {type(bound).__name__}, "
                "not options bound to the model; wrap the model before binding anything else"
            )
        return self.bind(**bound.kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        messages = calls_as_text(messages) if self.calls_as_text else messages
        return _parsed(self.chat_model._generate(messages, stop, run_manager, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        messages = calls_as_text(messages) if self.calls_as_text else messages
        return _parsed(await self.chat_model._agenerate(messages, stop, run_manager, **kwargs))


def with_parsed_tool_calls(chat_model: BaseChatModel) -> ParsedToolCalls:
    """Wrap ``chat_model`` so tool calls written as reply text become ``AIMessage.tool_calls``."""
    return ParsedToolCalls(chat_model=chat_model)


def openai_compatible(base_url: str, model: str, **kwargs: Any) -> ParsedToolCalls:
    """A model on an OpenAI-compatible server (vLLM, llama.cpp), its text tool calls parsed.

    ``kwargs`` go to ``ChatOpenAI`` (``temperature``, ``max_tokens``, ...). The API key is
    ``$OPENAI_API_KEY`` when set; servers started without a key accept any.

    Raises:
        ImportError: langchain-openai is not installed (it is in the ``remote`` extra).
    """
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as e:
        raise ImportError(
            "served models need langchain-openai: pip install 'spec-tool-node[remote]'"
        ) from e
    kwargs.setdefault("api_key", os.environ.get("OPENAI_API_KEY", "EMPTY"))
    kwargs.setdefault("temperature", 0)
    return with_parsed_tool_calls(ChatOpenAI(base_url=base_url, model=model, **kwargs))
