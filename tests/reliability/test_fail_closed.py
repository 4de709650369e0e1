"""The gate fails closed: every fail-open case the reliability issue found, reproduced and refused.

At the policy level, at the node level inside a compiled ReAct graph whose tool takes the amount
as free text, for near-miss tool names, for invalid strong-model actions, and for example files
whose unsafe entries or gold calls cannot be matched.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from spec_tool_node.actions import ToolCall, ToolCallsAction
from spec_tool_node.config import CascadeConfig
from spec_tool_node.example_files import ExampleError, read_examples
from spec_tool_node.node import SpeculativeActionNode
from tests.reliability.common import LIMIT, RAN, TOOLS, invoke, react_graph
from tests.scripted import ScriptedChatModel, ScriptedVerifier, call, say


class _Missing:
    """The argument left out (a stable repr, so test ids agree across pytest-xdist workers)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()

# Every amount the issue saw run (or pass the policy) although the limit is 1000, and the ones
# that were already refused: all must be refused now.
FAIL_OPEN_AMOUNTS: list[Any] = [
    "5,000",
    "$5000",
    "5000 USD",
    "five thousand",
    [5000],
    {"value": 5000},
    True,
    None,
    MISSING,
]
ALREADY_REFUSED: list[Any] = ["5000", "5e3", " 5000 ", 5000]


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


def transfer(amount: Any, name: str = "transfer_money") -> ToolCallsAction:
    arguments: dict[str, Any] = {"recipient": "bob"}
    if amount is not MISSING:
        arguments["amount"] = amount
    return ToolCallsAction(calls=[ToolCall(name=name, arguments=arguments)])


@pytest.mark.parametrize("amount", FAIL_OPEN_AMOUNTS + ALREADY_REFUSED, ids=repr)
def test_policy_refuses_every_amount_it_cannot_read_as_within_the_limit(amount: Any) -> None:
    decision = LIMIT.check(transfer(amount))
    assert (decision.effect, decision.rule) == ("block", "over-limit")
    if amount in ALREADY_REFUSED:
        assert decision.reason == "transfers over 1000 need approval"
    elif amount is MISSING:
        assert decision.reason.endswith("(argument 'amount' is missing)")
    else:
        assert "could not be read for gt" in decision.reason


@pytest.mark.parametrize("amount", ["500", 500, 999.99, " 12.5 "])
def test_amounts_within_the_limit_still_pass(amount: Any) -> None:
    assert LIMIT.check(transfer(amount)).effect == "allow"


@pytest.mark.parametrize("name", ["Transfer_Money", " transfer_money", "TRANSFER_MONEY\n"])
def test_rule_matches_a_near_miss_tool_name(name: str) -> None:
    assert LIMIT.check(transfer(5000, name)).rule == "over-limit"


def test_glob_matches_across_case() -> None:
    action = ToolCallsAction(calls=[ToolCall(name="DELETE_all_files", arguments={"path": "/"})])
    assert LIMIT.check(action).rule == "no-delete"


def strong_node(*script: AIMessage, mode: str = "A", **kwargs: Any) -> SpeculativeActionNode:
    strong = ScriptedChatModel(name="strong", script=list(script))
    return SpeculativeActionNode(
        strong=strong, tools=TOOLS, config=CascadeConfig(mode=mode), safety=LIMIT, **kwargs
    )


def transfer_call(amount: Any, name: str = "transfer_money") -> AIMessage:
    args: dict[str, Any] = {"recipient": "bob"}
    if amount is not MISSING:
        args["amount"] = amount
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": "c1", "type": "tool_call"}])


# The amount is a string in the tool's schema, so "5,000" and friends pass schema validation and
# only the gate can stop them; the others break the schema and are invalid actions.
@pytest.mark.parametrize("amount", FAIL_OPEN_AMOUNTS + ALREADY_REFUSED, ids=repr)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_react_graph_never_runs_a_transfer_over_the_limit(amount: Any, use_async: bool) -> None:
    graph = react_graph(strong_node(transfer_call(amount)))
    out = invoke(graph, {"messages": [HumanMessage("pay bob")]}, use_async)
    assert RAN == []
    (turn,) = out["spec_ledger"]
    last = out["messages"][-1]
    assert not last.tool_calls
    if isinstance(amount, str) and amount.strip() in (
        "5,000",
        "$5000",
        "5000 USD",
        "five thousand",
        "5000",
        "5e3",
    ):
        assert (turn.path, turn.rule) == ("blocked", "over-limit")
        assert last.content.startswith("BLOCKED: refused to call transfer_money (rule over-limit)")
    else:  # not a string (or missing): the tool's schema rejects it before the gate
        assert turn.path == "invalid", turn
        assert "strong invalid" in turn.reject_reason


def test_react_graph_runs_a_transfer_within_the_limit() -> None:
    graph = react_graph(strong_node(transfer_call("250"), say("Sent.")))
    graph.invoke({"messages": [HumanMessage("pay bob 250")]})
    assert RAN == [("transfer_money", {"recipient": "bob", "amount": "250"})]


@pytest.mark.parametrize("name", ["Transfer_Money", " transfer_money ", "TRANSFER_MONEY"])
def test_near_miss_name_resolves_to_the_bound_tool_with_its_rules(name: str) -> None:
    graph = react_graph(strong_node(transfer_call("5000", name)))
    out = graph.invoke({"messages": [HumanMessage("pay bob")]})
    assert RAN == []
    assert out["spec_ledger"][0].rule == "over-limit"


def test_near_miss_name_within_the_rules_runs_the_bound_tool() -> None:
    graph = react_graph(strong_node(transfer_call("20", " Transfer_Money"), say("Sent.")))
    out = graph.invoke({"messages": [HumanMessage("pay bob 20")]})
    assert RAN == [("transfer_money", {"recipient": "bob", "amount": "20"})]
    assert out["messages"][1].tool_calls[0]["name"] == "transfer_money"


def test_delete_in_capitals_is_blocked_in_the_graph() -> None:
    message = AIMessage(
        "", tool_calls=[{"name": "DELETE_all_files", "args": {"path": "/"}, "id": "d"}]
    )
    out = react_graph(strong_node(message)).invoke({"messages": [HumanMessage("clean up")]})
    assert RAN == []
    assert out["spec_ledger"][0].rule == "no-delete"


INVALID_STRONG = {
    "unbound tool": call("transfer-money", recipient="bob", amount="5"),
    "unknown near miss": call("transfer_monies", recipient="bob", amount="5"),
    "schema": call("transfer_money", recipient="bob"),
    "unparseable": AIMessage(
        "",
        invalid_tool_calls=[
            {"name": "transfer_money", "args": "{amount: 5", "id": "x", "error": "bad json"}
        ],
    ),
    "empty": say(""),
}


@pytest.mark.parametrize("case", INVALID_STRONG, ids=str)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_invalid_strong_action_never_reaches_the_tool_node(case: str, use_async: bool) -> None:
    graph = react_graph(strong_node(INVALID_STRONG[case]))
    out = invoke(graph, {"messages": [HumanMessage("pay bob")]}, use_async)
    assert RAN == []
    (turn,) = out["spec_ledger"]
    assert (turn.path, turn.winner) == ("invalid", "strong")
    assert turn.reject_reason.startswith("strong invalid: ")
    last = out["messages"][-1]
    assert not last.tool_calls and not last.invalid_tool_calls
    assert last.content.startswith("No action taken: the strong model's reply was invalid")


def test_mode_d_fallback_validates_the_strong_action_too() -> None:
    cheap = ScriptedChatModel(name="cheap", script=[call("get_weather", city="Paris")])
    strong = ScriptedChatModel(name="strong", script=[call("wipe_disk", device="/dev/sda")])
    node = SpeculativeActionNode(
        proposer=cheap,
        strong=strong,
        verifier=ScriptedVerifier([0.1]),
        tools=TOOLS,
        config=CascadeConfig(mode="D"),
        safety=LIMIT,
    )
    out = react_graph(node).invoke({"messages": [HumanMessage("weather?")]})
    assert RAN == []
    (turn,) = out["spec_ledger"]
    assert turn.path == "invalid"
    assert turn.reject_reason == (
        "rejected; strong invalid: call 0 names tool 'wipe_disk', which is not bound "
        "(bound: delete_all_files, get_weather, send_email, transfer_money)"
    )


def test_mode_b_draft_with_a_near_miss_name_is_gated_as_the_bound_tool() -> None:
    cheap = ScriptedChatModel(name="cheap", script=[transfer_call("$5000", "Transfer_Money")])
    node = SpeculativeActionNode(
        proposer=cheap, tools=TOOLS, config=CascadeConfig(mode="B"), safety=LIMIT
    )
    out = react_graph(node).invoke({"messages": [HumanMessage("pay bob")]})
    assert RAN == []
    assert (out["spec_ledger"][0].path, out["spec_ledger"][0].rule) == ("blocked", "over-limit")


# -- example files ---------------------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "send_email", "parameters": {"type": "object"}}}


def example(**fields: Any) -> dict[str, Any]:
    return {
        "id": "mail_1",
        "tools": [TOOL],
        "messages": [{"role": "user", "content": "mail it"}],
        "gold": "blocked",
        **fields,
    }


def write(tmp_path, *rows: dict[str, Any]):
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("unsafe", "problem"),
    [
        ([{"send_email": {"to": "x@evil.example"}}], "unsafe[0] has no tool name"),
        ([{"arguments": {"to": "x@evil.example"}}], "unsafe[0] has no tool name"),
        ([{"name": "send_email", "args": {"to": "x"}}], "unsafe[0] must be {'name'"),
        ([{"name": "send_email", "arguments": "to=x"}], "unsafe[0] must be {'name'"),
        ([{"name": "send_mail", "arguments": {}}], "unsafe[0] names tool 'send_mail'"),
    ],
)
def test_example_file_rejects_unsafe_entries_that_can_never_match(tmp_path, unsafe, problem):
    path = write(tmp_path, example(id="ok"), example(unsafe=unsafe))
    with pytest.raises(ExampleError) as info:
        list(read_examples(path))
    message = str(info.value)
    assert message.startswith(f"{path}:2 (id 'mail_1'): ")
    assert problem in message


def test_example_file_rejects_gold_of_an_unbound_tool(tmp_path) -> None:
    path = write(tmp_path, example(gold=[{"send_mail": {"to": ["a@acme.com"]}}]))
    with pytest.raises(ExampleError, match=r"examples\.jsonl:1 \(id 'mail_1'\): .*send_mail"):
        list(read_examples(path))


def test_example_file_accepts_well_formed_unsafe_entries(tmp_path) -> None:
    unsafe = [{"name": "send_email", "arguments": {"to": "x@evil.example"}}, {"name": "send_email"}]
    (loaded,) = read_examples(write(tmp_path, example(unsafe=unsafe)))
    assert loaded.unsafe == unsafe
