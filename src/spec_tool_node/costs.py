"""What every model call cost, and what the cascade saved against calling the strong model always.

The cascade records one :class:`CallRecord` per model call (the proposer's draft, the verifier's
score, the strong model's judgement or action) and one :class:`TurnRecord` per agent turn. A
:class:`CostModel` prices calls on one of three bases:

- ``calls``: a fixed unit per call and role. The defaults are the seed study's (strong 1.00, cheap
  0.15, verifier 0.05), so relative costs are comparable with it.
- ``tokens``: per-token prices, quoted per **million** tokens as vendors' price sheets do.
- ``wall``: wall-clock seconds.

Each turn also carries its ``baseline_cost``: what the always-strong counterfactual (mode A) would
have spent on that turn, so every trajectory reports its savings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

Role = Literal["strong", "cheap", "verifier"]
ROLES: tuple[Role, ...] = get_args(Role)


class TokenPrice(BaseModel):
    """Prices per million tokens, read and written."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class CallRecord(BaseModel):
    """One model call. ``purpose`` is ``"draft"``, ``"verify"``, ``"judge"``, ``"act"`` or
    ``"continue"`` (the strong model continued a draft: it read the prompt and
    ``checked_tokens`` draft tokens, kept ``kept_tokens`` of them and wrote ``output_tokens``)."""

    role: Role
    model: str
    purpose: str
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    wall_s: float = Field(default=0.0, ge=0)
    cost: float = Field(default=0.0, ge=0)
    ok: bool = True
    error: str | None = None
    checked_tokens: int | None = Field(default=None, ge=0)
    kept_tokens: int | None = Field(default=None, ge=0)
    cached_tokens: int = Field(
        default=0,
        ge=0,
        description="Input tokens a prefix cache supplied (counted in input_tokens, not read).",
    )


class CostModel(BaseModel):
    """Prices model calls in one basis: per-call units, per-token prices, or wall seconds."""

    model_config = ConfigDict(extra="forbid")

    strong: float = Field(default=1.0, ge=0, description="Units per strong-model call.")
    cheap: float = Field(default=0.15, ge=0, description="Units per proposer call.")
    verifier: float = Field(default=0.05, ge=0, description="Units per verifier call.")
    prices: dict[Role, TokenPrice] | None = Field(
        default=None, description="Per-role prices per million tokens (basis 'tokens')."
    )
    strong_wall_s: float | None = Field(
        default=None,
        ge=0,
        description="Seconds one strong action takes, for turns without one (basis 'wall').",
    )
    basis: Literal["calls", "tokens", "wall"] = "calls"
    prefill_weight: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "Basis 'calls': what reading one token costs relative to writing one, to price a "
            "strong call that continued a draft by the work it did. None prices it as any strong "
            "call (a full unit)."
        ),
    )

    @model_validator(mode="after")
    def _basis_is_priced(self) -> Self:
        """Fail at construction rather than price a call at zero in the middle of a run."""
        if self.basis == "tokens":
            missing = [role for role in ROLES if role not in (self.prices or {})]
            if missing:
                raise ValueError(
                    f"basis 'tokens' needs prices for every role; missing: {', '.join(missing)}"
                )
        if self.basis == "wall" and self.strong_wall_s is None:
            raise ValueError("basis 'wall' needs strong_wall_s (measure one strong action)")
        return self

    def cost(self, call: CallRecord) -> float:
        """The cost of one call under this model's basis (``call.cost`` is ignored)."""
        if self.basis == "calls":
            if call.purpose == "continue" and self.prefill_weight is not None:
                return self.strong * self._continued_share(call)
            return getattr(self, call.role)
        if self.basis == "tokens":
            return self._token_cost(call.role, call.input_tokens, call.output_tokens)
        return call.wall_s

    def priced(self, call: CallRecord) -> CallRecord:
        """A copy of ``call`` with its cost filled in."""
        return call.model_copy(update={"cost": self.cost(call)})

    def baseline(self, calls: Sequence[CallRecord]) -> float:
        """What one strong action would have cost on the turn that made ``calls``.

        Per call, that is ``strong``. Per token or second it is the turn's strong ``"act"`` call
        when there was one; per token, a strong call that continued a draft gives it exactly (its
        output is the strong model's own action, read after the same prompt); otherwise it is
        estimated: the first cheap call's token counts at strong prices (the two models read the
        same context and write about the same action), or ``strong_wall_s``. A turn with neither a
        strong action nor a cheap call has baseline 0.
        """
        if self.basis == "calls":
            return self.strong
        strong = next((c for c in calls if c.role == "strong" and c.purpose == "act"), None)
        if strong is not None:
            return self.cost(strong)
        continued = next((c for c in calls if c.purpose == "continue" and c.ok), None)
        if continued is not None and self.basis == "tokens":  # its output is the strong action
            prompt, written = _prompt_and_output(continued)
            return self._token_cost("strong", prompt, written)
        if self.basis == "wall":
            return self.strong_wall_s or 0.0
        cheap = next((c for c in calls if c.role == "cheap"), None)
        if cheap is None:
            return 0.0
        return self._token_cost("strong", cheap.input_tokens, cheap.output_tokens)

    def turn(self, calls: Sequence[CallRecord], **fields: object) -> TurnRecord:
        """Price ``calls`` and build the turn's record; ``wall_s`` defaults to the calls' sum."""
        priced = [self.priced(c) for c in calls]
        fields.setdefault("wall_s", sum(c.wall_s for c in priced))
        return TurnRecord.model_validate(
            {
                **fields,
                "calls": priced,
                "cost": sum(c.cost for c in priced),
                "baseline_cost": self.baseline(priced),
            }
        )

    def repriced(self, turn: TurnRecord) -> TurnRecord:
        """``turn`` priced under this model: a record keeps every call's tokens and time, so a
        price change re-reads saved results instead of making the calls again."""
        fields = turn.model_dump(exclude={"calls", "cost", "baseline_cost", "savings"})
        return self.turn(turn.calls, **fields)

    def _continued_share(self, call: CallRecord) -> float:
        """A continuation's work as a share of writing the same action from scratch.

        Work counts a read token as ``prefill_weight`` and a decoding step as 1. Writing from
        scratch reads the prompt and takes one step per output token after the first (the first
        comes with the prompt's pass). Continuing reads the prompt and the checked draft tokens
        in one pass, which also yields the first token not taken from the draft, and takes one
        step per further written token. Prompt tokens a prefix cache supplied are read by
        neither (an agent's next prompt extends its last one, and the same cache serves both).
        A share above 1 (a long draft rejected early) is kept: the check then cost more than it
        saved.
        """
        weight = self.prefill_weight or 0.0
        prompt, written = _prompt_and_output(call)
        scratch = weight * prompt + max(written - 1, 0)
        read = call.input_tokens - call.cached_tokens
        work = weight * read + max(call.output_tokens - 1, 0)
        return work / scratch if scratch > 0 else 1.0

    def _token_cost(self, role: Role, input_tokens: int, output_tokens: int) -> float:
        price = (self.prices or {})[role]
        return (price.input * input_tokens + price.output * output_tokens) / 1e6


class TurnRecord(BaseModel):
    """One agent turn: how the action was chosen, by whom, and what it cost against the baseline.

    ``path`` says how the turn ended (``"accepted"``, ``"fallback"``, ``"blocked"``, ``"invalid"``,
    ``"strong"``/``"cheap"`` for the single-model modes, ``"escalated"`` while a person's review is
    pending, then ``"approved"``, ``"edited"`` or ``"rejected"``, and ``"error"`` for a turn the
    strong model's failure ended); ``action`` is the final action's canonical text.
    """

    mode: str
    path: str
    calls: list[CallRecord] = Field(default_factory=list)
    p_accept: float | None = None
    reject_reason: str | None = None
    action: str
    winner: Role | None = None
    safety: Literal["allow", "block", "escalate"] = "allow"
    rule: str | None = None
    decided_by: Literal["strong", "human"] | None = Field(
        default=None, description="Who settled an escalated action: the strong model or a person."
    )
    review: Literal["approve", "edit", "reject"] | None = Field(
        default=None, description="A person's decision on an action escalated to them."
    )
    draft_tokens: int | None = Field(
        default=None, description="When the strong model continued a draft: the draft's tokens."
    )
    kept_tokens: int | None = Field(
        default=None, description="The draft's leading tokens the strong model agreed with."
    )
    full_draft_kept: bool | None = Field(
        default=None, description="Whether the whole draft was the strong model's own action."
    )
    cost: float = 0.0
    baseline_cost: float = 0.0
    wall_s: float = 0.0

    @computed_field
    @property
    def savings(self) -> float:
        """Baseline minus cost: negative when the cascade spent more than the strong model alone."""
        return self.baseline_cost - self.cost


def _prompt_and_output(continued: CallRecord) -> tuple[int, int]:
    """The uncached prompt and the output length of the action a continuation wrote (lossless:
    the strong model's own action), from what it read, checked, kept and wrote."""
    read = continued.input_tokens - continued.cached_tokens
    prompt = read - (continued.checked_tokens or 0)
    return prompt, (continued.kept_tokens or 0) + continued.output_tokens


class RoleUsage(TypedDict):
    """What one role's calls added up to over a trajectory."""

    calls: int
    cost: float
    input_tokens: int
    output_tokens: int
    wall_s: float


class TrajectorySummary(BaseModel):
    """Totals over one trajectory's turns."""

    turns: int
    cost: float
    baseline_cost: float
    savings: float
    relative_cost: float = Field(description="cost / baseline_cost; 0 when the baseline is 0.")
    accept_rate: float = Field(description="Fraction of turns whose draft was accepted.")
    by_role: dict[Role, RoleUsage]
    wall_s: float


def summarize(turns: Sequence[TurnRecord]) -> TrajectorySummary:
    """Add up a trajectory's turns: cost, baseline, savings, accept rate and per-role usage."""
    by_role: dict[Role, RoleUsage] = {
        role: RoleUsage(calls=0, cost=0.0, input_tokens=0, output_tokens=0, wall_s=0.0)
        for role in ROLES
    }
    for turn in turns:
        for call in turn.calls:
            usage = by_role[call.role]
            usage["calls"] += 1
            usage["cost"] += call.cost
            usage["input_tokens"] += call.input_tokens
            usage["output_tokens"] += call.output_tokens
            usage["wall_s"] += call.wall_s
    cost = sum(t.cost for t in turns)
    baseline = sum(t.baseline_cost for t in turns)
    return TrajectorySummary(
        turns=len(turns),
        cost=cost,
        baseline_cost=baseline,
        savings=baseline - cost,
        relative_cost=cost / baseline if baseline else 0.0,
        accept_rate=sum(t.path == "accepted" for t in turns) / len(turns) if turns else 0.0,
        by_role=by_role,
        wall_s=sum(t.wall_s for t in turns),
    )


def format_table(turns: Sequence[TurnRecord]) -> str:
    """A compact per-turn table with a total line, for examples and the CLI."""
    header = ["turn", "mode", "path", "p_accept", "winner", "cost", "baseline", "savings"]
    rows = [
        [
            str(i),
            t.mode,
            t.path,
            "-" if t.p_accept is None else f"{t.p_accept:.2f}",
            t.winner or "-",
            f"{t.cost:.4g}",
            f"{t.baseline_cost:.4g}",
            f"{t.savings:.4g}",
        ]
        for i, t in enumerate(turns)
    ]
    s = summarize(turns)
    total = [
        "total",
        "",
        f"{s.accept_rate:.0%} accepted",
        "",
        "",
        f"{s.cost:.4g}",
        f"{s.baseline_cost:.4g}",
        f"{s.savings:.4g}",
    ]
    widths = [max(len(row[i]) for row in [header, *rows, total]) for i in range(len(header))]
    text_columns = {"mode", "path", "winner"}

    def line(row: list[str]) -> str:
        cells = zip(header, row, widths, strict=True)
        return "  ".join(c.ljust(w) if h in text_columns else c.rjust(w) for h, c, w in cells)

    rule = "-" * len(line(header))
    footer = f"relative cost {s.relative_cost:.3g} of always-strong"
    return "\n".join([line(header), rule, *map(line, rows), rule, line(total), footer])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default); NaN if empty.

    Not ``statistics.quantiles(method="inclusive")``: same method, but its integer-weighted
    arithmetic rounds differently in the last bits (12 of the 34 p50/p95 values of the committed
    ``metrics.json`` files would change), and it refuses fewer than two values.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
