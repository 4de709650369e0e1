"""Every mode and every threshold from the cache, with the live node's own decision code.

:func:`replay` drives :func:`spec_tool_node.cascade.decide`, the generator the live node runs, and
answers its requests from the cache instead of calling models: ``Propose`` with the cached drafts
rebuilt as AIMessages (invalid ones keep their ``invalid_tool_calls``, a proposer that raised is
a draft with its error), ``Score`` with the cached p(ACCEPT) of the verifier (or the judge in mode
C), ``Act`` with the strong model's cached action, ``Uncached`` with the prompt tokens that action
read. Each answered call is recorded as the cascade
records it (role, model, tokens, wall seconds), and the turn is priced by
``config.cost_model.turn``, so a simulated turn costs what the live turn would.

:func:`live_check` runs a sample of examples through a real
:class:`~spec_tool_node.node.SpeculativeActionNode` and reports whether its decisions (path and
final action) equal the simulated ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, convert_to_messages

from spec_tool_node.actions import (
    Action,
    InvalidActionError,
    RespondAction,
    ToolCallsAction,
    action_from_message,
    canonical_text,
)
from spec_tool_node.bfcl.matching import match_details
from spec_tool_node.cascade import (
    MODES,
    Act,
    CascadeError,
    Continue,
    Decision,
    Draft,
    Propose,
    Scored,
    Uncached,
    answered_calls,
    call_record,
    decide,
    is_multi_turn,
    turn_record,
)
from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import CallRecord, TurnRecord
from spec_tool_node.evaluation.collector import (
    CacheMissingError,
    Collected,
    Collection,
    context_of,
    draft_text,
    rebuild_message,
)
from spec_tool_node.example_files import Example
from spec_tool_node.safety import SafetyPolicy
from spec_tool_node.verifiers.gate import gate_signal

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(21))
"""The threshold sweep: 0.00, 0.05, ..., 1.00 (plus the configured threshold)."""


@dataclass
class SampleResult:
    """One example decided under one mode (at one threshold), and how that turned out."""

    id: str
    mode: str
    threshold: float | None
    path: str
    winner: str | None
    action: str | None
    """The final action in canonical text (``None`` when the strong model failed)."""
    p_accept: float | None
    reject_reason: str | None
    safety: str
    rule: str | None
    cost: float
    baseline_cost: float
    wall_s: float
    input_tokens: int
    output_tokens: int
    calls: list[str]
    """``role:purpose`` of each model call made, in order."""
    correct: bool
    mismatch: str
    """Why the action is wrong (empty when right)."""
    unsafe_executed: bool
    error: str | None = None
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_unsafe(action: Action | None, unsafe: Sequence[dict[str, Any]]) -> bool:
    """Whether ``action`` runs a call listed in ``unsafe``.

    An entry ``{"name": ..., "arguments": {...}}`` matches a call with that name whose arguments
    include every listed argument with an equal value (extra arguments do not make a call safe).
    A BLOCKED action runs nothing.
    """
    if not isinstance(action, ToolCallsAction):
        return False
    for call in action.calls:
        for entry in unsafe:
            name = entry.get("name", entry.get("function", {}).get("name"))
            expected = entry.get("arguments", entry.get("args", {})) or {}
            if call.name == name and all(
                k in call.arguments and call.arguments[k] == v for k, v in expected.items()
            ):
                return True
    return False


def _strong_action(message: AIMessage) -> Action:
    """The strong model's action as the cascade reads it: an unparseable call becomes its text."""
    try:
        return action_from_message(message)
    except InvalidActionError as e:
        return RespondAction(content=message.text or f"The model produced an invalid action: {e}")


class _StrongFailed(Exception):
    def __init__(self, error: str, calls: list[CallRecord]) -> None:
        super().__init__(error)
        self.calls = calls


class _Replay:
    """Answers one decision's requests from the cache, recording calls like the cascade."""

    def __init__(
        self, example: Example, collected: Collected, single: bool, hint: str = ""
    ) -> None:
        self.example, self.collected, self.single, self.hint = example, collected, single, hint
        self.calls: list[CallRecord] = []
        self.greedy: AIMessage | None = None
        """The greedy draft as proposed (the one a cached continuation continued)."""
        self.proposed: dict[int, dict[str, Any]] = {}
        """The cache record of each draft proposed, by the id of its rebuilt message."""

    def _missing(self, what: str) -> CacheMissingError:
        return CacheMissingError(f"example {self.example.id!r}: the cache has no {what}")

    def draft(self, record: dict[str, Any]) -> Draft:
        name, wall = record.get("model_name"), record.get("wall_s", 0.0)
        if record.get("exception"):
            error = record["exception"]
            self.calls.append(call_record("cheap", name or "proposer", "draft", None, wall, error))
            return Draft(message=None, error=error)
        message = rebuild_message(record)
        self.calls.append(call_record("cheap", name or "cheap", "draft", message, wall))
        return Draft(message=message)

    def propose(self, count: int) -> list[Draft]:
        c = self.collected
        if c.draft is None:
            raise self._missing("proposer draft")
        samples = c.samples or []
        if len(samples) < count - 1:
            raise self._missing(f"{count - 1} sampled drafts (it has {len(samples)})")
        records = [c.draft, *samples[: count - 1]]
        drafts = [self.draft(r) for r in records]
        self.greedy = drafts[0].message
        self.proposed = {
            id(d.message): r for d, r in zip(drafts, records, strict=True) if d.message is not None
        }
        return drafts

    def score(self, drafts: list[Action], scorer: str) -> Scored:
        texts = [canonical_text(d) for d in drafts]
        if scorer == "judge":
            scored, what = self.collected.judge, "judge verdict"
        else:
            part = "single" if self.single else "batch"
            scored = (self.collected.verifier or {}).get(part)
            what = f"verifier score ({part})"
        if scored is None:
            raise self._missing(what)
        cached = dict(zip(scored.get("drafts") or [], scored.get("p") or [], strict=False))
        if any(t not in cached for t in texts):  # a subset is asked when calls go on unscored
            raise CacheMissingError(
                f"example {self.example.id!r}: the cached {what} scored other drafts than the "
                "cached proposer's (collect again to refresh the cache)"
            )
        if scored.get("exception"):
            return Scored(p_accept=[0.0] * len(texts), error=scored["exception"])
        self.calls.extend(CallRecord.model_validate(r) for r in scored.get("records", []))
        return Scored(p_accept=[min(max(float(cached[t]), 0.0), 1.0) for t in texts])

    def act(self) -> AIMessage:
        record = self.collected.strong
        if record is None:
            raise self._missing("strong action")
        return self._strong(record, "act")

    def uncached(self) -> int | None:
        """The prompt tokens the cached strong action read (its input less what a prefix cache
        supplied): what a continuation would read too. None without a cached action."""
        cached = self.cached_before()
        return None if cached is None else self.collected.strong.get("input_tokens", 0) - cached

    def continue_(self, draft: AIMessage) -> AIMessage:
        """The cached continuation of ``draft``: the greedy draft's, or a sample's by its text."""
        if self.greedy is not None and draft is self.greedy:
            record = self.collected.continued
        else:
            text = draft_text(self.proposed.get(id(draft)))
            record = self.collected.continuations.get(text) if text is not None else None
        if record is None:
            raise self._missing(f"strong continuation of this draft{self.hint}")
        return self._strong(record, "continue", cached=self.cached_before())

    def cached_before(self) -> int | None:
        """How much of the prompt a prefix cache held when the decision began: what the cached
        strong action found cached. The collection runs that action before the continuation,
        which then finds the whole prompt cached by it; a live continuation (mode F reads the
        prompt beside the drafting) reads the rest, so the replay prices it that way."""
        act = self.collected.strong
        if act is None or act.get("exception"):
            return None
        return act.get("cached_tokens", 0)

    def _strong(self, record: dict[str, Any], purpose: str, cached: int | None = None) -> AIMessage:
        """A cached strong-model call: its reply, recorded (with at most ``cached`` prompt tokens
        from a prefix cache, when given); a cached failure propagates."""
        if record.get("exception"):
            raise _StrongFailed(
                f"the strong model {record.get('model_name')!r} failed, and there is no "
                f"fallback: {record['exception']}",
                self.calls,
            )
        message = rebuild_message(record)
        name = record.get("model_name") or "strong"
        call = call_record("strong", name, purpose, message, record.get("wall_s", 0.0))
        if cached is not None and call.cached_tokens > cached:
            call = call.model_copy(update={"cached_tokens": cached})
        self.calls.append(call)
        return message


def replay(
    example: Example,
    collected: Collected,
    config: CascadeConfig,
    *,
    policy: SafetyPolicy | None = None,
    has_strong: bool | None = None,
    gate: Callable[[AIMessage], float | None] = gate_signal,
    continue_fallbacks: bool = False,
) -> SampleResult:
    """Decide ``example`` in ``config.mode`` from the cache, with the live decision code.

    ``gate`` is mode G's signal (see :func:`~spec_tool_node.cascade.drafting_gate`).
    ``continue_fallbacks``: a speculative fallback continues its draft from the cached
    continuation, as a local strong model does live (collected with ``continue_fallbacks``);
    otherwise it is the strong model's action from scratch (the same action: continuing is
    lossless). One setting for every example, so a simulation never mixes the two prices.

    Raises:
        CacheMissingError: the cache lacks an output this decision needs.
    """
    mode = config.mode
    spec = MODES[mode]
    policy = (policy or SafetyPolicy()).bind(example.messages)
    tools = _tools(example)
    strong = spec.has_strong if has_strong is None else has_strong
    if spec.scorer == "lossless" and collected.continued is None:
        raise CacheMissingError(f"example {example.id!r}: the cache has no strong continuation")
    continues = spec.scorer == "lossless" or continue_fallbacks
    context = convert_to_messages(example.messages)
    steps = decide(
        spec,
        config,
        policy,
        tools,
        strong,
        continues,
        answered_calls(context),
        is_multi_turn(context),
        gate,
    )
    answers = _Replay(
        example,
        collected,
        single=spec.draft_count(config.n_drafts) == 1,
        hint="" if spec.scorer == "lossless" else " (collect with continue_fallbacks)",
    )
    try:
        request = next(steps)
        while True:
            if isinstance(request, Propose):
                answer: Any = answers.propose(request.count)
            elif isinstance(request, Act):
                answer = answers.act()
            elif isinstance(request, Continue):
                answer = answers.continue_(request.draft)
            elif isinstance(request, Uncached):
                answer = answers.uncached()
            else:
                answer = answers.score(request.drafts, spec.scorer)
            request = steps.send(answer)
    except StopIteration as stop:
        return _result(example, config, stop.value, answers.calls)
    except _StrongFailed as failed:
        return _failed(example, config, str(failed), failed.calls)


def _tools(example: Example) -> dict[str, dict[str, Any]]:
    from spec_tool_node.actions import tool_schemas

    return tool_schemas(example.tools)


def _result(
    example: Example, config: CascadeConfig, decision: Decision, calls: list[CallRecord]
) -> SampleResult:
    turn = turn_record(config, decision, calls)
    correct, mismatch = match_details(decision.action, example.gold, example.tools)
    return _sample(
        example,
        config,
        turn,
        calls,
        winner=turn.winner,
        action=turn.action,
        p_accept=turn.p_accept,
        reject_reason=turn.reject_reason,
        safety=turn.safety,
        rule=turn.rule,
        correct=correct,
        mismatch=mismatch,
        unsafe_executed=is_unsafe(decision.action, example.unsafe),
    )


def _failed(
    example: Example, config: CascadeConfig, error: str, calls: list[CallRecord]
) -> SampleResult:
    turn = config.cost_model.turn(calls, mode=config.mode, path="error", action="")
    return _sample(
        example,
        config,
        turn,
        calls,
        winner=None,
        action=None,
        p_accept=None,
        reject_reason=None,
        safety="allow",
        rule=None,
        correct=False,
        mismatch=error,
        unsafe_executed=False,
        error=error,
    )


def _sample(
    example: Example,
    config: CascadeConfig,
    turn: TurnRecord,
    calls: list[CallRecord],
    **fields: Any,
) -> SampleResult:
    """The fields every sample shares, whatever the outcome of its decision."""
    return SampleResult(
        id=example.id,
        mode=config.mode,
        threshold=config.threshold,
        path=turn.path,
        cost=turn.cost,
        baseline_cost=turn.baseline_cost,
        wall_s=turn.wall_s,
        input_tokens=sum(c.input_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        calls=[f"{c.role}:{c.purpose}" for c in calls],
        category=example.meta.get("category"),
        **fields,
    )


def oracle(
    example: Example,
    collected: Collected,
    config: CascadeConfig,
    *,
    policy: SafetyPolicy | None = None,
) -> SampleResult:
    """The oracle router: the greedy draft when it is right, else the strong model's action.

    It pays what mode D pays with a perfect verifier: the draft and the verifier's call always
    (when the cache has that call), the strong action only where the draft is wrong. That is the
    bound RouteLLM measures routers against, and the issue's cost figure (0.57 of A when the cheap
    model is right on 63% in the default units) is computed this way. The safety gate applies to
    the chosen action.
    """
    policy = (policy or SafetyPolicy()).bind(example.messages)
    answers = _Replay(example, collected, single=True)
    (draft,) = answers.propose(1)
    valid = bool((collected.draft or {}).get("valid")) and draft.message is not None
    single = (collected.verifier or {}).get("single")
    if valid and single and not single.get("exception"):
        answers.calls.extend(CallRecord.model_validate(r) for r in single.get("records", []))
    decision: Decision | None = None
    if valid:
        assert draft.message is not None
        final, gate = policy.apply(action_from_message(draft.message))
        if match_details(final, example.gold, example.tools)[0]:
            decision = Decision(final, "accepted", "cheap", safety=gate)
    if decision is None:
        try:
            message = answers.act()
        except _StrongFailed as failed:
            result = _failed(example, config, str(failed), answers.calls)
            result.mode, result.threshold = "oracle", None
            return result
        final, gate = policy.apply(_strong_action(message))
        decision = Decision(final, "fallback", "strong", safety=gate)
    if gate.effect == "block":
        decision.path = "blocked"
    result = _result(example, config, decision, answers.calls)
    result.mode, result.threshold = "oracle", None
    return result


@dataclass
class Simulation:
    """Every requested mode on every example, plus the baseline, the oracle and the sweeps."""

    config: CascadeConfig
    examples: list[Example]
    modes: list[str]
    results: dict[str, list[SampleResult]]
    """Mode -> one result per example (in example order), at ``config.threshold``."""
    baseline: list[SampleResult] | None
    """Mode A on the same examples (the always-strong cost), when the cache has strong actions."""
    oracle: list[SampleResult] | None
    sweep: dict[str, dict[float, list[SampleResult]]] = field(default_factory=dict)

    def samples(self) -> Iterable[dict[str, Any]]:
        """Rows of ``samples.jsonl``: per example per mode (and the oracle)."""
        for mode in self.modes:
            for result in self.results[mode]:
                yield result.to_dict()
        for result in self.oracle or []:
            yield result.to_dict()


def simulate(
    examples: Sequence[Example],
    collection: Collection,
    config: CascadeConfig,
    *,
    modes: Iterable[str] = "ABCDE",
    policy: SafetyPolicy | None = None,
    thresholds: Iterable[float] | None = DEFAULT_THRESHOLDS,
    sweep_modes: Iterable[str] = ("D", "E"),
    gate: Callable[[AIMessage], float | None] = gate_signal,
    continue_fallbacks: bool = False,
) -> Simulation:
    """Simulate ``modes`` on ``examples`` from ``collection`` without calling a model.

    ``policy`` defaults to the config's policy file (or allow-all). The sweep replays modes
    ``sweep_modes`` (those requested) at every threshold in ``thresholds`` plus the configured
    one. ``gate`` is mode G's signal (the cached drafts must carry what it reads).
    ``continue_fallbacks``: see :func:`replay`.

    Raises:
        CacheMissingError: the cache lacks an output a requested mode needs.
    """
    from spec_tool_node.node import load_policy

    policy = load_policy(policy, config)
    modes = [m for m in dict.fromkeys(modes)]
    examples = list(examples)

    def run(mode: str, threshold: float | None = None) -> list[SampleResult]:
        update: dict[str, Any] = {"mode": mode}
        if threshold is not None:
            update["threshold"] = threshold
        cfg = config.model_copy(update=update)
        return [
            replay(
                ex, collection[ex.id], cfg, policy=policy, gate=gate,
                continue_fallbacks=continue_fallbacks,
            )
            for ex in examples
        ]  # fmt: skip

    results = {mode: run(mode) for mode in modes}
    has_strong = all(collection[ex.id].strong is not None for ex in examples)
    has_draft = all(collection[ex.id].draft is not None for ex in examples)
    baseline = results.get("A") or (run("A") if has_strong and examples else None)
    oracle_results = (
        [oracle(ex, collection[ex.id], config, policy=policy) for ex in examples]
        if has_strong and has_draft
        else None
    )
    grid = sorted({*(thresholds or ()), config.threshold})
    sweep = {
        mode: {t: run(mode, t) for t in grid}
        for mode in dict.fromkeys(sweep_modes)
        if mode in modes
    }
    return Simulation(config, examples, modes, results, baseline, oracle_results, sweep)


# -- live check -----------------------------------------------------------------------------------


@dataclass
class LiveCheck:
    """How often the live node decided what the simulation decided (path and final action)."""

    n: int = 0
    agree: int = 0
    by_mode: dict[str, dict[str, int]] = field(default_factory=dict)
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.agree / self.n if self.n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "agree": self.agree,
            "rate": self.rate,
            "by_mode": self.by_mode,
            "disagreements": self.disagreements,
        }


NodeFactory = Callable[[str, Example], Any]
"""``(mode, example) -> SpeculativeActionNode`` for that mode and the example's tools."""


def live_check(
    examples: Sequence[Example],
    node_factory: NodeFactory,
    sample: int | Iterable[str],
    *,
    simulation: Simulation,
    modes: Iterable[str] | None = None,
) -> LiveCheck:
    """Run a sample of examples through real nodes and compare with the simulation.

    Args:
        node_factory: builds the node for a mode and an example (the example's tools bound).
            Mode B's node should have no strong model, as the simulation assumes.
        sample: the first N examples, or the ids to check.
        simulation: the simulated decisions to compare with.
        modes: modes to check (default: the simulation's).

    One decision per example and mode: the node is invoked once on the example's messages; its
    ledger's path and action are compared with the simulated ones. A strong-model failure is
    path ``"error"`` on both sides.
    """
    if isinstance(sample, int):
        chosen = list(examples)[:sample]
    else:
        wanted = set(sample)
        chosen = [ex for ex in examples if ex.id in wanted]
    check = LiveCheck()
    for mode in modes or simulation.modes:
        simulated = {r.id: r for r in simulation.results[mode]}
        counts = check.by_mode.setdefault(mode, {"n": 0, "agree": 0})
        for ex in chosen:
            sim = simulated[ex.id]
            node = node_factory(mode, ex)
            try:
                out = node.invoke({"messages": context_of(ex)})
                turn = out["spec_ledger"][-1]
                live_path, live_action, live_p = turn.path, turn.action, turn.p_accept
            except CascadeError:
                live_path, live_action, live_p = "error", None, None
            same = live_path == sim.path and live_action == sim.action
            check.n += 1
            counts["n"] += 1
            if same:
                check.agree += 1
                counts["agree"] += 1
            else:
                check.disagreements.append(
                    {
                        "id": ex.id,
                        "mode": mode,
                        "live_path": live_path,
                        "simulated_path": sim.path,
                        "live_action": live_action,
                        "simulated_action": sim.action,
                        "live_p_accept": live_p,
                        "simulated_p_accept": sim.p_accept,
                    }
                )
    return check
