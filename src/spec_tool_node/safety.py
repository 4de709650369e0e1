"""The safety gate: rules that can refuse an action before any tool runs.

The gate reads the *final* action of a turn, whoever produced it (the cheap proposer, the strong
model), so a verifier that wrongly accepts a draft can never run a forbidden call. A policy is a
list of rules, written in Python or loaded from a JSON/YAML file so it can be reviewed apart from
code.
Each rule matches calls by tool name (an fnmatch glob) and argument predicates, and has an id and a
reason, which end up in the BLOCKED action and the ledger so a refusal can always be explained.

A rule's effect is ``block`` (the action becomes a :class:`~spec_tool_node.actions.BlockedAction`)
or ``escalate`` (a draft is never auto-accepted; the strong model decides). Predicates never raise
while checking: an argument that is missing or not comparable makes the predicate false. That is
fail-open for that one predicate, so pair e.g. ``amount gt 1000`` with a rule that blocks an amount
that is not a number (``regex``) when that matters.
"""

from __future__ import annotations

import fnmatch
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from spec_tool_node.actions import Action, BlockedAction, ToolCall, ToolCallsAction

Operator = Literal[
    "eq", "ne", "gt", "ge", "lt", "le", "regex", "in", "not_in", "exists", "missing", "contains"
]
OPERATORS: tuple[str, ...] = get_args(Operator)
_ORDERINGS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_MISSING = object()


class SafetyPolicyError(ValueError):
    """A policy that cannot be loaded; the message names the file, the rule and the field."""


def _number(value: Any) -> float | None:
    """``value`` as a number (numeric strings included), or None; booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _equal(actual: Any, expected: Any) -> bool:
    """Equality that treats ``"5"`` and ``5`` alike (models quote numbers), but not True and 1."""
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return a == b
    return isinstance(actual, bool) == isinstance(expected, bool) and actual == expected


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


class ArgPredicate(BaseModel):
    """One condition on a call's arguments, e.g. ``amount gt 1000`` or ``payee.country in [..]``."""

    model_config = ConfigDict(extra="forbid")

    arg: str = Field(
        min_length=1, description="Argument name, or a dotted path such as payee.country or items.0"
    )
    op: Operator
    value: Any = Field(default=None, validate_default=True)

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
        return value

    def holds(self, arguments: dict[str, Any]) -> bool:
        """Whether the predicate holds for these arguments (never raises)."""
        actual = _lookup(arguments, self.arg)
        if actual is _MISSING:
            return self.op == "missing"
        match self.op:
            case "exists":
                return True
            case "missing":
                return False
            case "eq":
                return _equal(actual, self.value)
            case "ne":
                return not _equal(actual, self.value)
            case "regex":
                return re.search(self.value, str(actual)) is not None
            case "in":
                return any(_equal(actual, v) for v in self.value)
            case "not_in":
                return not any(_equal(actual, v) for v in self.value)
            case "contains":
                if isinstance(actual, str):
                    return isinstance(self.value, str) and self.value in actual
                return isinstance(actual, list) and any(_equal(v, self.value) for v in actual)
            case _:
                a, b = _number(actual), _number(self.value)
                return a is not None and b is not None and _ORDERINGS[self.op](a, b)


class SafetyRule(BaseModel):
    """A rule fires on a call whose name matches ``tool`` and for which every predicate holds."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    effect: Literal["block", "escalate"] = "block"
    reason: str = Field(min_length=1)
    tool: str | None = Field(default=None, description="fnmatch glob on the tool name; None = any.")
    when: list[ArgPredicate] = Field(default_factory=list)
    check: SkipJsonSchema[Callable[[ToolCall], bool] | None] = Field(
        default=None,
        exclude=True,
        description="Python-only hook; must also return True for the rule to fire. Not saved.",
    )

    def matches(self, call: ToolCall) -> bool:
        """Whether this rule fires on ``call`` (an exception in ``check`` propagates)."""
        if self.tool is not None and not fnmatch.fnmatchcase(call.name, self.tool):
            return False
        if not all(p.holds(call.arguments) for p in self.when):
            return False
        return self.check is None or bool(self.check(call))


@dataclass(frozen=True)
class SafetyDecision:
    """What the gate decided about an action, and which rule and call made it decide so."""

    effect: Literal["allow", "block", "escalate"]
    rule: str | None = None
    reason: str | None = None
    call: ToolCall | None = None


ALLOW = SafetyDecision("allow")


class SafetyPolicy(BaseModel):
    """An ordered list of rules; block beats escalate, and the first firing rule names the cause."""

    model_config = ConfigDict(extra="forbid")

    rules: list[SafetyRule] = Field(default_factory=list)
    default: Literal["allow"] = Field(
        default="allow",
        description="Effect when no rule fires; deny-by-default is a rule with tool '*'.",
    )

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

    @classmethod
    def allow_all(cls) -> SafetyPolicy:
        """A policy with no rules: every action is allowed."""
        return cls()

    def check(self, action: Action) -> SafetyDecision:
        """Decide on ``action``: any firing block rule wins over any escalate rule."""
        if not isinstance(action, ToolCallsAction):
            return ALLOW
        for effect in ("block", "escalate"):
            for rule in self.rules:
                if rule.effect != effect:
                    continue
                for call in action.calls:
                    if rule.matches(call):
                        return SafetyDecision(rule.effect, rule.id, rule.reason, call)
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
