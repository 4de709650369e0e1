"""The safety gate: operators, name globs, rule precedence, BLOCKED actions and policy files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from spec_tool_node.actions import (
    Action,
    BlockedAction,
    RespondAction,
    ToolCall,
    ToolCallsAction,
)
from spec_tool_node.safety import (
    OPERATORS,
    ArgPredicate,
    SafetyDecision,
    SafetyPolicy,
    SafetyPolicyError,
    SafetyRule,
)


def calls(*pairs: tuple[str, dict[str, Any]]) -> ToolCallsAction:
    return ToolCallsAction(calls=[ToolCall(name=n, arguments=a) for n, a in pairs])


def holds(op: str, value: Any, arguments: dict[str, Any], arg: str = "x") -> bool:
    return ArgPredicate(arg=arg, op=op, value=value).holds(arguments)


OPERATOR_CASES: list[tuple[str, Any, Any, bool]] = [
    ("eq", 5, 5, True),
    ("eq", 5, "5", True),  # models often quote numbers
    ("eq", "5.0", 5, True),
    ("eq", 5, 6, False),
    ("eq", "abc", "abc", True),
    ("eq", "abc", "ABC", False),  # case sensitive
    ("eq", True, True, True),
    ("eq", True, 1, True),  # a rule about a boolean cannot read a number: fails closed
    ("eq", 1, True, True),  # a boolean is not a number: fails closed
    ("eq", True, False, False),
    ("eq", "bob", ["bob"], True),  # a list where a string is expected: fails closed
    ("ne", "bob", None, True),
    ("eq", None, None, True),
    ("eq", [1, 2], [1, 2], True),
    ("ne", 5, 6, True),
    ("ne", 5, "5", False),
    ("ne", "a", "b", True),
    ("gt", 100, 101, True),
    ("gt", 100, 100, False),
    ("gt", 100, "250.5", True),  # numeric string compared as a number
    ("gt", "1e3", 1001, True),
    ("gt", 100, " 101 ", True),
    ("gt", 100, "a lot", True),  # cannot be read as a number: fails closed, no exception
    ("gt", 100, "5,000", True),
    ("gt", 100, "$5000", True),
    ("gt", 100, "5000 USD", True),
    ("gt", 100, None, True),
    ("gt", 100, [200], True),
    ("gt", 100, [50], True),  # even a small number inside a list is not read
    ("gt", 100, {"v": 200}, True),
    ("gt", 0, True, True),
    ("gt", 100, "nan", True),
    ("gt", 100, float("nan"), True),
    ("gt", 100, 10**400, True),  # a huge int is compared exactly, not overflowed
    ("lt", 100, "-1e400", True),
    ("ge", 100, 100, True),
    ("ge", 100, 99.9, False),
    ("lt", 0, -1, True),
    ("lt", 0, 0, False),
    ("lt", 0, "x", True),
    ("le", 0, 0, True),
    ("le", 0, 0.1, False),
    ("regex", r"^rm\b", "rm -rf /", True),
    ("regex", r"DROP\s+TABLE", "please drop table users", False),  # case sensitive
    ("regex", r"(?i)DROP\s+TABLE", "please drop table users", True),
    ("regex", r"\d{3}", 12345, True),  # regex reads str(value)
    ("regex", r"^\d+$", "12a", False),
    ("regex", r"^rm\b", ["rm -rf /"], True),  # a list is not read as its text: fails closed
    ("regex", r"^rm\b", None, True),
    ("in", ["US", "CA"], "US", True),
    ("in", ["US", "CA"], "us", False),
    ("in", ["US", "CA"], "FR", False),
    ("in", [1, 2], "2", True),
    ("in", [], "US", False),
    ("in", ["US"], {"unhashable": 1}, True),
    ("not_in", ["US", "CA"], ["US"], True),
    ("not_in", ["US", "CA"], "FR", True),
    ("not_in", ["US", "CA"], "CA", False),
    ("not_in", [], "anything", True),
    ("contains", "secret", "my secret key", True),
    ("contains", "Secret", "my secret key", False),
    ("contains", "b", ["a", "b"], True),
    ("contains", 2, [1, "2"], True),
    ("contains", "c", ["a", "b"], False),
    ("contains", 1, "12", True),  # a number is looked for as its text
    ("contains", "a", 123, True),  # nothing to look inside: fails closed
    ("contains", "a", {"a": 1}, True),
    ("contains", "c", [["c"]], True),
    ("exists", None, 0, True),
    ("exists", None, None, True),  # present with a null value still exists
    ("missing", None, "", False),
    ("ungrounded", ["user"], 5, True),  # no conversation bound: nothing is grounded
]


@pytest.mark.parametrize(("op", "value", "actual", "expected"), OPERATOR_CASES)
def test_operator(op: str, value: Any, actual: Any, expected: bool) -> None:
    assert holds(op, value, {"x": actual}) is expected


@pytest.mark.parametrize("op", OPERATORS)
def test_a_missing_argument_fires_a_comparison_unless_it_may_pass(op: str) -> None:
    value = {"in": ["a"], "not_in": ["a"], "regex": ".*", "ungrounded": ["user"]}.get(op, 1)
    assert holds(op, value, {"other": 1}) is (op != "exists")
    if op not in ("exists", "missing"):
        outcome = ArgPredicate(arg="x", op=op, value=value).evaluate({})
        assert outcome == (True, "argument 'x' is missing")
        optional = ArgPredicate(arg="x", op=op, value=value, if_missing="pass")
        assert not optional.holds({"other": 1})


@pytest.mark.parametrize("op", ["exists", "missing"])
def test_if_missing_is_not_for_presence_operators(op: str) -> None:
    with pytest.raises(ValueError, match="about presence itself"):
        ArgPredicate(arg="x", op=op, if_missing="fire")


def test_every_operator_is_covered() -> None:
    assert {case[0] for case in OPERATOR_CASES} == set(OPERATORS)
    assert len(OPERATORS) == 13


def test_nested_argument_paths() -> None:
    arguments = {
        "payee": {"country": "KP", "bank": {"swift": "ABCDKPPY"}},
        "items": [{"sku": "a"}, {"sku": "b"}],
        "a.b": "literal key",
    }
    assert holds("eq", "KP", arguments, arg="payee.country")
    assert holds("regex", "KP", arguments, arg="payee.bank.swift")
    assert holds("eq", "b", arguments, arg="items.1.sku")
    assert holds("eq", "literal key", arguments, arg="a.b")  # an exact key wins over a path
    assert holds("missing", None, arguments, arg="payee.city")
    assert holds("missing", None, arguments, arg="payee.country.code")  # through a string
    assert holds("missing", None, arguments, arg="items.5.sku")
    assert not holds("exists", None, arguments, arg="payee.country.code")


@pytest.mark.parametrize(
    ("pattern", "name", "fires"),
    [
        ("delete_*", "delete_file", True),
        ("delete_*", "delete_", True),
        ("delete_*", "undelete_file", False),
        ("delete_*", "Delete_file", True),  # compared case-insensitively
        ("delete_*", "DELETE_all_files", True),
        ("delete_*", " delete_file\n", True),
        ("delete_*", "delete\u200b_file", True),  # an invisible character does not hide it
        ("transfer_money", "Transfer_Money", True),
        ("transfer_money", "\uff54ransfer_money", True),  # full-width letter (NFKC)
        ("transfer_money", "transfer-money", False),
        ("*", "anything", True),
        ("send_?ail", "send_mail", True),
        ("[ab]_tool", "b_tool", True),
        ("transfer", "transfer_money", False),
        (None, "anything", True),
    ],
)
def test_tool_glob(pattern: str | None, name: str, fires: bool) -> None:
    rule = SafetyRule(id="r", reason="no", tool=pattern)
    assert rule.matches(ToolCall(name=name)) is fires


def test_all_predicates_must_hold() -> None:
    rule = SafetyRule(
        id="big-foreign",
        reason="large foreign transfer",
        tool="transfer",
        when=[
            ArgPredicate(arg="amount", op="gt", value=1000),
            ArgPredicate(arg="payee.country", op="not_in", value=["US"]),
        ],
    )
    assert rule.matches(
        ToolCall(name="transfer", arguments={"amount": 5000, "payee": {"country": "FR"}})
    )
    assert not rule.matches(
        ToolCall(name="transfer", arguments={"amount": 5000, "payee": {"country": "US"}})
    )
    assert not rule.matches(
        ToolCall(name="transfer", arguments={"amount": 50, "payee": {"country": "FR"}})
    )
    assert not rule.matches(
        ToolCall(name="pay", arguments={"amount": 5000, "payee": {"country": "FR"}})
    )


def test_custom_check_hook() -> None:
    seen: list[ToolCall] = []

    def too_many_recipients(call: ToolCall) -> bool:
        seen.append(call)
        return len(call.arguments.get("to", [])) > 2

    policy = SafetyPolicy(
        rules=[SafetyRule(id="spam", reason="too many", tool="send_*", check=too_many_recipients)]
    )
    assert policy.check(calls(("send_mail", {"to": ["a", "b", "c"]}))).effect == "block"
    assert policy.check(calls(("send_mail", {"to": ["a"]}))).effect == "allow"
    assert policy.check(calls(("read_mail", {"to": ["a", "b", "c"]}))).effect == "allow"
    assert len(seen) == 2  # the hook only runs once name and predicates match
    assert "check" not in policy.to_dict()["rules"][0]


def test_custom_check_runs_after_predicates() -> None:
    rule = SafetyRule(
        id="r",
        reason="r",
        when=[ArgPredicate(arg="path", op="exists")],
        check=lambda call: call.arguments["path"].startswith("/etc"),
    )
    assert rule.matches(ToolCall(name="write", arguments={"path": "/etc/passwd"}))
    assert not rule.matches(ToolCall(name="write", arguments={}))  # no KeyError from the hook


POLICY = SafetyPolicy(
    rules=[
        SafetyRule(
            id="review-email", effect="escalate", reason="email leaves the org", tool="send_*"
        ),
        SafetyRule(id="no-delete", reason="deleting is irreversible", tool="delete_*"),
        SafetyRule(
            id="no-big-transfers",
            reason="transfers over 1000 need a human",
            tool="transfer",
            when=[ArgPredicate(arg="amount", op="gt", value=1000)],
        ),
        SafetyRule(
            id="sanctioned",
            reason="sanctioned country",
            tool="transfer",
            when=[ArgPredicate(arg="payee.country", op="in", value=["KP", "IR"])],
        ),
        SafetyRule(
            id="shell-rm",
            reason="no recursive deletes",
            tool="shell",
            when=[ArgPredicate(arg="cmd", op="regex", value=r"\brm\s+-\w*r")],
        ),
    ]
)


def test_allow_when_no_rule_fires() -> None:
    decision = POLICY.check(calls(("search", {"q": "weather"})))
    assert decision == SafetyDecision("allow", None, None, None)


def test_block_names_rule_reason_and_call() -> None:
    action = calls(("search", {}), ("delete_file", {"path": "/tmp/x"}))
    decision = POLICY.check(action)
    assert decision.effect == "block"
    assert decision.rule == "no-delete"
    assert decision.reason == "deleting is irreversible"
    assert decision.call == action.calls[1]


def test_block_wins_over_escalate() -> None:
    # the escalate rule comes first in rule order and fires on the first call; block still wins
    decision = POLICY.check(calls(("send_mail", {}), ("delete_file", {})))
    assert (decision.effect, decision.rule) == ("block", "no-delete")
    assert POLICY.check(calls(("send_mail", {}))).effect == "escalate"


def test_first_block_rule_in_rule_order_wins() -> None:
    # the call order puts the sanctioned payee first, but no-big-transfers comes first in the rules
    action = calls(
        ("transfer", {"amount": 1, "payee": {"country": "KP"}}), ("transfer", {"amount": 5000})
    )
    assert POLICY.check(action).rule == "no-big-transfers"


@pytest.mark.parametrize(
    "action", [RespondAction(content="rm -rf /"), BlockedAction(reason="refused by the model")]
)
def test_non_tool_actions_are_allowed(action: Action) -> None:
    assert POLICY.check(action).effect == "allow"
    assert POLICY.apply(action) == (action, SafetyDecision("allow"))


def test_apply_blocks() -> None:
    action = calls(("transfer", {"amount": "2500", "payee": {"country": "FR"}}))
    result, decision = POLICY.apply(action)
    assert isinstance(result, BlockedAction)
    assert result.rule == "no-big-transfers"
    assert result.reason == "transfers over 1000 need a human"
    assert result.attempted == action
    assert decision.effect == "block"


def test_apply_passes_escalate_and_allow_through() -> None:
    for action, effect in [
        (calls(("send_mail", {})), "escalate"),
        (calls(("search", {})), "allow"),
    ]:
        result, decision = POLICY.apply(action)
        assert result is action
        assert decision.effect == effect


def test_a_policy_without_rules_allows_every_call() -> None:
    policy = SafetyPolicy()
    assert policy.rules == []
    assert policy.check(calls(("delete_everything", {}))).effect == "allow"


def test_a_rule_with_no_name_and_no_predicates_fires_on_every_call() -> None:
    policy = SafetyPolicy(rules=[SafetyRule(id="lockdown", reason="read-only mode")])
    assert policy.check(calls(("search", {}))).rule == "lockdown"


POLICY_DATA: dict[str, Any] = {
    "rules": [
        {
            "id": "review-email",
            "effect": "escalate",
            "reason": "email leaves the org",
            "tool": "send_*",
        },
        {"id": "no-delete", "reason": "deleting is irreversible", "tool": "delete_*"},
        {
            "id": "no-big-transfers",
            "reason": "transfers over 1000 need a human",
            "tool": "transfer",
            "when": [{"arg": "amount", "op": "gt", "value": 1000}],
        },
        {
            "id": "sanctioned",
            "reason": "sanctioned country",
            "tool": "transfer",
            "when": [{"arg": "payee.country", "op": "in", "value": ["KP", "IR"]}],
        },
        {
            "id": "shell-rm",
            "reason": "no recursive deletes",
            "tool": "shell",
            "when": [{"arg": "cmd", "op": "regex", "value": r"\brm\s+-\w*r"}],
        },
    ]
}

ACTIONS: list[Action] = [
    calls(("search", {"q": "x"})),
    calls(("delete_file", {"path": "/tmp/x"})),
    calls(("send_mail", {"to": "a@b.c"})),
    calls(("send_mail", {}), ("delete_file", {})),
    calls(("transfer", {"amount": 999, "payee": {"country": "FR"}})),
    calls(("transfer", {"amount": "1000.01", "payee": {"country": "FR"}})),
    calls(("transfer", {"amount": 10, "payee": {"country": "IR"}})),
    calls(("transfer", {"amount": "lots"})),
    calls(("shell", {"cmd": "ls -la"})),
    calls(("shell", {"cmd": "rm -rf build"})),
    RespondAction(content="done"),
    BlockedAction(reason="no"),
]


def test_policy_data_matches_python_policy() -> None:
    assert SafetyPolicy.from_dict(POLICY_DATA).to_dict() == POLICY.to_dict()


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_policy_file_decides_like_python(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"policy{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(POLICY_DATA))
    else:
        path.write_text(yaml.safe_dump(POLICY_DATA))
    loaded = SafetyPolicy.from_file(path)
    assert [loaded.check(a) for a in ACTIONS] == [POLICY.check(a) for a in ACTIONS]
    effects = [POLICY.check(a).effect for a in ACTIONS]
    assert effects.count("block") == 6 and effects.count("escalate") == 1  # "lots" fails closed


def test_hand_written_yaml(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        """\
- id: no-big-transfers
  reason: transfers over 1000 need a human
  tool: transfer
  when:
    - {arg: amount, op: gt, value: 1e3}  # PyYAML reads 1e3 as a string; still numeric here
"""
    )
    policy = SafetyPolicy.from_file(path)
    assert policy.check(calls(("transfer", {"amount": 1500}))).rule == "no-big-transfers"
    assert policy.check(calls(("transfer", {"amount": 500}))).effect == "allow"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"saved{suffix}"
    POLICY.save(path)
    loaded = SafetyPolicy.from_file(path)
    assert loaded.to_dict() == POLICY.to_dict()
    assert [loaded.check(a) for a in ACTIONS] == [POLICY.check(a) for a in ACTIONS]


def load_error(data: Any, source: str = "policy.yaml") -> str:
    with pytest.raises(SafetyPolicyError) as info:
        SafetyPolicy.from_dict(data, source=source)
    return str(info.value)


def rule(**fields: Any) -> dict[str, Any]:
    return {"id": "r", "reason": "because", **fields}


def test_error_unknown_operator() -> None:
    bad = rule(id="no-big-transfers", when=[{"arg": "amount", "op": "gte", "value": 5}])
    data = {"rules": [rule(id="a"), rule(id="b"), bad]}
    message = load_error(data)
    assert message.startswith(
        "policy.yaml: rule 2 ('no-big-transfers'): when[0].op: unknown operator 'gte' "
        "(expected one of: eq, ne, gt, ge, lt, le, regex, in, not_in, exists, missing, contains, "
        "ungrounded)"
    )


def test_error_missing_field() -> None:
    assert load_error([{"id": "x"}]) == "policy.yaml: rule 0 ('x'): reason: field required"
    assert load_error([{"reason": "r"}]) == "policy.yaml: rule 0: id: field required"
    message = load_error([rule(when=[{"op": "exists"}])])
    assert message == "policy.yaml: rule 0 ('r'): when[0].arg: field required"


def test_error_bad_regex() -> None:
    message = load_error([rule(id="sh", when=[{"arg": "cmd", "op": "regex", "value": "rm ("}])])
    assert message.startswith("policy.yaml: rule 0 ('sh'): when[0].value: invalid regex 'rm (':")


def test_error_extra_key() -> None:
    message = load_error([rule(tools="delete_*")])
    assert message.startswith("policy.yaml: rule 0 ('r'): tools: unknown field")
    assert "tool" in message
    message = load_error([rule(when=[{"arg": "a", "op": "eq", "vale": 1}])])
    assert message.startswith("policy.yaml: rule 0 ('r'): when[0].vale: unknown field")
    assert load_error({"rules": [], "defaults": "allow"}).startswith("policy.yaml: defaults:")


def test_error_duplicate_id() -> None:
    message = load_error([rule(id="a"), rule(id="b"), rule(id="a")])
    assert message == "policy.yaml: rule 2 ('a'): id: duplicate rule id (already used by rule 0)"
    with pytest.raises(ValueError, match="duplicate rule id"):
        SafetyPolicy(rules=[SafetyRule(id="a", reason="r"), SafetyRule(id="a", reason="r")])


@pytest.mark.parametrize("op", ["in", "not_in"])
def test_error_in_needs_a_list(op: str) -> None:
    message = load_error([rule(when=[{"arg": "country", "op": op, "value": "US"}])])
    assert (
        message
        == f"policy.yaml: rule 0 ('r'): when[0].value: {op} needs a list of values, got 'US'"
    )
    assert "needs a list" in load_error([rule(when=[{"arg": "country", "op": op}])])


def test_error_comparison_needs_a_number() -> None:
    message = load_error([rule(when=[{"arg": "amount", "op": "gt", "value": "many"}])])
    assert message == "policy.yaml: rule 0 ('r'): when[0].value: gt needs a number, got 'many'"


def test_error_unknown_effect_and_wrong_types() -> None:
    assert "effect: unknown value 'deny'" in load_error([rule(effect="deny")])
    assert load_error([rule(when="amount > 5")]).startswith("policy.yaml: rule 0 ('r'): when:")
    assert load_error(["no-delete"]).startswith("policy.yaml: rule 0:")
    assert load_error({"rules": {"id": "x"}}).startswith("policy.yaml: rules:")
    assert load_error("rules").startswith("policy.yaml: expected a mapping")


def test_every_error_is_reported() -> None:
    message = load_error([{"id": "a"}, rule(id="b", when=[{"arg": "x", "op": "gte"}])])
    assert message.splitlines() == [
        "policy.yaml: rule 0 ('a'): reason: field required",
        "policy.yaml: rule 1 ('b'): when[0].op: unknown operator 'gte' "
        "(expected one of: eq, ne, gt, ge, lt, le, regex, in, not_in, exists, missing, contains, "
        "ungrounded)",
    ]


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"rules": [{"id": "x"}]}))
    with pytest.raises(
        SafetyPolicyError, match=r"policy\.json: rule 0 \('x'\): reason: field required"
    ):
        SafetyPolicy.from_file(path)
    path.write_text("{not json")
    with pytest.raises(SafetyPolicyError, match=r"policy\.json: cannot parse"):
        SafetyPolicy.from_file(path)
    bad_yaml = tmp_path / "policy.yaml"
    bad_yaml.write_text("rules: [unclosed")
    with pytest.raises(SafetyPolicyError, match=r"policy\.yaml: cannot parse"):
        SafetyPolicy.from_file(bad_yaml)
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    with pytest.raises(SafetyPolicyError, match="expected a mapping"):
        SafetyPolicy.from_file(empty)
    with pytest.raises(SafetyPolicyError, match=r"unknown policy format '\.toml'"):
        SafetyPolicy.from_file(tmp_path / "policy.toml")


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(SafetyPolicyError, ValueError)
