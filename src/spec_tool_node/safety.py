"""The safety gate: rules that can refuse an action before any tool runs.

The gate reads the *final* action of a turn, whoever produced it (the cheap proposer, the strong
model), so a verifier that wrongly accepts a draft can never run a forbidden call. A policy is a
list of rules, written in Python or loaded from a JSON/YAML file so it can be reviewed apart from
code. Each rule matches calls by tool name (an fnmatch glob) and argument predicates, and has an id
and a reason, which end up in the BLOCKED action and the ledger so a refusal can always be
explained.

A rule's effect is ``block`` (the action becomes a :class:`~spec_tool_node.actions.BlockedAction`)
or ``escalate``: a draft is never auto-accepted, and ``escalate_to`` names who decides: the strong
model (``strong``, whose own action then stands unless a block rule fires) or a person
(``human``: the node pauses the graph with LangGraph's ``interrupt()`` until someone approves,
edits or rejects the action).

The gate fails closed, because a hostile or sloppy caller controls the arguments' format:

- Tool names are compared after Unicode normalisation (NFKC), without invisible format characters,
  surrounding whitespace or case, so ``delete_*`` matches ``" DELETE_all_files"``.
- A predicate that cannot be evaluated on a value that is present (``amount gt 1000`` on
  ``"5,000"``, ``"$5000"``, ``[5000]``, ``{"value": 5000}``, ``true`` or ``null``) *fires*, and the
  decision's reason says which value could not be read. A rule whose other predicates are false
  still does not fire: it could not have fired whatever the unreadable value meant.
- What a missing argument means is the predicate's ``if_missing``: ``fire`` (the default for every
  comparing operator) or ``pass`` (for an optional argument, e.g. an email's ``cc``). ``exists``
  and ``missing`` are about presence itself and take no ``if_missing``.

Predicates never raise while checking.

``ungrounded`` is the one operator that reads the conversation, not only the call: it fires when
an argument's value is not one the conversation's named roles wrote (by default the user's own
messages). It catches a call that is within every limit and still not what was asked, such as
``transfer(amount="2.5")`` for "Transfer 2.5k to bob", or an amount taken from an email's
injected instructions. Numbers are compared with the amounts written in the messages (``2.5k``,
``$2,500`` and ``2500 USD`` all read 2500; a figure the gate cannot read unambiguously, such as
``3.000,00``, grounds nothing); other text must appear in them (case and spacing aside). A policy
sees the conversation through :meth:`SafetyPolicy.bind`, which the cascade calls every turn; an
unbound policy cannot ground anything, so the predicate fires.
"""

from __future__ import annotations

import fnmatch
import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from spec_tool_node.actions import (
    Action,
    BlockedAction,
    ToolCall,
    ToolCallsAction,
    normalize_tool_name,
)
from spec_tool_node.errors import SpecToolNodeError

Operator = Literal[
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "regex",
    "in",
    "not_in",
    "exists",
    "missing",
    "contains",
    "ungrounded",
]
OPERATORS: tuple[str, ...] = get_args(Operator)
PRESENCE_OPERATORS = ("exists", "missing")
"""Operators about whether an argument is there; every other operator compares its value."""
_ORDERINGS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_MISSING = object()
ROLES = ("user", "assistant", "tool", "system")
"""Conversation roles an ``ungrounded`` predicate can take its values from."""
_ROLE_OF_TYPE = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}
# An amount as people write it: plain (2500, 2.5) or with thousands commas (2,500.00), a currency
# sign before it, an optional scale word after it. A figure with more number-like characters
# around it ("3.000,00", "10.0.0.1", "5000USD") is not read at all: the gate does not guess.
_AMOUNT = re.compile(
    r"(?<![\w.,])[$€£]?\s?(?P<figure>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?![.,]?\d)(?:\s?(?P<scale>k|thousand|m|mn|million|bn|billion)\b)?(?![\w$€£])",
    re.IGNORECASE,
)
_SCALE = {"k": 3, "thousand": 3, "m": 6, "mn": 6, "million": 6, "bn": 9, "billion": 9}
# A plain number as text: ASCII digits, an optional sign, fraction and exponent; nothing else
# ("5,000", "$5000", "5000 USD", "1_000", full-width digits, "inf" and "nan" are not plain).
_PLAIN_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")


class SafetyPolicyError(SpecToolNodeError, ValueError):
    """A policy that cannot be loaded; the message names the file, the rule and the field."""


def _number(value: Any) -> int | float | None:
    """``value`` as a number, or None: ints and finite floats, and strings that are a plain
    number (see ``_PLAIN_NUMBER``). Booleans are not numbers. Ints stay ints, so a huge one is
    compared exactly instead of overflowing a float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value):
        return float(value)
    return None


def _equal(actual: Any, expected: Any) -> bool:
    """Equality that treats ``"5"`` and ``5`` alike (models quote numbers), but not True and 1."""
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return a == b
    return isinstance(actual, bool) == isinstance(expected, bool) and actual == expected


def _comparable(actual: Any, expected: Any) -> bool:
    """Whether ``actual`` is of a kind ``expected`` can be compared with, so that "not equal"
    means something: a rule written about a number needs a number (or a plain-number string), one
    about a string a string or a number, one about a boolean a boolean. A list, a dict or a null
    where the rule expects a scalar cannot be read. Containers and null in the rule compare
    structurally with anything."""
    if expected is None or isinstance(expected, list | dict):
        return True
    if isinstance(expected, bool):
        return isinstance(actual, bool)
    if _number(expected) is not None and not isinstance(expected, str):
        return _number(actual) is not None
    return isinstance(actual, str) or _number(actual) is not None


def _text(value: Any) -> str | None:
    """A string or a number as the text a regex reads, or None (an int too long to print is
    not readable either: Python refuses to turn it into text)."""
    if isinstance(value, str):
        return value
    if _number(value) is None:
        return None
    try:
        return str(value)
    except ValueError:
        return None


def _show(value: Any) -> str:
    """A short, printable rendering of an argument value for a reason text."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=repr)
    except (ValueError, RecursionError):  # an int too long to print, a cycle, deep nesting
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _lookup(arguments: dict[str, Any], path: str) -> Any:
    """The argument at ``path``: an exact key first, else a dotted path into nested dicts/lists."""
    if path in arguments:
        return arguments[path]
    current: Any = arguments
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _amounts(text: str) -> list[Decimal]:
    """The amounts written in ``text`` (see ``_AMOUNT``), scale words applied, exactly."""
    found = []
    for m in _AMOUNT.finditer(text):
        value = Decimal(m["figure"].replace(",", ""))
        found.append(value.scaleb(_SCALE[m["scale"].lower()]) if m["scale"] else value)
    return found


def _exact(value: Any) -> Decimal | None:
    """``value`` as an exact decimal when ``_number`` reads it as a finite number, else None.
    Floats would make 999,999,999 and 1,000,000,000 close enough to pass for each other."""
    number = _number(value)
    if number is None or (isinstance(number, float) and not math.isfinite(number)):
        return None
    return Decimal(value.strip() if isinstance(value, str) else repr(value))


def _squash(text: str) -> str:
    """Text compared for grounding: case-folded, runs of whitespace as one space."""
    return " ".join(text.casefold().split())


def _message_role_and_text(message: Any) -> tuple[str | None, str]:
    """A LangChain message's or an OpenAI-style dict's role and text."""
    if isinstance(message, dict):
        role, content = message.get("role"), message.get("content")
        if isinstance(content, list):
            content = " ".join(
                str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content
            )
        return (role if role in ROLES else None), content if isinstance(content, str) else ""
    return _ROLE_OF_TYPE.get(getattr(message, "type", None)), getattr(message, "text", "") or ""


@dataclass(frozen=True)
class Conversation:
    """What ``ungrounded`` predicates read, prepared once per turn: per role, the text it wrote
    (case-folded, runs of whitespace as one space) and the amounts in it."""

    texts: dict[str, tuple[str, ...]]
    amounts: dict[str, frozenset[Decimal]]

    @classmethod
    def of(cls, messages: Sequence[Any]) -> Conversation:
        """From LangChain messages or OpenAI-style dicts (unknown roles are left out)."""
        texts: dict[str, list[str]] = {}
        for message in messages:
            role, text = _message_role_and_text(message)
            if role is not None and text:
                texts.setdefault(role, []).append(text)
        return cls(
            {role: tuple(_squash(t) for t in written) for role, written in texts.items()},
            {
                role: frozenset(a for t in written for a in _amounts(t))
                for role, written in texts.items()
            },
        )

    def grounds(self, value: Any, roles: Sequence[str]) -> bool | None:
        """Whether ``roles`` wrote ``value``: a number among their amounts, other text inside
        their messages. None when ``value`` is neither (a list, a dict, a bool, a null)."""
        number = _exact(value)
        if number is not None:
            return any(number in self.amounts.get(role, ()) for role in roles)
        if not isinstance(value, str) or _number(value) is not None:  # or an infinite number
            return None
        needle = _squash(value)
        return bool(needle) and any(needle in t for role in roles for t in self.texts.get(role, ()))


class Outcome(NamedTuple):
    """A predicate's result: whether it holds, and, when it holds only because the gate fails
    closed (a missing or unreadable value), the note that says so."""

    holds: bool
    note: str | None = None


class ArgPredicate(BaseModel):
    """One condition on a call's arguments, e.g. ``amount gt 1000`` or ``payee.country in [..]``."""

    model_config = ConfigDict(extra="forbid")

    arg: str = Field(
        min_length=1, description="Argument name, or a dotted path such as payee.country or items.0"
    )
    op: Operator
    value: Any = Field(default=None, validate_default=True)
    if_missing: Literal["fire", "pass"] | None = Field(
        default=None,
        description="What a missing argument means for a comparing operator: 'fire' (default, "
        "fail closed) or 'pass' (an optional argument). Not allowed with exists/missing.",
    )

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        """Catch at load time what would otherwise silently never match at check time."""
        op = info.data.get("op")
        if op == "regex":
            if not isinstance(value, str):
                raise ValueError(f"regex needs a pattern string, got {value!r}")
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"invalid regex {value!r}: {e}") from e
        elif op in ("in", "not_in") and not isinstance(value, list):
            raise ValueError(f"{op} needs a list of values, got {value!r}")
        elif op in _ORDERINGS and _number(value) is None:
            raise ValueError(f"{op} needs a number, got {value!r}")
        elif op == "ungrounded":
            if value is None:
                return ["user"]
            if not (isinstance(value, list) and value and set(value) <= set(ROLES)):
                raise ValueError(
                    f"ungrounded needs a list of the roles whose messages ground the value "
                    f"(any of: {', '.join(ROLES)}), got {value!r}"
                )
        return value

    @model_validator(mode="after")
    def _if_missing_fits_op(self) -> Self:
        if self.op in PRESENCE_OPERATORS and self.if_missing is not None:
            raise ValueError(f"if_missing: {self.op} is about presence itself; leave it out")
        return self

    def holds(self, arguments: dict[str, Any], conversation: Conversation | None = None) -> bool:
        """Whether the predicate holds for these arguments, failing closed (never raises)."""
        return self.evaluate(arguments, conversation).holds

    def evaluate(
        self, arguments: dict[str, Any], conversation: Conversation | None = None
    ) -> Outcome:
        """Whether the predicate holds, with a note when it holds only by failing closed.

        ``conversation`` is what ``ungrounded`` reads; without one it fires.
        """
        actual = _lookup(arguments, self.arg)
        if self.op in PRESENCE_OPERATORS:
            return Outcome((actual is _MISSING) == (self.op == "missing"))
        if actual is _MISSING:
            if self.if_missing == "pass":
                return Outcome(False)
            return Outcome(True, f"argument {self.arg!r} is missing")
        if self.op == "ungrounded":
            return self._ungrounded(actual, conversation)
        try:
            result = self._compare(actual)
        except RecursionError:  # nested deeper than Python compares: unreadable, not a crash
            result = None
        if result is None:
            return Outcome(
                True, f"argument {self.arg!r} = {_show(actual)} could not be read for {self.op}"
            )
        return Outcome(result)

    def _compare(self, actual: Any) -> bool | None:
        """The comparison on a present value, or None when the value cannot be read for it."""
        match self.op:
            case "eq" | "ne":
                if not _comparable(actual, self.value):
                    return None
                return _equal(actual, self.value) == (self.op == "eq")
            case "in" | "not_in":
                if self.value and not any(_comparable(actual, v) for v in self.value):
                    return None
                return any(_equal(actual, v) for v in self.value) == (self.op == "in")
            case "regex":
                text = _text(actual)
                return None if text is None else re.search(self.value, text) is not None
            case "contains":
                return self._contains(actual)
            case _:
                a, b = _number(actual), _number(self.value)
                if a is None or b is None:
                    return None
                return _ORDERINGS[self.op](a, b)

    def _ungrounded(self, actual: Any, conversation: Conversation | None) -> Outcome:
        who = " or ".join(self.value)
        if conversation is None:
            return Outcome(True, f"no conversation to find argument {self.arg!r} in")
        grounded = conversation.grounds(actual, self.value)
        if grounded is None:
            return Outcome(
                True, f"argument {self.arg!r} = {_show(actual)} could not be read for ungrounded"
            )
        if grounded:
            return Outcome(False)
        return Outcome(True, f"argument {self.arg!r} = {_show(actual)} is not what the {who} wrote")

    def _contains(self, actual: Any) -> bool | None:
        if isinstance(actual, str):
            needle = _text(self.value)
            return None if needle is None else needle in actual
        if isinstance(actual, list):
            if any(_equal(v, self.value) for v in actual):
                return True
            return False if all(_comparable(v, self.value) for v in actual) else None
        return None


class Firing(NamedTuple):
    """A rule that fires on a call, with the notes of predicates that held by failing closed."""

    rule: SafetyRule
    notes: tuple[str, ...]

    @property
    def reason(self) -> str:
        if not self.notes:
            return self.rule.reason
        return f"{self.rule.reason} ({'; '.join(self.notes)})"


class SafetyRule(BaseModel):
    """A rule fires on a call whose name matches ``tool`` and for which every predicate holds."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    effect: Literal["block", "escalate"] = "block"
    escalate_to: Literal["strong", "human"] | None = Field(
        default=None,
        description="Who decides an escalated action: the strong model (the default), or a "
        "person (the graph pauses with interrupt()). Only for effect 'escalate'.",
    )
    reason: str = Field(min_length=1)
    tool: str | None = Field(
        default=None,
        description="fnmatch glob on the tool name, compared case-insensitively after "
        "normalisation; None = any.",
    )
    when: list[ArgPredicate] = Field(default_factory=list)
    check: SkipJsonSchema[Callable[[ToolCall], bool] | None] = Field(
        default=None,
        exclude=True,
        description="Python-only hook; must also return True for the rule to fire. Not saved.",
    )

    @model_validator(mode="after")
    def _escalate_to_needs_escalate(self) -> Self:
        if self.escalate_to is not None and self.effect != "escalate":
            raise ValueError("escalate_to: only a rule with effect 'escalate' names who decides")
        return self

    @property
    def decider(self) -> Literal["strong", "human"] | None:
        """Who decides when this rule fires: None for a block, else ``escalate_to``."""
        if self.effect == "block":
            return None
        return self.escalate_to or "strong"

    def fires(self, call: ToolCall, conversation: Conversation | None = None) -> Firing | None:
        """The firing on ``call`` in ``conversation``, or None (an exception in ``check``
        propagates)."""
        if self.tool is not None and not fnmatch.fnmatchcase(
            normalize_tool_name(call.name), normalize_tool_name(self.tool)
        ):
            return None
        notes = []
        for predicate in self.when:
            outcome = predicate.evaluate(call.arguments, conversation)
            if not outcome.holds:
                return None
            if outcome.note:
                notes.append(outcome.note)
        if self.check is not None and not self.check(call):
            return None
        return Firing(self, tuple(notes))

    def matches(self, call: ToolCall, conversation: Conversation | None = None) -> bool:
        """Whether this rule fires on ``call``."""
        return self.fires(call, conversation) is not None


@dataclass(frozen=True)
class SafetyDecision:
    """What the gate decided about an action, and which rule and call made it decide so.

    ``escalate_to`` says who must decide an ``escalate`` (``strong`` or ``human``).
    """

    effect: Literal["allow", "block", "escalate"]
    rule: str | None = None
    reason: str | None = None
    call: ToolCall | None = None
    escalate_to: Literal["strong", "human"] | None = None


ALLOW = SafetyDecision("allow")


def _severity(rule: SafetyRule) -> int:
    """Block beats escalation to a person, which beats escalation to the strong model."""
    return {None: 0, "human": 1, "strong": 2}[rule.decider]


class SafetyPolicy(BaseModel):
    """An ordered list of rules; the most severe firing rule decides, the first of equals names
    the cause (block, then escalate to a person, then escalate to the strong model)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[SafetyRule] = Field(default_factory=list)
    default: Literal["allow"] = Field(
        default="allow",
        description="Effect when no rule fires; deny-by-default is a rule with tool '*'.",
    )
    _conversation: Conversation | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        """Rule ids name refusals in messages and ledgers, so they must be unambiguous."""
        first: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule.id in first:
                raise ValueError(
                    f"rule {i} ({rule.id!r}): id: duplicate rule id (already used by rule "
                    f"{first[rule.id]})"
                )
            first[rule.id] = i
        return self

    @property
    def asks_humans(self) -> bool:
        """Whether some rule escalates to a person (the node then needs a checkpointer)."""
        return any(r.decider == "human" for r in self.rules)

    def bind(self, messages: Sequence[Any]) -> SafetyPolicy:
        """This policy, checking actions in the conversation ``messages`` (LangChain messages or
        OpenAI-style dicts): what ``ungrounded`` predicates read. The policy itself is
        unchanged; the cascade binds it anew every turn."""
        bound = self.model_copy()
        bound._conversation = Conversation.of(messages)
        return bound

    def check(self, action: Action) -> SafetyDecision:
        """Decide on ``action``: the most severe firing rule wins (see the class docstring)."""
        if not isinstance(action, ToolCallsAction):
            return ALLOW
        for severity in range(3):
            for rule in self.rules:
                if _severity(rule) != severity:
                    continue
                for call in action.calls:
                    firing = rule.fires(call, self._conversation)
                    if firing is not None:
                        return SafetyDecision(
                            rule.effect, rule.id, firing.reason, call, rule.decider
                        )
        return ALLOW

    def apply(self, action: Action) -> tuple[Action, SafetyDecision]:
        """Check ``action`` and turn it into a BLOCKED action if a block rule fires."""
        decision = self.check(action)
        if decision.effect == "block" and isinstance(action, ToolCallsAction):
            blocked = BlockedAction(reason=decision.reason, rule=decision.rule, attempted=action)
            return blocked, decision
        return action, decision

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> SafetyPolicy:
        """Validate ``{"rules": [...]}`` (or a bare list of rules) into a policy.

        Raises:
            SafetyPolicyError: naming ``source``, the rule (index and id) and the field.
        """
        if isinstance(data, list):
            data = {"rules": data}
        if not isinstance(data, dict):
            raise SafetyPolicyError(
                f"{source}: expected a mapping with 'rules' or a list of rules, "
                f"got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SafetyPolicyError(_explain(e, data, source)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> SafetyPolicy:
        """Load a policy from ``.json``, ``.yaml`` or ``.yml``."""
        path = Path(path)
        is_json = _is_json(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if is_json else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise SafetyPolicyError(f"{path}: cannot parse: {e}") from e
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data, as a file would hold it (``check`` hooks are left out)."""
        return self.model_dump(mode="json")

    def save(self, path: str | Path) -> None:
        """Write the policy as JSON or YAML, by the file's suffix (``check`` hooks are left out)."""
        path = Path(path)
        if _is_json(path):
            text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        else:
            text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        path.write_text(text, encoding="utf-8")


def _is_json(path: Path) -> bool:
    """Whether ``path`` names a JSON policy (else YAML); any other suffix is an error."""
    if path.suffix not in (".json", ".yaml", ".yml"):
        raise SafetyPolicyError(
            f"{path}: unknown policy format {path.suffix!r} (expected .json, .yaml or .yml)"
        )
    return path.suffix == ".json"


def _explain(error: ValidationError, data: dict[str, Any], source: str) -> str:
    """Turn pydantic's errors into one line each: ``source: rule i ('id'): field: problem``."""
    lines = []
    for err in error.errors():
        loc = list(err["loc"])
        where = []
        model: type[BaseModel] = SafetyPolicy
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            index = loc[1]
            rules = data.get("rules")
            raw = rules[index] if isinstance(rules, list) and index < len(rules) else None
            rule_id = raw.get("id") if isinstance(raw, dict) else None
            where.append(f"rule {index}" + (f" ({rule_id!r})" if rule_id is not None else ""))
            loc = loc[2:]
            model = ArgPredicate if loc[:1] == ["when"] else SafetyRule
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        if field:
            where.append(field)
        lines.append(": ".join([source, *where, _problem(err, model)]))
    return "\n".join(lines)


def _problem(err: Any, model: type[BaseModel]) -> str:
    """A readable description of one pydantic error."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, err["input"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        known = [name for name, f in model.model_fields.items() if not f.exclude]
        return f"unknown field (expected one of: {', '.join(known)})"
    if kind == "literal_error" and err["loc"][-1] == "op":
        return f"unknown operator {got!r} (expected one of: {', '.join(OPERATORS)})"
    if kind == "literal_error":
        return f"unknown value {got!r} (expected {ctx['expected']})"
    if kind == "value_error":
        return str(ctx["error"])
    return f"{err['msg']} (got {got!r})"
