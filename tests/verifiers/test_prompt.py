"""The verifier prompt format: tools, transcript and canonical draft, rendered deterministically."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from spec_tool_node.actions import (
    BlockedAction,
    RespondAction,
    ToolCall,
    ToolCallsAction,
    canonical_text,
)
from spec_tool_node.verifiers import (
    LABELS,
    VERIFIER_SYSTEM,
    label_token_ids,
    render_verifier_prompt,
    verifier_messages,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"name": "get_time", "description": "Current time", "parameters": {"type": "object"}},
]
CONTEXT = [
    SystemMessage("Be brief."),
    HumanMessage("Weather in Paris?"),
    AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
    ToolMessage("sunny, 21 degrees", tool_call_id="c1"),
]
DRAFT = RespondAction(content="It is sunny in Paris.")


def test_messages_hold_tools_transcript_and_draft():
    system, user = verifier_messages(CONTEXT, TOOLS, DRAFT)
    assert system == {"role": "system", "content": VERIFIER_SYSTEM}
    assert user["role"] == "user"
    text = user["content"]
    assert "Tools:\n- get_weather: Current weather for a city.\n- get_time: Current time" in text
    call = canonical_text(ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={})]))
    call = call.replace("{}", '{"city": "Paris"}')
    assert (
        "[system] Be brief.\n[user] Weather in Paris?\n"
        f"[assistant] {call}\n[tool get_weather] sunny, 21 degrees"
    ) in text
    assert f"Proposed next action:\n{canonical_text(DRAFT)}" in text
    assert text.endswith("Is the proposed action the correct next step? Answer ACCEPT or REJECT.")
    assert text.index("Available tools") < text.index("Conversation") < text.index("Proposed")


def test_openai_dicts_read_like_langchain_messages():
    dicts = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 degrees"},
    ]
    assert verifier_messages(dicts, TOOLS, DRAFT) == verifier_messages(CONTEXT, TOOLS, DRAFT)


def test_deterministic_and_draft_sensitive():
    blocked = BlockedAction(reason="unsafe")
    assert verifier_messages(CONTEXT, TOOLS, DRAFT) == verifier_messages(CONTEXT, TOOLS, DRAFT)
    assert verifier_messages(CONTEXT, TOOLS, DRAFT) != verifier_messages(CONTEXT, TOOLS, blocked)
    assert "(none)" in verifier_messages([HumanMessage("hi")], [], DRAFT)[1]["content"]


def test_render_ends_with_generation_prompt(tiny_tokenizer):
    prompt = render_verifier_prompt(tiny_tokenizer, CONTEXT, TOOLS, DRAFT)
    assert prompt.startswith(f"<|im_start|>system\n{VERIFIER_SYSTEM}<|im_end|>")
    assert "Answer ACCEPT or REJECT.<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert prompt == render_verifier_prompt(tiny_tokenizer, CONTEXT, TOOLS, DRAFT)


def test_label_ids_differ(tiny_tokenizer):
    accept, reject = label_token_ids(tiny_tokenizer)
    assert accept != reject
    for label, token in zip(LABELS, (accept, reject), strict=True):
        assert tiny_tokenizer(label, add_special_tokens=False).input_ids[0] == token


def test_colliding_labels_raise():
    word = Tokenizer(models.WordLevel({"[UNK]": 0, "<pad>": 1}, unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word, unk_token="[UNK]", pad_token="<pad>")
    with pytest.raises(ValueError, match="same token"):
        label_token_ids(tokenizer)


def test_listing_shows_full_schemas_only_for_called_tools():
    call = ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": "Rome"})])
    text = verifier_messages(CONTEXT, TOOLS, call)[1]["content"]
    assert (
        "Called tools (full schema):\n"
        '{"description":"Current weather for a city.","name":"get_weather",'
        '"parameters":{"properties":{"city":{"type":"string"}},"type":"object"}}\n'
        "Other tools:\n- get_time: Current time"
    ) in text
    assert '"name":"get_time"' not in text


def test_listing_cuts_long_descriptions_of_uncalled_tools():
    long = {"name": "search", "description": "word " * 100, "parameters": {"type": "object"}}
    text = verifier_messages(CONTEXT, [long], DRAFT)[1]["content"]
    line = next(x for x in text.splitlines() if x.startswith("- search"))
    assert line.endswith("...") and len(line) <= len("- search: ") + 160


def test_hallucinated_tool_is_absent_from_the_full_schemas():
    call = ToolCallsAction(calls=[ToolCall(name="send_money", arguments={})])
    text = verifier_messages(CONTEXT, TOOLS, call)[1]["content"]
    assert "Called tools" not in text and "send_money" in text.split("Proposed next action")[1]
