"""Draft checking on a real packaged model: SmolLM2-135M-Instruct in float32 (what CI has).

Slow: about four minutes on the shared 2-core machine it was written on.
"""

from __future__ import annotations

import pytest
import torch
from langchain_core.messages import HumanMessage

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.chat_models.parsing import call_forms
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


@pytest.mark.slow
@pytest.mark.packaged
def test_a_right_call_in_another_form_is_kept_whole_by_qwen_1_5b():
    """The 0.5B writes the travel desk's calls as one line of bare JSON, the 1.5B (with a longer
    system prompt) as a fenced, indented block: the same action. A draft in a form the 1.5B does
    not write here is checked in every form: the whole draft is kept and the reply is its own
    greedy reply."""
    from langchain_core.messages import SystemMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str, unit: str = "celsius") -> str:
        """Get the current weather in a city.

        Args:
            city: the city name, e.g. Paris
            unit: "celsius" or "fahrenheit"
        """
        return f"{city}: 21 degrees {unit}"

    strong = HFChatModel(model="qwen2.5-coder-1.5b-instruct", max_new_tokens=64, prefix_cache=0)
    messages = [
        SystemMessage("You are a travel assistant. Call a tool when it helps."),
        HumanMessage("What's the weather in Paris in celsius?"),
    ]
    want = strong.bind_tools([get_weather]).invoke(messages)
    assert want.tool_calls, want
    call = want.tool_calls[0]
    own = want.response_metadata["raw_text"]
    other = next(form for form in call_forms([call]) if form != own)  # really another form
    got = strong.continue_draft(messages, other + "<|im_end|>", [get_weather])
    assert got.response_metadata["raw_text"] == want.response_metadata["raw_text"]
    assert got.response_metadata["lossless"]["full_draft_kept"]
    assert got.response_metadata["lossless"]["generated_tokens"] == 0
