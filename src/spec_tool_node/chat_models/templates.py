"""Chat-template rendering: the prompt a local model sees, and the reply it must produce.

Everything here reads only the tokenizer (its chat template, special tokens and response
template), never the weights, so it works without torch: the verifier prompt, SFT labels and
teacher-forced scoring render their text here, as
:class:`~spec_tool_node.chat_models.hf.HFChatModel` does at inference.

Templates without tool support get a documented fallback: the tools are described in a system
prompt that asks for ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` replies, earlier
tool calls are written in that form and tool results are passed back as user turns wrapped in
``<tool_response>`` tags.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from spec_tool_node.chat_models.parsing import ParsedReply, parse_reply, parse_template_response
from spec_tool_node.errors import SpecToolNodeError

FALLBACK_TOOL_PROMPT = (
    "You can call the following tools. To call one, reply with only\n"
    '<tool_call>\n{{"name": <tool name>, "arguments": <JSON object of arguments>}}\n</tool_call>\n'
    "(one block per call). If no tool fits, answer the user directly.\n\nTools:\n{tools}"
)
"""System prompt used when the chat template cannot render tools itself."""

TOOL_CHOICE_HINT = "You must answer with a tool call."


def to_chat_dicts(messages: Sequence[BaseMessage | dict[str, Any]]) -> list[dict[str, Any]]:
    """LangChain messages (or OpenAI dicts) to the dicts chat templates read.

    OpenAI dicts carry call arguments as JSON strings; templates expect objects, so they are
    decoded here and both inputs render identically.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, dict):
            out.append(_decoded_arguments(m))
        elif isinstance(m, SystemMessage):
            out.append({"role": "system", "content": m.text})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": m.text})
        elif isinstance(m, AIMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": m.text}
            if m.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": c.get("id"),
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["args"]},
                    }
                    for c in m.tool_calls
                ]
            out.append(entry)
        elif isinstance(m, ToolMessage):
            out.append(
                {
                    "role": "tool",
                    "content": m.text,
                    "tool_call_id": m.tool_call_id,
                    "name": m.name,
                }
            )
        else:
            out.append({"role": m.type, "content": m.text})
    return out


def _decoded_arguments(message: dict[str, Any]) -> dict[str, Any]:
    if not message.get("tool_calls"):
        return message
    calls = []
    for c in message["tool_calls"]:
        function = dict(c.get("function", c))
        if isinstance(function.get("arguments"), str):
            # undecodable arguments stay as they are: the template renders the raw text
            with contextlib.suppress(json.JSONDecodeError):
                function["arguments"] = json.loads(function["arguments"] or "{}")
        calls.append({**c, "function": function} if "function" in c else function)
    return {**message, "tool_calls": calls}


_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "spec_probe_tool_x7",
        "description": "probe",
        "parameters": {"type": "object", "properties": {}},
    },
}


_SUPPORTS_TOOLS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
"""Per tokenizer: whether its template renders tools (kept only as long as the tokenizer)."""


def template_supports_tools(tokenizer: Any) -> bool:
    """True when the chat template renders the tools it is given (checked once per tokenizer)."""
    cached = _SUPPORTS_TOOLS.get(tokenizer)
    if cached is None:
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "hi"}],
                tools=[_PROBE_TOOL],
                tokenize=False,
                add_generation_prompt=True,
            )
            cached = "spec_probe_tool_x7" in text
        except Exception:  # a template that fails on tools: the fallback prompt describes them
            cached = False
        _SUPPORTS_TOOLS[tokenizer] = cached
    return cached


def _fallback_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rewrite a conversation for a template without tool support (see the module docstring)."""
    listing = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
    prompt = FALLBACK_TOOL_PROMPT.format(tools=listing)
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            blocks = [
                "<tool_call>\n"
                + json.dumps(
                    {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                    ensure_ascii=False,
                )
                + "\n</tool_call>"
                for c in m["tool_calls"]
            ]
            out.append(
                {
                    "role": "assistant",
                    "content": "\n".join([m.get("content") or "", *blocks]).strip(),
                }
            )
        elif m["role"] == "tool":
            out.append(
                {"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"}
            )
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{prompt}"}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def render_prompt(
    tokenizer: Any,
    messages: Sequence[BaseMessage | dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = True,
) -> str:
    """Render a conversation (and its tools) exactly as the model sees it at inference.

    Training renders its examples with this same function, so training and inference prompts
    are identical token for token.
    """
    chat = to_chat_dicts(messages)
    tools = list(tools or [])
    if tools and not template_supports_tools(tokenizer):
        chat, tools = _fallback_messages(chat, tools), []
    elif not tools:
        chat = [m if m.get("content") is not None else {**m, "content": ""} for m in chat]
    return tokenizer.apply_chat_template(
        chat, tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
    )


class ReplyRenderError(SpecToolNodeError, ValueError):
    """The template renders an answered conversation that does not extend its inference prompt."""


def render_reply(
    tokenizer: Any,
    messages: Sequence[BaseMessage | dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None,
    reply: BaseMessage | dict[str, Any],
) -> tuple[str, str]:
    """The inference prompt, and ``reply`` as the template renders it right after that prompt.

    The reply text stops at the end-of-turn token, the last token the model must emit. Training
    puts its labels on exactly this text and scoring teacher-forces it, so both see what
    generation after this prompt would have to produce.

    Raises:
        ReplyRenderError: the answered conversation does not begin with the prompt (a template
            that rewrites earlier turns); no reply text then follows the inference prompt.
    """
    prompt = render_prompt(tokenizer, messages, tools)
    full = render_prompt(tokenizer, [*messages, reply], tools, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ReplyRenderError(
            "the rendered answer does not start with the inference prompt, so training would "
            "see a different prompt than inference"
        )
    completion = full[len(prompt) :]
    end = tokenizer.eos_token or ""
    if end and end in completion:
        completion = completion[: completion.index(end) + len(end)]
    return prompt, completion


def parse_model_reply(
    tokenizer: Any, text: str, prompt: str, tools: Sequence[dict[str, Any]] | None
) -> ParsedReply:
    """Parse with the tokenizer's ``parse_response`` if it has a response template, else by form."""
    if getattr(tokenizer, "response_template", None):
        # A response template that does not match this reply raises; nothing is lost, since the
        # form parser below reads the same text in every format the templates write.
        with contextlib.suppress(Exception):
            return parse_template_response(
                tokenizer.parse_response(text, prefix=prompt, tools=list(tools or []) or None)
            )
    return parse_reply(text)
