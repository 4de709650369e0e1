"""The trained verifier behind an OpenAI-compatible server (vLLM with its LoRA, llama.cpp).

``TrainedVerifier`` reads the ACCEPT and REJECT logits right after the verifier prompt. A server
gives the same numbers through its chat endpoint: the verifier prompt as messages (the server's
chat template renders it exactly as the local template does), one generated token, and that
token's top log-probs. :class:`ServedVerifier` sums the probability of the top tokens that begin
each label (``ACC``, ``ACCEPT``, ...; a label may be split into several tokens) and returns
ACCEPT's share of the two: the pair softmax ``TrainedVerifier`` computes, up to the mass of a
label's tokens that fall outside the top-k list. A reply in which neither label is among the top
tokens scores 0 (a reject), as an unclear judge does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from spec_tool_node.costs import CallRecord
from spec_tool_node.verifiers.base import Verdict
from spec_tool_node.verifiers.prompt import LABELS, PromptedVerifier


def label_share(top_logprobs: Sequence[dict[str, Any]]) -> float:
    """ACCEPT's share of the probability of the tokens that begin ACCEPT or REJECT."""
    mass = dict.fromkeys(LABELS, 0.0)
    for entry in top_logprobs:
        token = str(entry.get("token", "")).strip().upper()
        for label in LABELS:
            if token and label.startswith(token):
                mass[label] += math.exp(float(entry["logprob"]))
    total = sum(mass.values())
    return mass[LABELS[0]] / total if total > 0 else 0.0


class ServedVerifier(PromptedVerifier):
    """p(ACCEPT) from a verifier model served behind an OpenAI-compatible chat endpoint.

    Args:
        chat_model: a chat model on the server, e.g. ``ChatOpenAI(base_url=..., model="verifier")``
            (the name vLLM serves the verifier's LoRA under).
        top_logprobs: how many top tokens to ask for (vLLM allows 20 unless started with a larger
            ``--max-logprobs``).
        name: model name in cost records (default: the reply's model name).
    """

    def __init__(
        self, chat_model: BaseChatModel, *, top_logprobs: int = 20, name: str | None = None
    ) -> None:
        self.asked = chat_model.bind(
            logprobs=True,
            top_logprobs=top_logprobs,
            max_tokens=1,  # ChatOpenAI sends it as max_completion_tokens, which vLLM reads
            extra_body={"max_tokens": 1},  # llama.cpp's server reads only the older name
            temperature=0,
        )
        self.name = name

    def _verdict(self, reply: AIMessage, start: float) -> Verdict:
        metadata = reply.response_metadata
        content = (metadata.get("logprobs") or {}).get("content") or []
        if not content:
            raise ValueError(
                "the server returned no log-probs: it must support logprobs/top_logprobs "
                "on chat completions (vLLM does; llama.cpp's server needs logits_all)"
            )
        usage = reply.usage_metadata or {}
        record = CallRecord(
            role="verifier",
            model=str(self.name or metadata.get("model_name") or "verifier"),
            purpose="verify",
            input_tokens=usage.get("input_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
            wall_s=time.perf_counter() - start,
        )
        return Verdict(label_share(content[0].get("top_logprobs") or []), record)
