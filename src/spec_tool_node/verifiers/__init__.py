"""Verifiers: score drafts of the next action with p(ACCEPT)."""

from spec_tool_node.verifiers.base import Verdict, Verifier
from spec_tool_node.verifiers.judge import ChatModelVerifier, judge_answer
from spec_tool_node.verifiers.prompt import (
    LABELS,
    VERIFIER_SYSTEM,
    label_token_ids,
    render_verifier_prompt,
    verifier_messages,
)
from spec_tool_node.verifiers.trained import TrainedVerifier

__all__ = [
    "LABELS",
    "VERIFIER_SYSTEM",
    "ChatModelVerifier",
    "TrainedVerifier",
    "Verdict",
    "Verifier",
    "judge_answer",
    "label_token_ids",
    "render_verifier_prompt",
    "verifier_messages",
]
