"""The cascade's modes as data: the one table that says what each mode does and needs.

Every layer reads this table instead of re-coding mode letters: the config normalises a mode
given by letter or by name, the node and the middleware check the models they were given, the
evaluation decides which outputs to collect and which models to load. Adding a mode means adding
a row here (and teaching :func:`spec_tool_node.cascade.decide` anything new it does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from spec_tool_node.errors import ConfigError

ModelRole = Literal["proposer", "verifier", "strong"]
"""The model objects a user hands to the node, the middleware or the evaluation."""

PLAYED_BY: dict[str, ModelRole] = {
    "proposer": "proposer",
    "verifier": "verifier",
    "strong": "strong",
    "judge": "strong",  # mode C's judge is the strong model prompted as a judge
    "continuer": "strong",  # mode F: the strong model continues the draft (a local model)
}
"""Which model object plays each role a mode may require; a new role (a strong model that
scores continuations, say) is one more entry here."""


@dataclass(frozen=True)
class ModeSpec:
    """What a mode does and which roles it requires.

    Args:
        letter: the canonical short form stored in configs, caches and reports.
        name: the descriptive form users may pass instead.
        drafts: drafts per decision; ``"n"`` means ``config.n_drafts``.
        scorer: who scores the drafts (``"none"``: the draft is trusted; ``"lossless"``: none
            is accepted as it is, the strong model continues it; ``"gate"``: the proposer's own
            log-probs over its argument values, no model call).
        requires: the roles the mode cannot run without (keys of :data:`PLAYED_BY`).
        optional: roles the mode uses when they are given (mode G's verifier: a probe that
            scores drafts from the proposer's own drafting pass).
    """

    letter: str
    name: str
    drafts: int | Literal["n"]
    scorer: Literal["none", "verifier", "judge", "lossless", "gate"]
    requires: frozenset[str]
    optional: frozenset[str] = frozenset()

    def draft_count(self, n_drafts: int) -> int:
        """Drafts per decision under a config whose ``n_drafts`` is given."""
        return n_drafts if self.drafts == "n" else self.drafts

    @property
    def models(self) -> frozenset[ModelRole]:
        """The model objects the mode needs (a judge needs the strong model)."""
        return frozenset(PLAYED_BY[role] for role in self.requires)

    @property
    def has_strong(self) -> bool:
        """Whether a strong model stands behind the drafts (fallback or judge)."""
        return "strong" in self.models


MODES: dict[str, ModeSpec] = {
    spec.letter: spec
    for spec in (
        ModeSpec("A", "always_strong", 0, "none", frozenset({"strong"})),
        ModeSpec("B", "cheap_only", 1, "none", frozenset({"proposer"})),
        ModeSpec("C", "judge", 1, "judge", frozenset({"proposer", "judge", "strong"})),
        ModeSpec("D", "verifier", 1, "verifier", frozenset({"proposer", "verifier", "strong"})),
        ModeSpec("E", "rerank", "n", "verifier", frozenset({"proposer", "verifier", "strong"})),
        ModeSpec("F", "lossless", 1, "lossless", frozenset({"proposer", "continuer", "strong"})),
        ModeSpec(
            "G", "gate", 1, "gate", frozenset({"proposer", "strong"}), frozenset({"verifier"})
        ),
    )
}
"""Every mode by its letter."""


class UnknownModeError(ConfigError):
    """A mode that is neither a letter nor a name of :data:`MODES`."""


def mode_letter(mode: str) -> str:
    """The canonical letter of ``mode`` given by letter or name (any case).

    Raises:
        UnknownModeError: no mode has that letter or name.
    """
    key = mode.strip()
    for spec in MODES.values():
        if key.upper() == spec.letter.upper() or key.lower() == spec.name.lower():
            return spec.letter
    raise UnknownModeError(f"unknown mode {mode!r}; known: {known_modes()}")


def known_modes() -> str:
    """The modes as users may name them, for messages and ``--help``."""
    return ", ".join(f"{s.letter} ({s.name})" for s in MODES.values())


def parse_modes(text: str) -> list[str]:
    """Comma-separated modes (letters or names) as canonical letters, each once, in order."""
    modes = [mode_letter(m) for m in text.split(",") if m.strip()]
    if not modes:
        raise UnknownModeError(f"no mode in {text!r}; known: {known_modes()}")
    return list(dict.fromkeys(modes))


def models_needed(modes: Iterable[str]) -> set[ModelRole]:
    """The model objects that running every mode in ``modes`` needs."""
    return {role for mode in modes for role in MODES[mode_letter(mode)].models}


def missing_models(mode: str, **given: object) -> list[ModelRole]:
    """The model objects ``mode`` needs that ``given`` (role -> object or None) lacks."""
    spec = MODES[mode_letter(mode)]
    return sorted(role for role in spec.models if given.get(role) is None)


def describe_models(roles: Iterable[str], flag: str = "{role}=...") -> str:
    """``a proposer (proposer=...) and a strong model (strong=...)``, for error messages."""
    return " and ".join(
        f"a {role}{' model' if role == 'strong' else ''} ({flag.format(role=role)})"
        for role in roles
    )
