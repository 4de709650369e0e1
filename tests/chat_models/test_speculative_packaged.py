"""Draft checking on a real packaged model: SmolLM2-135M-Instruct in float32 (what CI has).

Slow: about four minutes on the shared 2-core machine it was written on.
"""

from __future__ import annotations

import pytest
import torch
from langchain_core.messages import HumanMessage

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.chat_models.speculative import continue_draft, cut_at_end

BUDGET = 24


@pytest.mark.slow
@pytest.mark.packaged
def test_continue_draft_equals_greedy_on_smollm2_for_every_kind_of_draft():
    chat = HFChatModel(model="smollm2-135m-instruct", dtype="float32", prefix_cache=0)
    model, tokenizer, end = chat.hf_model, chat.tokenizer, chat._end_token_ids
    prompt_text = chat._prompt([HumanMessage("Name three primary colours.")], None, None)
    prompt = tokenizer(prompt_text, add_special_tokens=False).input_ids
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=BUDGET, do_sample=False, eos_token_id=end,
            pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None,
        )  # fmt: skip
    want = cut_at_end(out[0, len(prompt) :].tolist(), end)
    other = (want[3] + 1) % len(tokenizer)
    drafts = {
        "right": want,
        "partly right": [*want[:3], other, *want[4:]],
        "wrong": [other, *want[1:]],
        "empty": [],
        "longer than the budget": [*want, *want, *want],
        # another tokenizer's draft arrives as text: this one is re-tokenised here
        "text": tokenizer.decode(want[:10]) + " and perhaps purple",
    }
    for kind, draft in drafts.items():
        result = continue_draft(model, tokenizer, prompt, draft, max_new_tokens=BUDGET, end_ids=end)
        assert result.token_ids == want, kind
    assert continue_draft(
        model, tokenizer, prompt, want, max_new_tokens=BUDGET, end_ids=end
    ).kept_tokens == len(want)
