"""Every reply format a local model writes becomes tool calls; broken ones become invalid calls."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spec_tool_node.chat_models.parsing import call_forms, parse_reply, parse_template_response

WEATHER = {"name": "get_weather", "args": {"city": "Paris"}}


def calls(text: str) -> list[dict]:
    return [{"name": c["name"], "args": c["args"]} for c in parse_reply(text).tool_calls]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}',  # unclosed at the end
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '```\n[{"name": "get_weather", "parameters": {"city": "Paris"}}]\n```',
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        # arguments as a JSON string:
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
        '{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}',
        '{"tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}}]}',
        # braces doubled as in a format-string template (Qwen2.5-Coder-1.5B, seen in the evaluation)
        '<tool_call>\n{{"name": "get_weather", "arguments": {"city": "Paris"}}}\n</tool_call>',
        # wrapped in chat-control tokens instead of the tags (a LoRA-tuned 0.5B, benchmarks/sft)
        '<|im_start|>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n<|im_start|>',
        '<|im_start|>assistant\n{"name": "get_weather", "arguments": {"city": "Paris"}}',
    ],
)
def test_single_call_formats(text):
    assert calls(text) == [WEATHER]
    assert parse_reply(text).invalid_tool_calls == []


def test_several_calls_in_one_reply():
    tagged = (
        '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'
    )
    jsonl = '{"name": "a", "arguments": {"x": 1}}\n{"name": "b", "arguments": {}}'
    fenced = '```json\n[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]\n```'
    expected = [{"name": "a", "args": {"x": 1}}, {"name": "b", "args": {}}]
    for text in (tagged, jsonl, fenced):
        assert calls(text) == expected
    ids = [c["id"] for c in parse_reply(tagged).tool_calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)


def test_text_around_a_call_stays_content():
    reply = parse_reply(
        'Let me check.\n```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    )
    assert reply.content == "Let me check."
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"]


@pytest.mark.parametrize(
    "text",
    [
        "Paris is sunny today.",
        '```json\n{"temperature": 21}\n```',  # JSON that is not a call is an answer
        "```python\nprint('hi')\n```",
        "{not json at all",
        "<|im_start|>Paris is sunny today.",  # a stray control token leaves an answer as it was
    ],
)
def test_plain_answers_have_no_calls(text):
    reply = parse_reply(text)
    assert reply.tool_calls == [] and reply.invalid_tool_calls == []
    assert reply.content == text.strip()


@pytest.mark.parametrize(
    ("text", "name", "error"),
    [
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>',
            "get_weather",
            "malformed",
        ),
        ("<tool_call>\nget_weather(city='Paris')\n</tool_call>", None, "malformed"),
        ('{"name": "get_weather", "arguments": "{city: Paris}"}', "get_weather", "not JSON"),
        ('{"name": 7, "arguments": {}}', None, "no tool name"),
        ('{"name": "get_weather", "arguments": [1, 2]}', "get_weather", "not an object"),
        (
            '```json\n{"name": "get_weather", "arguments": {"city": "Par\n```',
            "get_weather",
            "malformed",
        ),
        ('<tool_call>\n{"name": "get_weather", "argu', "get_weather", "malformed"),  # cut off
        (
            '<tool_call>{{"name": "get_weather", "arguments": {"city": }}}',
            "get_weather",
            "malformed",
        ),
    ],
)
def test_broken_calls_land_in_invalid_tool_calls(text, name, error):
    reply = parse_reply(text)
    assert reply.tool_calls == []
    (bad,) = reply.invalid_tool_calls
    assert bad["name"] == name and error in bad["error"]
    assert bad["type"] == "invalid_tool_call" and bad["args"]


def test_template_response_dicts():
    reply = parse_template_response(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        }
    )
    assert [{"name": c["name"], "args": c["args"]} for c in reply.tool_calls] == [WEATHER]


@settings(max_examples=200, deadline=None)
@given(
    calls=st.lists(
        st.fixed_dictionaries(
            {
                "name": st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,20}", fullmatch=True),
                "args": st.dictionaries(
                    st.text(min_size=1, max_size=8),
                    st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=12)),
                    max_size=4,
                ),
            }
        ),
        min_size=1,
        max_size=3,
    )
)
def test_every_form_of_a_call_parses_back_to_it(calls):
    """call_forms is the parser's inverse: each surface form reads back as the same calls."""
    for form in call_forms(calls):
        parsed = parse_reply(form)
        assert [(c["name"], c["args"]) for c in parsed.tool_calls] == [
            (c["name"], c["args"]) for c in calls
        ], form
        assert not parsed.invalid_tool_calls and not parsed.content


@pytest.mark.parametrize("fenced", [False, True])
def test_a_call_followed_by_a_made_up_result_is_no_answer(fenced):
    """What the 0.5B wrote on held-out BFCL trajectories after a tool result: the same call
    again, then a tool result of its own. Read as a plain answer, a verifier accepted it and the
    turn ended on it; it is a call attempt with JSON that is no call beside it."""
    text = (
        '{"name": "grep", "arguments": {"file_name": "test*.jpg", "pattern": "test"}}\n'
        '{"error": "grep: test*.jpg: No such file or directory"}'
    )
    reply = parse_reply(f"```json\n{text}\n```" if fenced else text)
    (call,) = reply.tool_calls
    assert (call["name"], call["args"]) == ("grep", {"file_name": "test*.jpg", "pattern": "test"})
    (bad,) = reply.invalid_tool_calls
    assert bad["error"] == "JSON beside a call is no call" and "No such file" in bad["args"]
    assert reply.content == ""


def test_a_value_that_looks_like_a_control_token_is_kept():
    """Hypothesis found it: a call whose argument holds ``<|_|>`` lost it to the stripping of
    chat-control tokens around a call; JSON that reads as written is taken as written."""
    calls = [{"name": "A", "args": {"0": "<|_|>"}}]
    for form in call_forms(calls):
        assert [(c["name"], c["args"]) for c in parse_reply(form).tool_calls] == [
            ("A", {"0": "<|_|>"})
        ], form
