"""The trained verifier (modes D and E): p(ACCEPT) from one forward pass, no generation."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
from langchain_core.messages import BaseMessage

from spec_tool_node.actions import Action
from spec_tool_node.chat_models.loading import load_pretrained
from spec_tool_node.costs import CallRecord
from spec_tool_node.verifiers.base import Verdict, Verifier
from spec_tool_node.verifiers.prompt import label_token_ids, render_verifier_prompt


class TrainedVerifier(Verifier):
    """A causal LM (+ LoRA adapter) read as a binary ACCEPT/REJECT classifier.

    Args:
        model: an offline asset name, a local folder or a hub id, as for ``HFChatModel``.
        adapter: optional peft adapter folder, merged into the weights at load.
        dtype, device: as for ``HFChatModel``.
        loaded: an already-loaded ``(model, tokenizer)`` pair used instead of loading ``model``.
        name: model name in cost records (default: ``model``).
        max_length: keep at most this many tokens per prompt, cutting from the left (the draft and
            the question sit at the end).

    ``p_accept`` is the softmax over the two labels' first-token logits at the prompt's last
    position; all drafts of a batch share one left-padded forward pass.
    """

    def __init__(
        self,
        model: str | None = None,
        adapter: str | None = None,
        *,
        dtype: str = "bfloat16",
        device: str | None = None,
        loaded: tuple[Any, Any] | None = None,
        name: str | None = None,
        max_length: int | None = None,
    ) -> None:
        if loaded is not None:
            if adapter is not None:
                raise ValueError("pass adapter= with model=NAME, not with an already loaded pair")
            self.model, self.tokenizer = loaded
        elif model is not None:
            self.model, self.tokenizer = load_pretrained(model, adapter, dtype=dtype, device=device)
        else:
            raise ValueError(
                "TrainedVerifier needs model=NAME (offline asset, local folder or hub id) "
                "or loaded=(model, tokenizer)"
            )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # the label is read at the last position: pad and cut on the left (the draft and the
        # question sit at the end)
        self.tokenizer.padding_side = self.tokenizer.truncation_side = "left"
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.name = name or model or "verifier"
        self.max_length = max_length
        self.accept_id, self.reject_id = label_token_ids(self.tokenizer)
        params = inspect.signature(self.model.forward).parameters
        self._extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self._lock = threading.Lock()

    def score_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        if not drafts:
            return []
        start = time.perf_counter()
        batch = self.tokenizer(
            [render_verifier_prompt(self.tokenizer, context, tools, d) for d in drafts],
            add_special_tokens=False,
            padding=True,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids, mask = batch["input_ids"], batch["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self.model.device
        with self._lock, torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                use_cache=False,
                **self._extra,
            ).logits[:, -1]
        pair = logits[:, [self.accept_id, self.reject_id]].float()
        p_accept = torch.softmax(pair, dim=-1)[:, 0].tolist()
        record = CallRecord(
            role="verifier",
            model=self.name,
            purpose="verify",
            input_tokens=int(mask.sum()),
            output_tokens=0,
            wall_s=time.perf_counter() - start,
        )
        return [Verdict(p, record if i == 0 else None) for i, p in enumerate(p_accept)]
