"""The cascade: draft cheaply, verify, fall back to the strong model on reject, gate the result.

Modes are data (:data:`~spec_tool_node.modes.MODES`): how many drafts, who scores them, which
models they require. The policy itself is one generator, :func:`decide`, that reads top to bottom
and *yields* what it needs done (propose drafts, score them, let the strong model act). A sync
and an async driver in :class:`Cascade` carry those requests out, so both paths share every
decision.

Rules that hold in every mode: a draft that does not parse, names an unbound tool, breaks the
schema or is empty is rejected before any verifier (reason ``invalid``); tool names are resolved
against the bound tools first (case, whitespace); a proposer or verifier exception or timeout is a
reject with its reason; the strong model's action is validated like a draft, and an invalid one
ends the turn without a tool call (path ``invalid``); a strong-model exception or timeout
propagates as a :class:`CascadeError` that carries the turn's partial ledger entry; LangGraph
interrupts always propagate; the safety gate checks the final action whoever produced it, and an
action a rule escalates to a person ends the decision on path ``escalated`` for the node to ask.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.func import task

from spec_tool_node.actions import (
    Action,
    BlockedAction,
    InvalidActionError,
    RespondAction,
    ToolCall,
    ToolCallsAction,
    action_from_message,
    action_to_message,
    canonical_text,
    resolve_action,
)
from spec_tool_node.chat_models.watch import DraftWatch
from spec_tool_node.config import CascadeConfig, accepts_nothing
from spec_tool_node.costs import CallRecord, Role, TurnRecord
from spec_tool_node.errors import ConfigError, SpecToolNodeError
from spec_tool_node.modes import MODES, ModeSpec, describe_models, missing_models
from spec_tool_node.safety import SafetyDecision, SafetyPolicy
from spec_tool_node.verifiers.base import Verdict, Verifier
from spec_tool_node.verifiers.gate import gate_signal

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CascadeError(SpecToolNodeError, RuntimeError):
    """The strong model failed: there is nothing left to fall back to.

    Attributes:
        model: the strong model's name.
        turn: the turn's ledger entry up to the failure (path ``"error"``): every call that was
            made, the failed one included, so a caller can still account for them.
    """

    def __init__(self, message: str, *, model: str, turn: TurnRecord | None = None) -> None:
        super().__init__(message)
        self.model, self.turn = model, turn


class ModelTimeoutError(SpecToolNodeError, TimeoutError):
    """A model call took longer than ``CascadeConfig.call_timeout_s``."""


# -- what the decision function asks its driver for -------------------------------------------


@dataclass(frozen=True)
class Propose:
    """The proposer drafts ``count`` actions. ``prefill``: the strong model will continue a
    draft, so the driver may have it read the prompt meanwhile (:meth:`ModelCalls.prefill`)."""

    count: int
    prefill: bool = False


@dataclass(frozen=True)
class Uncached:
    """How many of the turn's prompt tokens the strong model would read that no prefix cache
    holds; the driver answers an ``int``, or ``None`` when the strong model cannot tell."""


@dataclass(frozen=True)
class Score:
    drafts: list[Action]


@dataclass(frozen=True)
class Act:
    """The strong model acts. ``tools=False`` asks it for a plain answer with the tools hidden:
    its action repeated the call whose result the conversation has just received."""

    tools: bool = True


@dataclass(frozen=True)
class Continue:
    """The strong model continues ``draft``: its own greedy action, checked against the draft
    in one pass and written only from the first token it disagrees with (mode F, and the
    speculative fallback)."""

    draft: AIMessage


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
    decided_by: Literal["strong", "human"] | None = None
    lossless: dict[str, Any] | None = None
    """When the strong model continued a draft: its ``draft_tokens``, ``kept_tokens`` and
    ``full_draft_kept`` (see :meth:`HFChatModel.continue_draft`)."""


def decide(
    spec: ModeSpec,
    config: CascadeConfig,
    policy: SafetyPolicy,
    tools: dict[str, dict[str, Any]],
    has_strong: bool,
    can_continue: bool = False,
    answered: frozenset[str] = frozenset(),
    multi_turn: bool = False,
    gate: Callable[[AIMessage], float | None] = gate_signal,
) -> Generator[Propose | Score | Act | Continue | Uncached, Any, Decision]:
    """The whole decision, for every mode.

    ``can_continue``: the strong model can continue a draft (mode F requires it; with
    ``config.speculative_fallback``, or ``multi_turn_speculative_fallback`` at a later
    decision, every fallback then continues the best draft; the latter off, mode F's later
    decisions are the strong model's alone).
    ``answered``: the calls whose results the conversation has just received
    (:func:`answered_calls`). Small models often call the same tool again right after its
    result; a draft that does is rejected, and a strong action that does is asked again as a
    plain answer, so an agent neither loops nor ends on an empty reply.
    ``multi_turn``: the decision comes after earlier agent turns (:func:`is_multi_turn`), so the
    verifier's score is compared with ``config.multi_turn_threshold`` when one is set.
    ``gate``: mode G's signal, read from a draft's own message (default: the log-probs of its
    argument values; a probe verifier's :meth:`~Verifier.score_drafted` reads hidden states).
    """
    lossless = spec.scorer == "lossless"
    if lossless and not can_continue:
        raise ConfigError(_NO_CONTINUATION)
    threshold = config.draft_threshold(multi_turn)
    continues = can_continue and config.continues_draft(multi_turn, lossless)
    judged = spec.scorer in ("verifier", "judge", "gate")  # a score may accept a draft
    # a decision that accepts no draft, for a strong model that will not continue one, has no
    # use for a draft at all: asking the proposer would only add its cost
    unused = not config.wants_draft(multi_turn, continues)
    count = 0 if unused and has_strong else spec.draft_count(config.n_drafts)
    cold = None  # the strong model would read this much of the prompt cold: no draft pays there
    limit = config.max_uncached_prompt_tokens
    if count and has_strong and limit is not None:
        uncached: int | None = yield Uncached()
        cold = uncached if uncached is not None and uncached > limit else None
        count = 0 if cold is not None else count
    ahead = lossless and config.prefill_ahead
    drafts: list[Draft] = (yield Propose(count, prefill=ahead)) if count else []
    for draft in drafts:
        _check(draft, tools, answered)
    valid = [d for d in drafts if d.error is None]
    open_ = valid  # what the scorer may accept; the rest go on to the strong model unasked
    if judged:
        for d in valid:
            d.error = _closed(d.action, config, threshold)
        open_ = [d for d in valid if d.error is None]

    if open_ and spec.scorer in ("verifier", "judge"):
        scored: Scored = yield Score([d.action for d in open_])
        for d, p in zip(open_, scored.p_accept, strict=True):
            d.p_accept, d.error = p, scored.error
    elif spec.scorer == "gate":  # the drafting pass's own signals: no model call
        for d in open_:
            signal = gate(d.message) if d.message is not None else None
            d.p_accept = 0.0 if signal is None else signal
            d.error = "gate: the draft carries no drafting-pass signal" if signal is None else None
    elif spec.scorer == "none":
        for d in valid:
            d.p_accept = 1.0  # mode B trusts its draft
    best = max(valid, key=lambda d: d.p_accept or 0.0, default=None)
    gate = policy.check(best.action) if best else SafetyDecision(effect="allow")
    passed = (
        not lossless
        and best is not None
        and best.error is None  # an unscored draft is never accepted, whatever the threshold
        and (best.p_accept or 0.0) >= threshold
    )

    if passed and best and gate.effect != "escalate":
        return _gated(best.action, policy, "accepted", "cheap", best.message, best.p_accept)

    reason = None if lossless else _reject_reason(drafts, best, gate)
    if unused and not drafts:
        reason = _LATER_ALONE if lossless else _NO_DRAFT
    elif cold is not None:
        reason = _COLD.format(cold=cold, limit=limit)
    p_best = best.p_accept if best else None
    if passed and best and gate.escalate_to == "human":
        return Decision(best.action, "escalated", "cheap", best.message, p_best, reason, gate)
    if has_strong:
        source = _to_continue(drafts, best) if continues else None
        message: AIMessage = yield Continue(source) if source is not None else Act()
        info = message.response_metadata.get("lossless") if source is not None else None
        path = "fallback" if drafts else "strong"
        if lossless and source is not None:  # never accepted as it stands: the strong model
            path = "accepted" if info and info.get("full_draft_kept") else "continued"
        elif lossless and drafts:  # the proposer failed: the strong model wrote alone
            reason = drafts[0].error
        action, invalid = strong_action(message, tools)
        if invalid is not None:
            why = "; ".join(r for r in (reason, invalid) if r)
            return Decision(action, "invalid", "strong", message, p_best, why, lossless=info)
        if _repeats(action, answered):
            reason = "; ".join(r for r in (reason, "repeat: the strong model called again") if r)
            message = yield Act(tools=False)
            action = _plain_answer(message, action)
        decision = _gated(action, policy, path, "strong", message, p_best, reason)
        decision.lossless = info
        if decision.path != "escalated" and "escalate" in (gate.effect, decision.safety.effect):
            decision.decided_by = "strong"  # an escalation the strong model settled
        return decision
    if best is not None:  # cheap only, and the gate wants a second opinion nobody can give
        attempted = best.action if isinstance(best.action, ToolCallsAction) else None
        blocked = BlockedAction(reason=gate.reason or "", rule=gate.rule, attempted=attempted)
        return Decision(blocked, "blocked", "cheap", best.message, p_best, reason, gate)
    failed = drafts[0] if drafts else None
    text = (
        failed.message.text if failed and failed.message else ""
    ) or f"No valid action ({reason})."
    return Decision(RespondAction(content=text), "invalid", "cheap", None, None, reason)


_CALLS_TO_STRONG = "calls: accept_calls is off, so a tool call goes to the strong model"
_ACCEPTS_NOTHING = "threshold: above 1, this kind of decision accepts no draft"
_NO_DRAFT = f"{_ACCEPTS_NOTHING}, and no fallback continues one: none was asked for"
_LATER_ALONE = (
    "later decision: multi_turn_speculative_fallback is off, so no draft is continued and none "
    "was asked for: the strong model wrote its action alone"
)


def _closed(action: Action, config: CascadeConfig, threshold: float) -> str | None:
    """Why no score could get this draft accepted, so that no scorer is asked; None if one can."""
    if accepts_nothing(threshold):
        return _ACCEPTS_NOTHING
    if not config.accept_calls and isinstance(action, ToolCallsAction):
        return _CALLS_TO_STRONG
    return None


_COLD = (
    "cold prompt: the strong model would read {cold} prompt tokens that no cache holds (more "
    "than max_uncached_prompt_tokens, {limit}), which a continuation reads too, so a draft could "
    "not repay the proposer and its check: none was asked for"
)


_NO_CONTINUATION = (
    "mode F (lossless) needs a strong model that can continue a draft: a local HFChatModel, "
    "which teacher-forces the draft and keeps its own greedy prefix. An API chat model cannot "
    "score a continuation; serve the strong model with vLLM and its own speculative decoding "
    'instead (the proposer as draft model: --speculative-config \'{"model": ..., '
    '"num_speculative_tokens": 5}\'), which is lossless at the token level, and use mode A'
)


def drafting_gate(verifier: Verifier | None) -> Callable[[AIMessage], float | None]:
    """Mode G's signal: the verifier's reading of the drafting pass when one is given (its
    proposer must be bound with the verifier's ``drafting_options``), else the log-probs of the
    draft's argument values."""
    return verifier.score_drafted if verifier is not None else gate_signal


def offers_drafts(model: Any) -> bool:
    """Whether ``model`` can offer a draft to a :class:`DraftWatch` as it writes it and stop
    when told (a local ``HFChatModel``: its ``draft_watch`` call option). Looks through
    ``bind_tools``/``bind`` wrappers like :func:`can_continue`."""
    bound = getattr(model, "bound", model)
    return bool(getattr(bound, "offers_drafts", False))


def can_continue(model: Any) -> bool:
    """Whether ``model`` can continue a draft losslessly (a local model with ``continue_draft``).

    A model wrapped by ``bind_tools`` or ``bind`` is looked through to the model itself.
    """
    bound = getattr(model, "bound", model)
    return callable(getattr(bound, "continue_draft", None))


def _to_continue(drafts: list[Draft], best: Draft | None) -> AIMessage | None:
    """The draft the strong model continues: the best scored one, else the first it can read
    (an invalid draft's text still shares its first tokens with a right action)."""
    if best is not None and best.message is not None:
        return best.message
    return next((d.message for d in drafts if d.message is not None), None)


def is_multi_turn(messages: Sequence[BaseMessage]) -> bool:
    """Whether a decision comes after earlier agent turns (an assistant or tool message)."""
    return any(isinstance(m, (AIMessage, ToolMessage)) for m in messages)


def answered_calls(messages: Sequence[BaseMessage]) -> frozenset[str]:
    """The canonical text of each call of the last agent step, when the conversation ends with
    their results (the calls an immediate repeat would run again).

    Only the last step counts: calling ``ls()`` again after a ``cd`` is a new question.
    """
    results: set[str] = set()
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            results.add(message.tool_call_id)
            continue
        if isinstance(message, AIMessage):
            return frozenset(
                canonical_text(
                    ToolCallsAction(calls=[ToolCall(name=c["name"], arguments=c["args"])])
                )
                for c in message.tool_calls
                if c.get("id") in results
            )
        break
    return frozenset()


def _repeats(action: Action | None, answered: frozenset[str]) -> bool:
    """Whether every call of ``action`` was answered in the step just before."""
    return (
        bool(answered)
        and isinstance(action, ToolCallsAction)
        and all(canonical_text(ToolCallsAction(calls=[c])) in answered for c in action.calls)
    )


def _plain_answer(message: AIMessage, repeated: Action) -> RespondAction:
    """The strong model's reply with the tools hidden; should it still write a call, the turn
    ends saying so rather than running the call again."""
    text = message.text.strip()
    if text and not message.tool_calls:
        return RespondAction(content=text)
    return RespondAction(
        content=f"Stopped instead of repeating {canonical_text(repeated)}: its result is above."
    )


def _check(
    draft: Draft, tools: dict[str, dict[str, Any]], answered: frozenset[str] = frozenset()
) -> None:
    """Reject a draft that cannot run (unparseable, unbound tool, bad arguments) or that repeats
    the call just answered, before scoring."""
    if draft.error is not None or draft.message is None:
        return
    try:
        draft.action = resolve_action(action_from_message(draft.message), tools)
    except InvalidActionError as e:
        draft.error = f"invalid: {e}"
        return
    if isinstance(draft.action, RespondAction) and not draft.action.content:
        draft.error = "invalid: empty reply"
    elif _repeats(draft.action, answered):
        draft.error = "invalid: repeats the call whose result just came back"


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


def strong_action(
    message: AIMessage, tools: dict[str, dict[str, Any]]
) -> tuple[Action, str | None]:
    """The strong model's action, validated like a draft, and why it is invalid (or None).

    An invalid action (unparseable, unbound tool, bad arguments, empty) must never reach a tool
    node as an executable call; there is nobody left to fall back to, so the turn ends with a
    reply that says what went wrong.
    """
    try:
        action = resolve_action(action_from_message(message), tools)
    except InvalidActionError as e:
        problem = str(e)
    else:
        if not (isinstance(action, RespondAction) and not action.content):
            return action, None
        problem = "empty reply"
    text = f"No action taken: the strong model's reply was invalid ({problem})."
    return RespondAction(content=text), f"strong invalid: {problem}"


def _gated(
    action: Action,
    policy: SafetyPolicy,
    path: str,
    winner: Role,
    message: AIMessage | None,
    p_accept: float | None = None,
    reason: str | None = None,
) -> Decision:
    """Apply the safety gate to the final action. An escalation to the strong model has been
    settled by now; one to a person ends on path ``escalated``, for the node to ask."""
    final, gate = policy.apply(action)
    if isinstance(final, BlockedAction):
        path = "blocked"
    elif gate.escalate_to == "human":
        path = "escalated"
    return Decision(final, path, winner, message, p_accept, reason, gate)


# -- drivers ------------------------------------------------------------------------------------


class ModelCalls(Protocol):
    """How the cascade reaches the models: the node binds them; the middleware uses its handler."""

    proposer_name: str
    strong_name: str
    judge: Verifier | None
    """The strong model prompted as a judge (mode C)."""

    def draft(self, sample: bool, watch: DraftWatch | None = None) -> AIMessage:
        """A draft; ``watch``: offer it to the strong model as it is written (mode F), when
        the proposer can (:func:`offers_drafts`)."""
        ...

    def act(self) -> AIMessage: ...

    def answer(self) -> AIMessage:
        """The strong model with the tools hidden: a plain answer from the results so far."""
        ...

    def continue_draft(self, draft: AIMessage) -> AIMessage:
        """The strong model's own action, checked against ``draft`` (mode F, fallbacks)."""
        ...

    async def adraft(self, sample: bool, watch: DraftWatch | None = None) -> AIMessage: ...

    async def aact(self) -> AIMessage: ...

    async def aanswer(self) -> AIMessage: ...

    async def acontinue_draft(self, draft: AIMessage) -> AIMessage: ...

    def prefill(self, watch: DraftWatch | None = None) -> int:
        """The strong model reads the turn's prompt now and keeps its cache for the continuation
        that follows (mode F, beside the drafting); returns the tokens read, 0 if it cannot.
        With ``watch`` it may then read the draft as it is written and stop it early."""
        ...

    async def aprefill(self, watch: DraftWatch | None = None) -> int: ...

    def uncached_prompt(self) -> int | None:
        """How many of the turn's prompt tokens the strong model would read that no prefix
        cache holds (it tokenises; no model runs), or None when it cannot tell."""
        ...


def call_record(
    role: Role,
    name: str,
    purpose: str,
    message: AIMessage | None,
    wall: float,
    error: str | None = None,
) -> CallRecord:
    """The ledger entry of one model call: tokens, model name and a continuation's counts from
    ``message`` (``None`` for a failed call, with its ``error``); ``name`` when the reply names
    no model. Shared by the drivers and the simulator's replay."""
    usage = (message.usage_metadata if message is not None else None) or {}
    model = (message.response_metadata.get("model_name") if message is not None else None) or name
    lossless = (message.response_metadata.get("lossless") if message is not None else None) or {}
    return CallRecord(
        role=role,
        model=model,
        purpose=purpose,
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
        wall_s=wall,
        ok=error is None,
        error=error,
        checked_tokens=lossless.get("checked_tokens"),
        kept_tokens=lossless.get("kept_tokens"),
        cached_tokens=(usage.get("input_token_details") or {}).get("cache_read") or 0,
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
        decided_by=decision.decided_by,
        **_lossless_fields(decision.lossless),
        **fields,
    )


def _lossless_fields(info: dict[str, Any] | None) -> dict[str, Any]:
    """What the ledger keeps of a continued draft (nothing when no draft was continued)."""
    if not info:
        return {}
    keys = ("draft_tokens", "kept_tokens", "full_draft_kept")
    return {k: info[k] for k in keys if k in info}


def _error(e: Exception) -> str:
    return f"error: {type(e).__name__}: {e}"


def _timeout_error(timeout: float) -> ModelTimeoutError:
    return ModelTimeoutError(f"no reply within {timeout:g} s")


def _within(call: Callable[[], T], timeout: float | None) -> T:
    """Run ``call``, giving up after ``timeout`` seconds.

    A synchronous call cannot be cancelled: it runs in a worker thread (with the caller's
    context variables, so LangGraph's config reaches it) that is left to finish in the
    background while the cascade moves on.
    """
    if timeout is None:
        return call()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spec-model-call")
    try:
        future = pool.submit(contextvars.copy_context().run, call)
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise _timeout_error(timeout) from None
    finally:
        pool.shutdown(wait=False)


def _attempt(call: Callable[[], T], timeout: float | None = None) -> tuple[T | Exception, float]:
    """Run one model call, timed; an exception becomes its outcome (interrupts propagate)."""
    start = time.perf_counter()
    try:
        outcome: T | Exception = _within(call, timeout)
    except GraphBubbleUp:
        raise
    except Exception as e:
        outcome = e
    return outcome, time.perf_counter() - start


async def _aattempt(
    call: Callable[[], Awaitable[T]], timeout: float | None = None
) -> tuple[T | Exception, float]:
    """:func:`_attempt` for a coroutine (which a timeout cancels)."""
    start = time.perf_counter()
    try:
        outcome: T | Exception = await asyncio.wait_for(call(), timeout)
    except GraphBubbleUp:
        raise
    except TimeoutError:
        outcome = _timeout_error(timeout or 0.0)
    except Exception as e:
        outcome = e
    return outcome, time.perf_counter() - start


def _as_draft(
    outcome: AIMessage | Exception, wall: float, name: str, calls: list[CallRecord]
) -> Draft:
    """A proposer failure is a draft that carries its error: the cascade rejects it."""
    if not isinstance(outcome, AIMessage | Exception):
        outcome = TypeError(f"expected an AIMessage, got {type(outcome).__name__}")
    if isinstance(outcome, Exception):
        calls.append(call_record("cheap", name, "draft", None, wall, _error(outcome)))
        return Draft(message=None, error=_error(outcome))
    calls.append(call_record("cheap", name, "draft", outcome, wall))
    return Draft(message=outcome)


def _as_scored(
    outcome: list[Verdict] | Exception,
    wall: float,
    scorer: Verifier,
    count: int,
    calls: list[CallRecord],
) -> Scored:
    """A verifier failure scores every draft 0: a reject with its reason, and the call stays in
    the ledger marked failed. Garbage (not one finite score per draft) is a failure too."""
    if not isinstance(outcome, Exception):
        verdicts = outcome if isinstance(outcome, list) else []
        p_accept = [getattr(v, "p_accept", None) for v in verdicts]
        if len(p_accept) == count and all(
            isinstance(p, int | float) and math.isfinite(p) for p in p_accept
        ):
            calls.extend(v.record for v in verdicts if v.record is not None)
            return Scored(p_accept=[min(max(float(p), 0.0), 1.0) for p in p_accept])
        outcome = ValueError(f"expected {count} finite scores, got {p_accept!r:.200}")
        records = [getattr(v, "record", None) for v in verdicts]
    else:
        records = []
    error = _error(outcome)
    failed = [r.model_copy(update={"ok": False, "error": error}) for r in records if r is not None]
    if not failed:
        role: Role = getattr(scorer, "role", "verifier")  # a prompted judge bills the strong role
        name = str(getattr(scorer, "name", None) or type(scorer).__name__)
        failed = [call_record(role, name, "verify", None, wall, error)]
    calls.extend(failed)
    return Scored(p_accept=[0.0] * count, error=error)


def _start_prefill(
    models: ModelCalls, timeout: float | None, watch: DraftWatch
) -> Callable[[], int]:
    """Start the strong model's read-ahead of the prompt in a worker thread (beside the
    drafting, whose draft it may read along in ``watch``); the returned function waits for it
    and gives the prompt tokens it read. The read-ahead is a hint: if it fails or outlasts
    ``timeout``, the continuation reads the prompt itself."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spec-prefill")
    future = pool.submit(contextvars.copy_context().run, models.prefill, watch)
    pool.shutdown(wait=False)

    def result() -> int:
        try:
            return future.result(timeout=timeout)
        except Exception:
            logger.warning("the strong model's read-ahead of the prompt failed", exc_info=True)
            return 0

    return result


async def _closing(drafting: Awaitable[list[Any]], watch: DraftWatch | None) -> list[Any]:
    """Await the drafts, then close ``watch`` whatever happened (its reader stops waiting)."""
    try:
        return await drafting
    finally:
        if watch is not None:
            watch.close()


async def _aprefill(models: ModelCalls, timeout: float | None, watch: DraftWatch) -> int:
    """:func:`_start_prefill` on the async paths."""
    try:
        return await asyncio.wait_for(models.aprefill(watch), timeout)
    except Exception:
        logger.warning("the strong model's read-ahead of the prompt failed", exc_info=True)
        return 0


def _uncached(models: ModelCalls) -> int | None:
    """:meth:`ModelCalls.uncached_prompt`, or None (the proposer then drafts) if asking fails:
    the answer only saves a draft's cost, so a failure to give it must not end the turn."""
    try:
        uncached = models.uncached_prompt()
    except Exception:
        logger.warning(
            "could not tell how much of the prompt the strong model has cached", exc_info=True
        )
        return None
    return uncached if isinstance(uncached, int) and uncached >= 0 else None


@dataclass
class _ReadAhead:
    """What the strong model read beside the drafting and no call record counts yet."""

    prompt_tokens: int = 0
    draft_tokens: int = 0


def _read_ahead(calls: list[CallRecord], ahead: _ReadAhead) -> _ReadAhead:
    """Count what was read ahead as read by the strong call just recorded (the last): the prompt
    tokens it then took from the read-ahead's cache, and the draft tokens read along as drafted
    (checked tokens read once more). The ledger prices the work done; the overlap changes only
    the wall time. Returns what is left to count (nothing)."""
    if (ahead.prompt_tokens or ahead.draft_tokens) and calls:
        last = calls[-1]
        calls[-1] = last.model_copy(
            update={
                "cached_tokens": max(last.cached_tokens - ahead.prompt_tokens, 0),
                "input_tokens": last.input_tokens + ahead.draft_tokens,
                "checked_tokens": (last.checked_tokens or 0) + ahead.draft_tokens,
            }
        )
    return _ReadAhead()


class _StrongFailed(Exception):
    """Internal: the strong model's call failed; the driver turns it into a CascadeError."""

    def __init__(self, name: str, error: Exception) -> None:
        super().__init__(name)
        self.name, self.error = name, error


def _as_action(
    outcome: AIMessage | Exception,
    wall: float,
    name: str,
    calls: list[CallRecord],
    purpose: str = "act",
) -> AIMessage:
    """The strong model is the last resort: its failure propagates (recorded as a failed call).

    ``purpose`` is ``"act"``, or ``"continue"`` when it continued a draft.
    """
    if isinstance(outcome, Exception):
        calls.append(call_record("strong", name, purpose, None, wall, _error(outcome)))
        raise _StrongFailed(name, outcome)
    if not isinstance(outcome, AIMessage):
        error = TypeError(f"expected an AIMessage, got {type(outcome).__name__}")
        calls.append(call_record("strong", name, purpose, None, wall, _error(error)))
        raise _StrongFailed(name, error)
    calls.append(call_record("strong", name, purpose, outcome, wall))
    return outcome


class Cascade:
    """Runs :func:`decide` for one mode against a set of models, a verifier and a safety policy.

    Args:
        config: the cascade configuration.
        verifier: scores drafts in modes D and E (required there); mode C's judge is the
            strong model prompted as a judge, which the model calls provide. In mode G, a
            verifier that reads the proposer's drafting pass (:meth:`Verifier.score_drafted`,
            a probe on the ``drafting`` pooling) replaces the log-prob signal.
        policy: the safety gate; ``None`` allows everything.
        has_strong, has_proposer: whether the model calls can reach those models.
        can_continue: whether the strong model can continue a draft (see
            :func:`can_continue`); mode F requires it, and the speculative fallback uses it.

    Raises:
        ConfigError: the mode requires a model that is not there, or mode F a strong model
            that cannot continue a draft.
    """

    def __init__(
        self,
        config: CascadeConfig,
        *,
        verifier: Verifier | None = None,
        policy: SafetyPolicy | None = None,
        has_strong: bool = True,
        has_proposer: bool = True,
        can_continue: bool = False,
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
        if self.spec.scorer == "lossless" and has_strong and not can_continue:
            raise ConfigError(_NO_CONTINUATION)
        self.can_continue = can_continue
        self.verifier = verifier
        self.gate = drafting_gate(verifier) if self.spec.scorer == "gate" else gate_signal
        self.policy = policy or SafetyPolicy()
        self.has_strong = has_strong

    def _scorer(self, models: ModelCalls) -> Verifier:
        scorer = self.verifier if self.spec.scorer == "verifier" else models.judge
        assert scorer is not None  # checked at construction
        return scorer

    def run(
        self,
        models: ModelCalls,
        context: Sequence[BaseMessage],
        tools: dict[str, dict[str, Any]],
        *,
        turn_index: int | None = None,
    ) -> tuple[AIMessage, TurnRecord]:
        """Decide one turn. ``turn_index`` (the turn's place in its trajectory) names the turn
        in a :class:`CascadeError`.

        Raises:
            CascadeError: the strong model raised or timed out; ``error.turn`` holds the calls.
        """
        calls: list[CallRecord] = []
        steps = self._decision(context, tools)
        timeout = self.config.call_timeout_s
        start = time.perf_counter()
        read = _ReadAhead()  # what the strong model read ahead, not yet in its call's record
        try:
            request = next(steps)
            while True:
                if isinstance(request, Propose):
                    watch = DraftWatch() if request.prefill else None
                    ahead = _start_prefill(models, timeout, watch) if watch else None
                    try:
                        answer: Any = [
                            _as_draft(
                                *_attempt(
                                    partial(models.draft, i > 0, watch if i == 0 else None), timeout
                                ),
                                models.proposer_name,
                                calls,
                            )
                            for i in range(request.count)
                        ]
                    finally:
                        if watch is not None:
                            watch.close()
                    if ahead is not None:
                        read = _ReadAhead(ahead(), watch.read_tokens)
                elif isinstance(request, Uncached):
                    answer = _uncached(models)
                elif isinstance(request, Score):
                    scorer = self._scorer(models)
                    score = partial(
                        scorer.score_batch, context, list(tools.values()), request.drafts
                    )
                    outcome = _attempt(score, timeout)
                    answer = _as_scored(*outcome, scorer, len(request.drafts), calls)
                elif isinstance(request, Continue):
                    go_on = partial(models.continue_draft, request.draft)
                    outcome = _attempt(go_on, timeout)
                    answer = _as_action(*outcome, models.strong_name, calls, "continue")
                    read = _read_ahead(calls, read)
                else:
                    act = models.act if request.tools else models.answer
                    answer = _as_action(*_attempt(act, timeout), models.strong_name, calls)
                    read = _read_ahead(calls, read)
                request = steps.send(answer)
        except StopIteration as stop:
            return self._finish(stop.value, calls, time.perf_counter() - start, models)
        except _StrongFailed as failed:
            raise self._failure(failed, calls, start, turn_index) from failed.error

    def _decision(
        self, context: Sequence[BaseMessage], tools: dict[str, dict[str, Any]]
    ) -> Generator[Propose | Score | Act | Continue | Uncached, Any, Decision]:
        """This turn's :func:`decide` generator (the one both drivers run)."""
        return decide(
            self.spec,
            self.config,
            self.policy.bind(context),
            tools,
            self.has_strong,
            self.can_continue,
            answered_calls(context),
            is_multi_turn(context),
            self.gate,
        )

    async def arun(
        self,
        models: ModelCalls,
        context: Sequence[BaseMessage],
        tools: dict[str, dict[str, Any]],
        *,
        turn_index: int | None = None,
    ) -> tuple[AIMessage, TurnRecord]:
        """:meth:`run` on the async paths (the drafts of mode E are drawn concurrently)."""
        calls: list[CallRecord] = []
        steps = self._decision(context, tools)
        timeout = self.config.call_timeout_s
        start = time.perf_counter()
        read = _ReadAhead()  # what the strong model read ahead, not yet in its call's record
        try:
            request = next(steps)
            while True:
                if isinstance(request, Propose):
                    watch = DraftWatch() if request.prefill else None
                    jobs = [
                        _aattempt(partial(models.adraft, i > 0, watch if i == 0 else None), timeout)
                        for i in range(request.count)
                    ]
                    drafting = _closing(asyncio.gather(*jobs), watch)
                    if watch is None:
                        drafted = await drafting
                    else:
                        drafted, prompt_read = await asyncio.gather(
                            drafting, _aprefill(models, timeout, watch)
                        )
                        read = _ReadAhead(prompt_read, watch.read_tokens)
                    answer: Any = [_as_draft(*d, models.proposer_name, calls) for d in drafted]
                elif isinstance(request, Uncached):
                    answer = _uncached(models)
                elif isinstance(request, Score):
                    scorer = self._scorer(models)
                    ascore = partial(
                        scorer.ascore_batch, context, list(tools.values()), request.drafts
                    )
                    outcome = await _aattempt(ascore, timeout)
                    answer = _as_scored(*outcome, scorer, len(request.drafts), calls)
                elif isinstance(request, Continue):
                    go_on = partial(models.acontinue_draft, request.draft)
                    outcome = await _aattempt(go_on, timeout)
                    answer = _as_action(*outcome, models.strong_name, calls, "continue")
                    read = _read_ahead(calls, read)
                else:
                    aact = models.aact if request.tools else models.aanswer
                    answer = _as_action(*await _aattempt(aact, timeout), models.strong_name, calls)
                    read = _read_ahead(calls, read)
                request = steps.send(answer)
        except StopIteration as stop:
            return self._finish(stop.value, calls, time.perf_counter() - start, models)
        except _StrongFailed as failed:
            raise self._failure(failed, calls, start, turn_index) from failed.error

    def _failure(
        self, failed: _StrongFailed, calls: list[CallRecord], start: float, turn_index: int | None
    ) -> CascadeError:
        """The error for a failed strong call, carrying the turn's calls so none is lost."""
        turn = self.config.cost_model.turn(
            calls,
            mode=self.config.mode,
            path="error",
            action="",
            reject_reason=_error(failed.error),
            winner="strong",
            wall_s=time.perf_counter() - start,
        )
        where = "" if turn_index is None else f"turn {turn_index}: "
        return CascadeError(
            f"{where}the strong model {failed.name!r} failed, and there is no fallback: "
            f"{type(failed.error).__name__}: {failed.error}",
            model=failed.name,
            turn=turn,
        )

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
                "decided_by",
                "draft_tokens",
                "kept_tokens",
                "full_draft_kept",
                "cost",
                "baseline_cost",
                "savings",
            }
        )
        if decision.path == "escalated":
            spec["escalation"] = {
                "rule": decision.safety.rule,
                "reason": decision.safety.reason,
                "proposed_by": decision.winner,
            }
        message = action_to_message(
            decision.action,
            usage_metadata=usage,
            response_metadata={"model_name": winner_name, "spec": spec},
        )
        return message, turn

    def run_durably(
        self,
        models: ModelCalls,
        context: Sequence[BaseMessage],
        tools: dict[str, dict[str, Any]],
        *,
        turn_index: int | None = None,
    ) -> tuple[AIMessage, TurnRecord]:
        """:meth:`run` as a LangGraph task, from inside a graph node.

        LangGraph re-runs a node from its start when the graph resumes after ``interrupt()``. A
        task's result is saved with the checkpoint, so on that second run the models are not
        called again: the turn's calls are counted once, and the person reviews the same action
        the resumed run carries on with.
        """
        done = _decided(self, models, list(context), tools, turn_index).result()
        return done["message"], TurnRecord.model_validate(done["turn"])

    async def arun_durably(
        self,
        models: ModelCalls,
        context: Sequence[BaseMessage],
        tools: dict[str, dict[str, Any]],
        *,
        turn_index: int | None = None,
    ) -> tuple[AIMessage, TurnRecord]:
        """:meth:`run_durably` on the async paths."""
        done = await _adecided(self, models, list(context), tools, turn_index)
        return done["message"], TurnRecord.model_validate(done["turn"])

    def review(
        self,
        message: AIMessage,
        turn: TurnRecord,
        ask: Callable[[dict[str, Any]], Any],
        tools: dict[str, dict[str, Any]],
    ) -> tuple[AIMessage, TurnRecord]:
        """Settle a turn that ended on path ``escalated`` by asking a person; others pass.

        ``ask`` is LangGraph's ``interrupt``: it shows the request (shaped like
        ``HumanInTheLoopMiddleware``'s: ``action_requests`` with each call's name, arguments and
        the rule that escalated it, and ``review_configs``) and returns the answer given with
        ``Command(resume=...)``: ``{"decisions": [...]}``, one decision per call (or a single
        decision for all), each ``{"type": "approve"}``, ``{"type": "edit", "edited_action":
        {"name": ..., "args": {...}}}`` or ``{"type": "reject", "message": "why"}``.

        Any reject refuses the whole action. Approved and edited calls still pass the block
        rules, and an edited call is validated against the tools like a model's. The ledger
        entry records the review and ``decided_by="human"``.

        Raises:
            ReviewError: the answer is not one of the shapes above.
        """
        if turn.path != "escalated":
            return message, turn
        escalation = message.response_metadata["spec"]["escalation"]
        proposed = action_from_message(message)
        assert isinstance(proposed, ToolCallsAction)  # only tool calls are escalated
        description = (
            f"Rule {escalation['rule']} asks a person to decide "
            f"(proposed by the {escalation['proposed_by']} model): {escalation['reason']}"
        )
        request = {
            "action_requests": [
                {"name": c.name, "args": c.arguments, "description": description}
                for c in proposed.calls
            ],
            "review_configs": [
                {"action_name": name, "allowed_decisions": ["approve", "edit", "reject"]}
                for name in dict.fromkeys(c.name for c in proposed.calls)
            ],
        }
        decisions = _review_decisions(ask(request), len(proposed.calls))
        kinds = {d["type"] for d in decisions}
        review: Literal["approve", "edit", "reject"] = (
            "reject" if "reject" in kinds else "edit" if "edit" in kinds else "approve"
        )
        action, path, gate = self._reviewed(proposed, decisions, review, escalation, tools)
        turn = turn.model_copy(
            update={
                "path": path,
                "action": canonical_text(action),
                "review": review,
                "decided_by": "human",
                "safety": gate.effect if gate.effect == "block" else turn.safety,
                "rule": gate.rule if gate.effect == "block" else turn.rule,
            }
        )
        spec = {
            **message.response_metadata["spec"],
            **turn.model_dump(include={"path", "review", "decided_by", "safety", "rule"}),
        }
        reviewed = action_to_message(
            action,
            usage_metadata=message.usage_metadata,
            response_metadata={**message.response_metadata, "spec": spec},
        )
        return reviewed, turn

    def _reviewed(
        self,
        proposed: ToolCallsAction,
        decisions: list[dict[str, Any]],
        review: str,
        escalation: dict[str, Any],
        tools: dict[str, dict[str, Any]],
    ) -> tuple[Action, str, SafetyDecision]:
        """The action a person's decisions leave, its path, and the block check on it."""
        allow = SafetyDecision(effect="allow")
        if review == "reject":
            why = next((d.get("message") for d in decisions if d["type"] == "reject"), None)
            reason = f"rejected by a person: {why or escalation['reason']}"
            refused = BlockedAction(reason=reason, rule=escalation["rule"], attempted=proposed)
            return refused, "rejected", allow
        calls = [
            call
            if d["type"] == "approve"
            else ToolCall(
                name=d["edited_action"]["name"],
                arguments=d["edited_action"].get("args") or {},
                id=call.id,
            )
            for call, d in zip(proposed.calls, decisions, strict=True)
        ]
        try:
            action = resolve_action(ToolCallsAction(calls=calls), tools)
        except InvalidActionError as e:
            refused = BlockedAction(reason=f"the reviewer's edit is invalid: {e}")
            return refused, "blocked", allow
        # A person settles escalations, not blocks; the values they approved count as theirs.
        reviewed = [{"role": "user", "content": _leaves(c.arguments)} for c in action.calls]
        final, gate = self.policy.bind(reviewed).apply(action)
        if gate.effect == "block":
            return final, "blocked", gate
        return final, "approved" if review == "approve" else "edited", allow


class ReviewError(SpecToolNodeError, ValueError):
    """A person's answer to an escalation that is not an approve, edit or reject decision."""


def _leaves(value: Any) -> str:
    """Every scalar inside ``value`` as text, one per line (what a reviewer approved)."""
    if isinstance(value, dict):
        return "\n".join(_leaves(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(_leaves(v) for v in value)
    return str(value)


def _review_decisions(answer: Any, count: int) -> list[dict[str, Any]]:
    """The answer as one decision per call (a single decision counts for every call)."""
    if isinstance(answer, dict) and "decisions" in answer:
        decisions = answer["decisions"]
    elif isinstance(answer, dict) and "type" in answer:
        decisions = [answer] * count
    else:
        raise ReviewError(f"expected {{'decisions': [...]}} or one decision, got {answer!r:.200}")
    if not isinstance(decisions, list) or len(decisions) != count:
        raise ReviewError(f"expected {count} decision(s), one per call, got {decisions!r:.200}")
    for d in decisions:
        kind = d.get("type") if isinstance(d, dict) else None
        if kind not in ("approve", "edit", "reject"):
            raise ReviewError(f"a decision's type is approve, edit or reject; got {d!r:.200}")
        edited = d.get("edited_action")
        if kind == "edit" and not (
            isinstance(edited, dict)
            and isinstance(edited.get("name"), str)
            and isinstance(edited.get("args", {}), dict)
        ):
            raise ReviewError(f"an edit needs edited_action {{name, args}}; got {d!r:.200}")
    return decisions


@task
def _decided(
    cascade: Cascade,
    models: ModelCalls,
    context: list[BaseMessage],
    tools: dict[str, dict[str, Any]],
    turn_index: int | None,
) -> dict[str, Any]:
    message, turn = cascade.run(models, context, tools, turn_index=turn_index)
    return {"message": message, "turn": turn.model_dump(mode="json")}


@task
async def _adecided(
    cascade: Cascade,
    models: ModelCalls,
    context: list[BaseMessage],
    tools: dict[str, dict[str, Any]],
    turn_index: int | None,
) -> dict[str, Any]:
    message, turn = await cascade.arun(models, context, tools, turn_index=turn_index)
    return {"message": message, "turn": turn.model_dump(mode="json")}
