"""Fuzzing with hypothesis: the reply parser, the action validator and the safety gate on
generated text, JSON, nested and huge arguments, unicode and control characters.

Properties: nothing raises except the documented InvalidActionError; a forbidden call is never
classified as allowed because of how it was written (surface form, name spelling, amount format).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage

from spec_tool_node.actions import (
    InvalidActionError,
    ToolCall,
    ToolCallsAction,
    action_from_message,
    resolve_action,
    tool_schemas,
)
from spec_tool_node.chat_models.parsing import parse_reply
from spec_tool_node.evaluation.safety_suite import load_policy
from spec_tool_node.safety import ArgPredicate, SafetyPolicy
from tests.reliability.common import LIMIT, TOOLS

FUZZ = settings()  # the profile from conftest.py: quick under make test, long in the benchmark
EXAMPLES: Counter[str] = Counter()
"""Generated cases per test, read by benchmarks/reliability.py."""
SCHEMAS = tool_schemas(TOOLS)
SUITE_POLICY = load_policy()

any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=25,
)
huge_text = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=8), st.integers(1, 20_000))
arguments = st.dictionaries(
    st.sampled_from(["recipient", "amount", "path", "to", "body", "city"]) | any_text,
    json_values | huge_text,
    max_size=5,
)


def message_of(text: str) -> AIMessage:
    """The AIMessage a local chat model builds from reply text."""
    reply = parse_reply(text)
    return AIMessage(
        content=reply.content,
        tool_calls=reply.tool_calls,
        invalid_tool_calls=reply.invalid_tool_calls,
    )


def gate(message: AIMessage, policy: SafetyPolicy = LIMIT) -> str:
    """What the cascade would do with a strong model's reply: invalid, or the gate's effect."""
    try:
        action = resolve_action(action_from_message(message), SCHEMAS)
    except InvalidActionError:
        return "invalid"
    return policy.check(action).effect


@FUZZ
@given(any_text)
def test_parser_never_raises_on_any_text(text: str) -> None:
    EXAMPLES["test_parser_never_raises_on_any_text"] += 1
    reply = parse_reply(text)
    for call in reply.tool_calls:
        assert isinstance(call["name"], str) and isinstance(call["args"], dict)
    gate(message_of(text))  # and nothing downstream raises either


@FUZZ
@given(json_values, st.sampled_from(["tagged", "fenced", "bare", "doubled"]))
def test_parser_never_raises_on_json(value: Any, form: str) -> None:
    EXAMPLES["test_parser_never_raises_on_json"] += 1
    gate(message_of(wrap(json.dumps(value), form)))


def test_parser_survives_deep_nesting() -> None:
    for depth in (10, 1_000, 100_000):
        blob = "[" * depth + "]" * depth
        for form in ("tagged", "fenced", "bare"):
            gate(message_of(wrap('{"name": "get_weather", "arguments": ' + blob + "}", form)))


def wrap(blob: str, form: str) -> str:
    if form == "tagged":
        return f"<tool_call>\n{blob}\n</tool_call>"
    if form == "fenced":
        return f"Sure.\n```json\n{blob}\n```"
    if form == "doubled":
        return "{" + blob + "}"
    return blob


# Over-limit amounts in every format a model or an attacker might write; none is <= 1000.
over_limit = st.integers(1001, 10**30)
amount_forms = st.one_of(
    over_limit,
    over_limit.map(str),
    over_limit.map(lambda n: f"{n:,}"),
    over_limit.map(lambda n: f"${n}"),
    over_limit.map(lambda n: f"{n} USD"),
    over_limit.map(lambda n: f" {n}\t"),
    over_limit.map(lambda n: f"{n:.3e}"),
    over_limit.map(lambda n: [n]),
    over_limit.map(lambda n: {"value": n}),
    st.sampled_from(["five thousand", "5k", "1e400", "inf", "NaN", "", "０５０００", None, True]),
)
invisible = st.sampled_from(["", " ", "\t", "\n", "\u200b", "\ufeff", "\u00a0"])


@st.composite
def name_variants(draw: st.DrawFn, name: str) -> str:
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    return draw(invisible) + cased + draw(invisible)


@FUZZ
@given(amount_forms, name_variants("transfer_money"), st.sampled_from(["tagged", "fenced", "bare"]))
def test_no_over_limit_transfer_is_allowed_whatever_its_form(
    amount: Any, name: str, form: str
) -> None:
    EXAMPLES["test_no_over_limit_transfer_is_allowed_whatever_its_form"] += 1
    call = {"name": name, "arguments": {"recipient": "bob", "amount": amount}}
    assert gate(message_of(wrap(json.dumps(call), form))) in ("block", "invalid")
    # and straight to the policy, skipping the schema check that would catch some of these
    direct = ToolCallsAction(calls=[ToolCall(name=name, arguments=call["arguments"])])
    assert LIMIT.check(direct).effect == "block"


@FUZZ
@given(name_variants("delete_all_files"), arguments)
def test_a_glob_rule_fires_on_every_spelling_of_the_name(name: str, args: dict) -> None:
    EXAMPLES["test_a_glob_rule_fires_on_every_spelling_of_the_name"] += 1
    action = ToolCallsAction(calls=[ToolCall(name=name, arguments=args)])
    assert LIMIT.check(action).rule == "no-delete"


@FUZZ
@given(st.text(max_size=40), arguments)
def test_validator_raises_only_invalid_action_errors(name: str, args: dict) -> None:
    EXAMPLES["test_validator_raises_only_invalid_action_errors"] += 1
    if not name:
        return  # a ToolCall needs a name (pydantic refuses an empty one before any validator)
    action = ToolCallsAction(calls=[ToolCall(name=name, arguments=args)])
    try:
        resolved = resolve_action(action, SCHEMAS)
    except InvalidActionError:
        return
    assert resolved.calls[0].name in SCHEMAS


@FUZZ
@given(json_values | huge_text, st.sampled_from(["gt", "eq", "ne", "in", "not_in", "regex",
                                                  "contains", "le"]))  # fmt: skip
def test_predicates_never_raise(value: Any, op: str) -> None:
    EXAMPLES["test_predicates_never_raise"] += 1
    rule_value = {"in": ["bob", 5], "not_in": ["bob"], "regex": r"^\d+$", "contains": "x"}.get(
        op, 1000
    )
    outcome = ArgPredicate(arg="amount", op=op, value=rule_value).evaluate({"amount": value})
    assert isinstance(outcome.holds, bool)


@FUZZ
@given(json_values | huge_text)
def test_amount_passes_the_limit_only_when_it_reads_as_a_number_within_it(value: Any) -> None:
    EXAMPLES["test_amount_passes_the_limit_only_when_it_reads_as_a_number_within_it"] += 1
    action = ToolCallsAction(
        calls=[ToolCall(name="transfer_money", arguments={"recipient": "bob", "amount": value})]
    )
    if LIMIT.check(action).effect == "allow":
        assert not isinstance(value, bool)
        assert float(value) <= 1000  # a number, or a string Python itself reads as one


@FUZZ
@given(
    st.sampled_from(["run_shell_command", "delete_directory", "send_email", "transfer_money"]),
    arguments,
)
def test_the_suite_policy_never_raises_on_odd_arguments(name: str, args: dict) -> None:
    EXAMPLES["test_the_suite_policy_never_raises_on_odd_arguments"] += 1
    action = ToolCallsAction(calls=[ToolCall(name=name, arguments=args)])
    assert SUITE_POLICY.check(action).effect in ("allow", "block", "escalate")


def test_predicates_read_a_value_nested_past_the_recursion_limit_as_unreadable() -> None:
    deep: Any = 5000
    other: Any = 6000
    for _ in range(100_000):
        deep, other = [deep], [other]
    cases = [("gt", 1000), ("ne", other), ("regex", "5000"), ("contains", 5000), ("in", ["x"])]
    for op, value in cases:
        outcome = ArgPredicate(arg="amount", op=op, value=value).evaluate({"amount": deep})
        assert outcome.holds, op
        assert outcome.note and "could not be read" in outcome.note
