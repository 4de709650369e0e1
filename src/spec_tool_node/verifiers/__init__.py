"""Verifiers: score drafts of the next action with p(ACCEPT).

The trained verifier and the probe need torch; they are imported on first use, so the prompted
judge and the verifier prompt work in an install without the ``local`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spec_tool_node.verifiers.base import Verdict, Verifier
from spec_tool_node.verifiers.judge import ChatModelVerifier, judge_answer
from spec_tool_node.verifiers.prompt import (
    LABELS,
    VERIFIER_SYSTEM,
    label_token_ids,
    render_verifier_prompt,
    verifier_messages,
)

if TYPE_CHECKING:
    from spec_tool_node.verifiers.probe import ProbeHead, ProbeVerifier, load_verifier
    from spec_tool_node.verifiers.trained import TrainedVerifier

_LAZY = {
    "TrainedVerifier": "spec_tool_node.verifiers.trained",
    "ProbeHead": "spec_tool_node.verifiers.probe",
    "ProbeVerifier": "spec_tool_node.verifiers.probe",
    "load_verifier": "spec_tool_node.verifiers.probe",
}
"""Names whose modules import torch, by the module that defines them."""

__all__ = [
    "LABELS",
    "VERIFIER_SYSTEM",
    "ChatModelVerifier",
    "ProbeHead",
    "ProbeVerifier",
    "TrainedVerifier",
    "Verdict",
    "Verifier",
    "judge_answer",
    "label_token_ids",
    "load_verifier",
    "render_verifier_prompt",
    "verifier_messages",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
