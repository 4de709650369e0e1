"""``CascadeConfig``: which mode, which thresholds, what things cost, which safety policy.

Validated at the boundary (pydantic) and saved as JSON, so a configuration travels with a bundle
and an evaluation run states exactly what it measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from spec_tool_node.costs import CostModel
from spec_tool_node.errors import ConfigError
from spec_tool_node.jsonl import write_text
from spec_tool_node.modes import MODES, PLAYED_BY, mode_letter


class ModelSpec(BaseModel):
    """A model by name (asset, folder or hub id) plus an optional peft adapter folder."""

    model_config = ConfigDict(extra="forbid")

    model: str
    adapter: str | None = None
    max_length: int | None = Field(default=None, ge=1)
    """For a verifier: the prompt length it was trained on; longer prompts are cut the same way."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint (vLLM, llama.cpp) serving ``model`` under that name: the node
    then calls the server through langchain-openai instead of loading weights (the server applies
    any adapter, so ``adapter`` stays empty)."""

    @model_validator(mode="after")
    def _served_or_local(self) -> Self:
        if self.base_url and self.adapter:
            raise ValueError("a served model (base_url) takes no adapter: the server applies it")
        return self


ACCEPTS_NOTHING = 1.01
"""A threshold above every score: no draft is accepted and no scorer is asked. ``train
calibrate`` writes it for decisions where no threshold reached the target precision on the
user's data, so an uncalibratable verifier fails closed instead of accepting its best guess."""


def accepts_nothing(threshold: float) -> bool:
    """Whether a threshold is above every score (see :data:`ACCEPTS_NOTHING`)."""
    return threshold > 1.0


_ADDED_LATER = ("accept_calls", "multi_turn_speculative_fallback", "max_uncached_prompt_tokens")
"""Decision fields added after trajectory runs were saved: at their defaults they decide as
those runs did, so they stay out of the runs' cache keys (:meth:`CascadeConfig.result_fields`)."""


class CascadeConfig(BaseModel):
    """How the speculative node decides.

    Args:
        mode: ``A`` always strong, ``B`` cheap only, ``C`` cheap + prompted strong judge,
            ``D`` cheap + trained verifier, ``E`` N sampled drafts reranked by the verifier,
            ``F`` lossless (the strong model continues the draft: its own greedy action, written
            only where the draft is wrong), ``G`` a confidence gate on the proposer's own
            log-probs; given by letter or by name (``always_strong``, ``cheap_only``, ``judge``,
            ``verifier``, ``rerank``, ``lossless``, ``gate``), stored as the letter.
        threshold: a draft is accepted when its p(ACCEPT) is at least this. Above 1
            (:data:`ACCEPTS_NOTHING`) no draft is accepted and the scorer is not asked: every
            decision goes to the strong model (with the speculative fallback, as in mode F).
        multi_turn_threshold: the threshold for a decision later in a conversation (after an
            assistant or tool message). A verifier scores those drafts on another scale than
            first-turn ones (longer contexts, tool results), so it is calibrated on its own;
            ``None`` uses ``threshold``; above 1, later decisions accept nothing.
        gate_threshold: mode G accepts a draft when exp(mean log-prob over its argument-value
            tokens) is at least this (calibrate it on training-side drafts, like ``threshold``).
        accept_calls: whether a draft that calls a tool may be accepted on its score (modes C,
            D, E, G). ``False`` sends every such draft to the strong model, so no tool runs on
            the proposer's word alone; with the speculative fallback a call the strong model
            agrees with in full is still kept at the price of reading it. The scorer then
            judges only answers and refusals, and is not asked about calls at all. For a
            proposer whose calls the strong model gets right more often, while its plain
            answers are where it beats the strong model (a small model that declines to call an
            irrelevant tool, say).
        speculative_fallback: when a draft is rejected (modes C, D, E, G), a strong model that
            can continue a draft (a local ``HFChatModel``) checks the best draft in one pass and
            writes only from its first disagreeing token, instead of writing from scratch; its
            action is exactly the one it would have written alone. Other strong models act as
            usual.
        multi_turn_speculative_fallback: the same for a decision later in a conversation;
            ``None`` follows ``speculative_fallback`` (mode F: continues). Where the strong
            model keeps little of the proposer's later drafts (its own agent turns diverge from
            the proposer's), a draft that cannot be accepted there (``multi_turn_threshold``
            above 1, or any draft in mode F) costs more than its continuation saves: with this
            off, the proposer is not asked at all and the strong model acts alone, as in mode A
            (so mode F stays lossless).
        max_uncached_prompt_tokens: the proposer is not asked when the strong model would read
            more than this many prompt tokens that no prefix cache holds
            (``HFChatModel.uncached_prompt_tokens``); the strong model then acts alone. A
            continuation reads those tokens as writing from scratch does, so on a long cold
            prompt the decoding steps a kept draft saves cannot repay the draft (an agent's first
            decision on a 4,000-token prompt: 1.10 of one strong action, read cold; 0.80 with
            the prompt cached); a draft that a score may accept pays there only by being
            accepted (on the training side an agent's first drafts above the default bundle's
            limit were all calls, which it never accepts: ``benchmarks/results/cold_prompt/``).
            ``None`` always drafts; a strong model that cannot tell is asked no question and the
            proposer drafts. Calibrate it on your own decisions
            (``benchmarks/cold_prompt_limit.py``, ``benchmarks/cold_open_drafts.py``).
        prefill_ahead: in mode F, the strong model reads the prompt while the proposer drafts
            (``HFChatModel.prefill``), so its check of the draft starts from the first token
            that pass chose and reads only the draft: the overlap saves wall time where the two
            models do not share one device's compute (separate GPUs or CPU cores), and the
            ledger prices the same work either way. When its own reply starts as prose it then
            reads the draft as it is written and stops the proposer (a local ``HFChatModel``)
            where the two part.
        n_drafts: drafts per decision in mode E (the first greedy, the rest sampled).
        sample_kwargs: call options that make the proposer sample the extra drafts of mode E.
        cost_model: prices for the ledger.
        call_timeout_s: give up on one model call (draft, score, strong action) after this many
            seconds; a slow proposer or verifier is then a reject, a slow strong model an error.
            ``None`` waits as long as the call takes.
        safety: path of a safety policy file (JSON or YAML); relative paths in a saved config
            are resolved against the config file's folder.
        proposer, strong, verifier: optional model specs, used by bundles and the CLI to build
            the models; a node given model objects directly ignores them.
    """

    model_config = ConfigDict(extra="forbid")

    mode: str = "D"
    threshold: float = Field(default=0.5, ge=0.0, le=ACCEPTS_NOTHING)
    multi_turn_threshold: float | None = Field(default=None, ge=0.0, le=ACCEPTS_NOTHING)
    gate_threshold: float = Field(default=0.5, ge=0.0, le=ACCEPTS_NOTHING)
    accept_calls: bool = True
    speculative_fallback: bool = True
    multi_turn_speculative_fallback: bool | None = None
    max_uncached_prompt_tokens: int | None = Field(default=None, ge=0)
    prefill_ahead: bool = True
    n_drafts: int = Field(default=3, ge=2)
    sample_kwargs: dict[str, Any] = Field(
        default_factory=lambda: {"do_sample": True, "temperature": 0.8}
    )
    cost_model: CostModel = Field(default_factory=CostModel)
    call_timeout_s: float | None = Field(default=None, gt=0)
    safety: str | None = None
    proposer: ModelSpec | None = None
    strong: ModelSpec | None = None
    verifier: ModelSpec | None = None

    @field_validator("mode")
    @classmethod
    def _canonical_mode(cls, mode: str) -> str:
        """One canonical form (the letter), whichever form the user wrote."""
        return mode_letter(mode)

    def accept_threshold(self, multi_turn: bool) -> float:
        """The verifier's accept threshold for a first-turn or a later decision."""
        if multi_turn and self.multi_turn_threshold is not None:
            return self.multi_turn_threshold
        return self.threshold

    def continues_draft(self, multi_turn: bool, lossless: bool = False) -> bool:
        """Whether the strong model continues the draft at a first-turn or a later decision:
        a fallback's (modes C, D, E, G), or every decision's in mode F (``lossless``), where only
        ``multi_turn_speculative_fallback`` can turn it off."""
        if multi_turn and self.multi_turn_speculative_fallback is not None:
            return self.multi_turn_speculative_fallback
        return lossless or self.speculative_fallback

    def draft_threshold(self, multi_turn: bool) -> float:
        """The p(ACCEPT) a draft of this config's mode needs at a first-turn or a later
        decision: mode G's gate threshold, a verifier's or judge's accept threshold, and none
        for the other modes (mode B trusts its draft, so a ``multi_turn_threshold`` above 1
        cannot turn B's later drafts away; mode F accepts no draft as it stands)."""
        scorer = MODES[self.mode].scorer
        if scorer == "gate":
            return self.gate_threshold
        if scorer in ("verifier", "judge"):
            return self.accept_threshold(multi_turn)
        return 0.0

    def drafts_only_to_continue(self, multi_turn: bool) -> bool:
        """Whether a draft at a first-turn or a later decision can only be continued, never
        accepted as it stands: every one in mode F; a scored mode's where its threshold is above
        1. Where the strong model will not continue it either, no draft is asked for
        (:meth:`wants_draft`)."""
        lossless = MODES[self.mode].scorer == "lossless"
        return lossless or accepts_nothing(self.draft_threshold(multi_turn))

    def wants_draft(self, multi_turn: bool, continues: bool) -> bool:
        """Whether a decision has any use for a draft: a score may accept it, or the strong
        model continues it (``continues``). The one rule for whether the proposer is asked
        (``cascade.decide``) and whether ``max_uncached_prompt_tokens`` can matter
        (:meth:`result_fields`)."""
        return continues or not self.drafts_only_to_continue(multi_turn)

    def result_fields(self) -> dict[str, Any]:
        """The fields this config's mode decides by, as JSON: what the actions and calls of a
        saved run depend on, so a result cache keyed by them is found again under any verifier
        or threshold the mode never reads (mode A's trajectories hold for every bundle).

        Read from the mode table: the models the mode requires or uses when given, the
        thresholds of its scorer, sampling only when it drafts more than once, the fallback
        options only when a draft can be rejected for the strong model (in mode F, only the
        later decisions' switch), the cold-prompt limit only where some decision asks the
        proposer beside a strong model. Left out:
        ``prefill_ahead`` (it changes when the strong model reads, not what any model writes),
        ``cost_model`` (saved calls keep their tokens and times, and are re-priced:
        :meth:`CostModel.repriced`), and fields added after runs were saved while they decide
        as those runs did (:data:`_ADDED_LATER` at their defaults).
        """
        spec = MODES[self.mode]
        drop = {"prefill_ahead", "cost_model"}
        drop |= {f for f in _ADDED_LATER if getattr(self, f) == type(self).model_fields[f].default}
        roles = spec.models | {PLAYED_BY[role] for role in spec.optional}
        drop |= {r for r in ("proposer", "strong", "verifier") if r not in roles}
        if spec.draft_count(self.n_drafts) < 2:
            drop |= {"n_drafts", "sample_kwargs"}
        if spec.scorer not in ("verifier", "judge"):
            drop |= {"threshold", "multi_turn_threshold"}
        if spec.scorer != "gate":
            drop.add("gate_threshold")
        if spec.scorer in ("none", "lossless") or not spec.has_strong:
            drop |= {"speculative_fallback", "accept_calls"}
        if spec.scorer == "none" or not spec.has_strong:
            drop.add("multi_turn_speculative_fallback")
        lossless = spec.scorer == "lossless"
        drafting = (self.wants_draft(t, self.continues_draft(t, lossless)) for t in (False, True))
        if not (spec.has_strong and spec.draft_count(self.n_drafts) and any(drafting)):
            drop.add("max_uncached_prompt_tokens")  # no decision drafts: none would ask
        return self.model_dump(mode="json", exclude=drop)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON, atomically (a reader never sees half a file)."""
        write_text(path, self.model_dump_json(indent=2, exclude_none=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CascadeConfig:
        """Load a saved config; errors name the file and the offending field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: {e}") from e
        try:
            config = cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(f"{path}: invalid cascade config:\n{e}") from e
        if config.safety and not Path(config.safety).is_absolute():
            config.safety = str(path.parent / config.safety)
        return config
