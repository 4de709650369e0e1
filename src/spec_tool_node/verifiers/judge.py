"""The prompted judge (mode C): any LangChain chat model asked ACCEPT or REJECT."""

from __future__ import annotations

import re
import time

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from spec_tool_node.costs import CallRecord, Role
from spec_tool_node.verifiers.base import Verdict
from spec_tool_node.verifiers.prompt import PromptedVerifier

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_LABEL = re.compile(r"\b(ACCEPT|REJECT)\b")
_LABEL_ANY_CASE = re.compile(r"\b(accept|reject)\b", re.IGNORECASE)


def judge_answer(text: str) -> float:
    """1.0 for ACCEPT, 0.0 for REJECT or an unclear reply (an unclear judge is a reject).

    Reasoning in ``<think>`` tags is skipped; the first label written in capitals decides, else the
    first in any case.
    """
    text = _THINK.sub("", text)
    match = _LABEL.search(text) or _LABEL_ANY_CASE.search(text)
    return 1.0 if match is not None and match.group(1).upper() == "ACCEPT" else 0.0


class ChatModelVerifier(PromptedVerifier):
    """A chat model prompted as a judge with the verifier prompt; one call per draft.

    Args:
        model: any LangChain chat model (usually the strong model, unbound).
        role: the role its calls are billed to (default ``"strong"``).
        name: model name in cost records when the reply does not name its model.
    """

    def __init__(self, model: BaseChatModel, *, role: Role = "strong", name: str | None = None):
        self.model = self.asked = model
        self.role: Role = role
        named = (getattr(model, a, None) for a in ("model_name", "model"))
        self.name = name or next((n for n in named if isinstance(n, str) and n), None)
        self.name = self.name or type(model).__name__

    def _verdict(self, reply: AIMessage, start: float) -> Verdict:
        usage = getattr(reply, "usage_metadata", None) or {}
        metadata = getattr(reply, "response_metadata", None) or {}
        record = CallRecord(
            role=self.role,
            model=str(metadata.get("model_name") or self.name),
            purpose="judge",
            input_tokens=usage.get("input_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
            wall_s=time.perf_counter() - start,
        )
        return Verdict(judge_answer(reply.text), record)
