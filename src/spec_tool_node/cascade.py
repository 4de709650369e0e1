"""The cascade: draft cheaply, verify, fall back to the strong model on reject, gate the result.

Modes are data (:data:`~spec_tool_node.modes.MODES`): how many drafts, who scores them, which
models they require. The policy itself is one generator, :func:`decide`, that reads top to bottom
and *yields* what it needs done (propose drafts, score them, let the strong model act). A sync
and an async driver in :class:`Cascade` carry those requests out, so both paths share every
decision.

Rules that hold in every mode: a draft that does not parse, names an unbound
tool or breaks the schema is rejected before any verifier (reason ``invalid``); a proposer or
verifier exception is a reject with its reason; a strong-model exception propagates as a
:class:`CascadeError`; LangGraph interrupts always propagate; the safety gate checks the final
action whoever produced it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.errors import GraphBubbleUp

from spec_tool_node.actions import (
    Action,
    BlockedAction,
    InvalidActionError,
    RespondAction,
    action_from_message,
    action_to_message,
    canonical_text,
    validate_action,
)
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CallRecord, Role, TurnRecord
from spec_tool_node.errors import ConfigError, SpecToolNodeError
from spec_tool_node.modes import MODES, ModeSpec, describe_models, missing_models
from spec_tool_node.safety import SafetyDecision, SafetyPolicy
from spec_tool_node.verifiers.base import Verdict, Verifier

T = TypeVar("T")


class CascadeError(SpecToolNodeError, RuntimeError):
    """The strong model failed: there is nothing left to fall back to."""


# -- what the decision function asks its driver for -------------------------------------------


@dataclass(frozen=True)
class Propose:
    count: int


@dataclass(frozen=True)
class Score:
    drafts: list[Action]


@dataclass(frozen=True)
class Act:
    pass


@dataclass
class Draft:
    """One proposer draft: its message, the action it takes, or why it was rejected early."""

    message: AIMessage | None
    error: str | None = None
    action: Action | None = None
    p_accept: float | None = None


@dataclass
class Scored:
    """The driver's answer to :class:`Score`: one p(ACCEPT) per draft, or the error it hit."""

    p_accept: list[float]
    error: str | None = None


@dataclass
class Decision:
    action: Action
    path: str
    winner: Role | None
    message: AIMessage | None = None
    p_accept: float | None = None
    reject_reason: str | None = None
    safety: SafetyDecision = field(default_factory=lambda: SafetyDecision(effect="allow"))


def decide(
    spec: ModeSpec,
    config: CascadeConfig,
    policy: SafetyPolicy,
    tools: dict[str, dict[str, Any]],
    has_strong: bool,
) -> Generator[Propose | Score | Act, Any, Decision]:
    """The whole decision, for every mode."""
    count = spec.draft_count(config.n_drafts)
    drafts: list[Draft] = (yield Propose(count)) if count else []
    for draft in drafts:
        _check(draft, tools)
    valid = [d for d in drafts if d.error is None]

    if valid and spec.scorer != "none":
        scored: Scored = yield Score([d.action for d in valid])
        for d, p in zip(valid, scored.p_accept, strict=True):
            d.p_accept, d.error = p, scored.error
    else:
        for d in valid:
            d.p_accept = 1.0  # mode B trusts its draft
    best = max(valid, key=lambda d: d.p_accept or 0.0, default=None)
    gate = policy.check(best.action) if best else SafetyDecision(effect="allow")

    if best and best.p_accept >= config.threshold and gate.effect != "escalate":
        return _gated(best.action, policy, "accepted", "cheap", best.message, best.p_accept)

    reason = _reject_reason(drafts, best, gate)
    p_best = best.p_accept if best else None
    if has_strong:
        message: AIMessage = yield Act()
        path = "fallback" if drafts else "strong"
        return _gated(_action_of(message), policy, path, "strong", message, p_best, reason)
    if best is not None:  # cheap only, and the gate wants a second opinion nobody can give
        blocked = BlockedAction(reason=gate.reason or "", rule=gate.rule, attempted=best.action)
        return Decision(blocked, "blocked", "cheap", best.message, p_best, reason, gate)
    failed = drafts[0] if drafts else None
    text = (
        failed.message.text if failed and failed.message else ""
    ) or f"No valid action ({reason})."
    return Decision(RespondAction(content=text), "invalid", "cheap", None, None, reason)


def _check(draft: Draft, tools: dict[str, dict[str, Any]]) -> None:
    """Reject a draft that cannot run (unparseable, unbound tool, bad arguments) before scoring."""
    if draft.error is not None or draft.message is None:
        return
    try:
        draft.action = action_from_message(draft.message)
        validate_action(draft.action, tools)
    except InvalidActionError as e:
        draft.error = f"invalid: {e}"


def _reject_reason(drafts: list[Draft], best: Draft | None, gate: SafetyDecision) -> str | None:
    if not drafts:
        return None
    if best is None:
        return drafts[0].error
    if best.error:
        return best.error
    if gate.effect == "escalate":
        return f"escalate: {gate.rule}"
    return "rejected"


def _action_of(message: AIMessage) -> Action:
    """The strong model's action; an unparseable call ends the turn with its text, never a crash."""
    try:
        return action_from_message(message)
    except InvalidActionError as e:
        return RespondAction(content=message.text or f"The model produced an invalid action: {e}")


def _gated(
    action: Action,
    policy: SafetyPolicy,
    path: str,
    winner: Role,
    message: AIMessage | None,
    p_accept: float | None = None,
    reason: str | None = None,
) -> Decision:
    """Apply the safety gate to the final action (escalate has been settled by now)."""
    final, gate = policy.apply(action)
    if isinstance(final, BlockedAction):
        path = "blocked"
    return Decision(final, path, winner, message, p_accept, reason, gate)


# -- drivers ------------------------------------------------------------------------------------


class ModelCalls(Protocol):
    """How the cascade reaches the models: the node binds them; the middleware uses its handler."""

    proposer_name: str
    strong_name: str
    judge: Verifier | None
    """The strong model prompted as a judge (mode C)."""

    def draft(self, sample: bool) -> AIMessage: ...

    def act(self) -> AIMessage: ...

    async def adraft(self, sample: bool) -> AIMessage: ...

    async def aact(self) -> AIMessage: ...


def _record(
    role: Role,
    name: str,
    purpose: str,
    message: AIMessage | None,
    wall: float,
    error: str | None = None,
) -> CallRecord:
    usage = (message.usage_metadata if message is not None else None) or {}
    model = (message.response_metadata.get("model_name") if message is not None else None) or name
    return CallRecord(
        role=role,
        model=model,
        purpose=purpose,
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
        wall_s=wall,
        ok=error is None,
        error=error,
    )


def turn_record(
    config: CascadeConfig,
    decision: Decision,
    calls: list[CallRecord],
    *,
    wall_s: float | None = None,
) -> TurnRecord:
    """Price a decision's calls into the ledger entry (shared by the node and the simulator)."""
    fields = {} if wall_s is None else {"wall_s": wall_s}
    return config.cost_model.turn(
        calls,
        mode=config.mode,
        path=decision.path,
        action=canonical_text(decision.action),
        p_accept=decision.p_accept,
        reject_reason=decision.reject_reason,
        winner=decision.winner,
        safety=decision.safety.effect,
        rule=decision.safety.rule,
        **fields,
    )


def _error(e: Exception) -> str:
    return f"error: {type(e).__name__}: {e}"


def _attempt(call: Callable[[], T]) -> tuple[T | Exception, float]:
    """Run one model call, timed; an exception becomes its outcome (interrupts propagate)."""
    start = time.perf_counter()
    try:
        outcome: T | Exception = call()
    except GraphBubbleUp:
        raise
    except Exception as e:
        outcome = e
    return outcome, time.perf_counter() - start


async def _aattempt(call: Callable[[], Awaitable[T]]) -> tuple[T | Exception, float]:
    """:func:`_attempt` for a coroutine."""
    start = time.perf_counter()
    try:
        outcome: T | Exception = await call()
    except GraphBubbleUp:
        raise
    except Exception as e:
        outcome = e
    return outcome, time.perf_counter() - start


def _as_draft(
    outcome: AIMessage | Exception, wall: float, name: str, calls: list[CallRecord]
) -> Draft:
    """A proposer failure is a draft that carries its error: the cascade rejects it."""
    if isinstance(outcome, Exception):
        calls.append(_record("cheap", name, "draft", None, wall, _error(outcome)))
        return Draft(message=None, error=_error(outcome))
    calls.append(_record("cheap", name, "draft", outcome, wall))
    return Draft(message=outcome)


def _as_scored(outcome: list[Verdict] | Exception, count: int, calls: list[CallRecord]) -> Scored:
    """A verifier failure scores every draft 0: a reject with its reason."""
    if isinstance(outcome, Exception):
        return Scored(p_accept=[0.0] * count, error=_error(outcome))
    calls.extend(v.record for v in outcome if v.record is not None)
    return Scored(p_accept=[min(max(v.p_accept, 0.0), 1.0) for v in outcome])


def _as_action(
    outcome: AIMessage | Exception, wall: float, name: str, calls: list[CallRecord]
) -> AIMessage:
    """The strong model is the last resort: its failure propagates."""
    if isinstance(outcome, Exception):
        raise _strong_failed(name, outcome) from outcome
    calls.append(_record("strong", name, "act", outcome, wall))
    return outcome


def _strong_failed(name: str, e: Exception) -> CascadeError:
    return CascadeError(f"the strong model {name!r} failed, and there is no fallback: {e}")


class Cascade:
    """Runs :func:`decide` for one mode against a set of models, a verifier and a safety policy.

    Args:
        config: the cascade configuration.
        verifier: scores drafts in modes D and E (required there); mode C's judge is the
            strong model prompted as a judge, which the model calls provide.
        policy: the safety gate; ``None`` allows everything.
        has_strong, has_proposer: whether the model calls can reach those models.

    Raises:
        ConfigError: the mode requires a model that is not there.
    """

    def __init__(
        self,
        config: CascadeConfig,
        *,
        verifier: Verifier | None = None,
        policy: SafetyPolicy | None = None,
        has_strong: bool = True,
        has_proposer: bool = True,
    ) -> None:
        self.config = config
        self.spec = MODES[config.mode]
        lacking = missing_models(
            config.mode,
            proposer=True if has_proposer else None,
            verifier=verifier,
            strong=True if has_strong else None,
        )
        if lacking:
            raise ConfigError(f"mode {config.mode} needs {describe_models(lacking)}")
        self.verifier = verifier
        self.policy = policy or SafetyPolicy()
        self.has_strong = has_strong

    def _scorer(self, models: ModelCalls) -> Verifier:
        scorer = self.verifier if self.spec.scorer == "verifier" else models.judge
        assert scorer is not None  # checked at construction
        return scorer

    def run(
        self, models: ModelCalls, context: Sequence[BaseMessage], tools: dict[str, dict[str, Any]]
    ) -> tuple[AIMessage, TurnRecord]:
        calls: list[CallRecord] = []
        steps = decide(self.spec, self.config, self.policy, tools, self.has_strong)
        start = time.perf_counter()
        try:
            request = next(steps)
            while True:
                if isinstance(request, Propose):
                    answer: Any = [
                        _as_draft(
                            *_attempt(partial(models.draft, i > 0)), models.proposer_name, calls
                        )
                        for i in range(request.count)
                    ]
                elif isinstance(request, Score):
                    score = partial(
                        self._scorer(models).score_batch,
                        context,
                        list(tools.values()),
                        request.drafts,
                    )
                    answer = _as_scored(_attempt(score)[0], len(request.drafts), calls)
                else:
                    answer = _as_action(*_attempt(models.act), models.strong_name, calls)
                request = steps.send(answer)
        except StopIteration as stop:
            return self._finish(stop.value, calls, time.perf_counter() - start, models)

    async def arun(
        self, models: ModelCalls, context: Sequence[BaseMessage], tools: dict[str, dict[str, Any]]
    ) -> tuple[AIMessage, TurnRecord]:
        calls: list[CallRecord] = []
        steps = decide(self.spec, self.config, self.policy, tools, self.has_strong)
        start = time.perf_counter()
        try:
            request = next(steps)
            while True:
                if isinstance(request, Propose):
                    drafted = await asyncio.gather(
                        *(_aattempt(partial(models.adraft, i > 0)) for i in range(request.count))
                    )
                    answer: Any = [_as_draft(*d, models.proposer_name, calls) for d in drafted]
                elif isinstance(request, Score):
                    ascore = partial(
                        self._scorer(models).ascore_batch,
                        context,
                        list(tools.values()),
                        request.drafts,
                    )
                    answer = _as_scored((await _aattempt(ascore))[0], len(request.drafts), calls)
                else:
                    answer = _as_action(*await _aattempt(models.aact), models.strong_name, calls)
                request = steps.send(answer)
        except StopIteration as stop:
            return self._finish(stop.value, calls, time.perf_counter() - start, models)

    def _finish(
        self, decision: Decision, calls: list[CallRecord], wall: float, models: ModelCalls
    ) -> tuple[AIMessage, TurnRecord]:
        turn = turn_record(self.config, decision, calls, wall_s=wall)
        winner_name = {"cheap": models.proposer_name, "strong": models.strong_name, None: None}[
            decision.winner
        ]
        if decision.message is not None:
            winner_name = decision.message.response_metadata.get("model_name", winner_name)
        usage = {
            "input_tokens": sum(c.input_tokens for c in calls),
            "output_tokens": sum(c.output_tokens for c in calls),
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        spec = turn.model_dump(
            include={
                "mode",
                "path",
                "p_accept",
                "reject_reason",
                "winner",
                "safety",
                "rule",
                "cost",
                "baseline_cost",
                "savings",
            }
        )
        message = action_to_message(
            decision.action,
            usage_metadata=usage,
            response_metadata={"model_name": winner_name, "spec": spec},
        )
        return message, turn
