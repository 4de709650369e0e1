"""Draft checking is lossless and batching changes nothing: tiny random Qwen2 models in float32.

Every check compares with ``model.generate``'s own greedy output, token for token.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

from spec_tool_node.chat_models.speculative import (
    NotGreedyError,
    continue_draft,
    cut_at_end,
    generate_batch,
)
from tests.conftest import CORPUS, make_tokenizer

BUDGET = 24
PROMPTS = [
    "<|im_start|>user\nWhat's the weather in Paris in celsius?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nCurrent time<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou can call the following tools.<|im_end|>\n<|im_start|>user\n"
    "get_time zone<|im_end|>\n<|im_start|>assistant\n",
]


def qwen2(tokenizer, seed: int = 0, hidden: int = 64) -> Qwen2ForCausalLM:
    """A tiny random Qwen2 with peaked logits (large init), so greedy choices are far from ties."""
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config).float().eval()


@pytest.fixture(scope="module")
def pair():
    tokenizer = make_tokenizer()
    return qwen2(tokenizer), tokenizer


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def greedy(model, tokenizer, prompt: list[int], budget: int = BUDGET, end=None) -> list[int]:
    """The reference: ``generate``'s greedy output, up to and including the first end token."""
    end = end or [tokenizer.eos_token_id]
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=budget,
        do_sample=False,
        eos_token_id=end,
        pad_token_id=tokenizer.pad_token_id,
    )
    return cut_at_end(out[0, len(prompt) :].tolist(), end)


def check(model, tokenizer, prompt, draft, budget=BUDGET, cache=None, end=None, alternatives=()):
    end = end or [tokenizer.eos_token_id]
    result = continue_draft(
        model,
        tokenizer,
        prompt,
        draft,
        max_new_tokens=budget,
        end_ids=end,
        cache=cache,
        alternatives=alternatives,
    )
    assert result.token_ids == greedy(model, tokenizer, prompt, budget, end)
    return result


@pytest.mark.parametrize("prompt_text", PROMPTS)
def test_output_equals_greedy_for_every_kind_of_draft(pair, prompt_text):
    model, tokenizer = pair
    prompt = ids(tokenizer, prompt_text)
    want = greedy(model, tokenizer, prompt)
    assert len(want) == BUDGET  # a random model never ends: the budget ends it
    other = (want[0] + 1) % len(tokenizer)

    right = check(model, tokenizer, prompt, want)
    assert (right.kept_tokens, right.full_draft_kept, right.generated_tokens) == (BUDGET, True, 0)

    partly = check(model, tokenizer, prompt, [*want[:9], other, *want[10:]])
    assert partly.kept_tokens == 9 and not partly.full_draft_kept
    assert partly.generated_tokens == BUDGET - 9 and partly.decode_steps == BUDGET - 10

    wrong = check(model, tokenizer, prompt, [other, *want[:5]])
    assert wrong.kept_tokens == 0 and wrong.checked_tokens == 0  # wrong first: never read
    assert not wrong.full_draft_kept

    empty = check(model, tokenizer, prompt, [])
    assert (empty.draft_tokens, empty.kept_tokens, empty.full_draft_kept) == (0, 0, False)

    longer = check(model, tokenizer, prompt, [*want, *want], budget=BUDGET)
    assert (longer.draft_tokens, longer.checked_tokens, longer.kept_tokens) == (48, 24, 24)
    assert longer.full_draft_kept

    short = check(model, tokenizer, prompt, want[:7])  # a draft cut short: the model goes on
    assert short.kept_tokens == 7 and not short.full_draft_kept


def test_other_forms_of_the_draft_are_followed_where_the_model_goes(pair):
    """Alternatives: the same draft in other surface forms. The check follows whichever form
    agrees with the model's greedy choice, switching forms mid-draft on the same cache, and the
    output stays the greedy output whatever the forms say."""
    model, tokenizer = pair
    prompt = ids(tokenizer, PROMPTS[0])
    want = greedy(model, tokenizer, prompt)
    vocab = len(tokenizer)

    def off(token: int) -> int:
        return (token + 1) % vocab

    wrong_start = [off(want[0]), *want[1:]]
    first_right = check(model, tokenizer, prompt, wrong_start, alternatives=[want])
    assert first_right.kept_tokens == BUDGET and first_right.full_draft_kept
    assert first_right.forward_tokens == len(prompt) + BUDGET  # the wrong form is never read

    # form 1 is right up to token 6, form 2 from there on: the output follows both
    early = [*want[:6], off(want[6]), *want[7:]]
    late = [*want[:3], off(want[3]), *want[4:]]
    switched = check(model, tokenizer, prompt, late, alternatives=[early, want])
    assert switched.kept_tokens == BUDGET and switched.full_draft_kept
    assert switched.checked_tokens == BUDGET + (BUDGET - 3) + (BUDGET - 6)

    # forms that are all wrong somewhere: kept as far as the best one agrees, then generated
    partial = check(model, tokenizer, prompt, late, alternatives=[early, [off(want[0])]])
    assert partial.kept_tokens == 6 and not partial.full_draft_kept

    # text forms are tokenised like a text draft; an empty primary draft still has its forms
    as_text = check(model, tokenizer, prompt, [], alternatives=[tokenizer.decode(want)])
    assert as_text.draft_tokens == 0 and as_text.kept_tokens > 0


def test_draft_with_an_end_token_is_cut_there_and_kept_whole(pair):
    """With an end token the model writes, a right draft (end token included) is the whole output
    with no token generated; without its end token the model adds only that; draft tokens after
    an end token are never checked. (A random model never writes its eos, so one of the tokens it
    does write is declared the end token.)"""
    model, tokenizer = pair
    prompt = ids(tokenizer, PROMPTS[0])
    free = greedy(model, tokenizer, prompt)
    j = next(j for j in range(8, BUDGET) if free[j] not in free[:j])
    end = [free[j]]
    want = free[: j + 1]
    assert greedy(model, tokenizer, prompt, end=end) == want

    whole = check(model, tokenizer, prompt, want, end=end)
    assert whole.full_draft_kept and whole.generated_tokens == 0 and whole.decode_steps == 0
    open_ended = check(model, tokenizer, prompt, want[:-1], end=end)
    assert open_ended.full_draft_kept and open_ended.generated_tokens == 1
    trailing = check(model, tokenizer, prompt, free, end=end)
    assert trailing.checked_tokens == len(want) and trailing.full_draft_kept
    swapped = [*want[:5], (want[5] + 1) % len(tokenizer), *want[6:]]
    fixed = check(model, tokenizer, prompt, swapped, end=end)
    assert fixed.kept_tokens == 5 and not fixed.full_draft_kept


def test_draft_text_from_a_model_with_another_tokenizer(pair):
    """The draft comes as text from a model with its own (different) vocabulary: it is
    re-tokenised with the strong model's tokenizer, special tokens included."""
    model, tokenizer = pair
    other_tokenizer = make_tokenizer(vocab_size=300)  # fewer merges: other tokens and ids
    assert other_tokenizer.get_vocab() != tokenizer.get_vocab()
    drafter = qwen2(other_tokenizer, seed=3, hidden=32)
    for text in PROMPTS:
        draft_ids = greedy(drafter, other_tokenizer, ids(other_tokenizer, text))
        draft_text = other_tokenizer.decode(draft_ids)
        result = check(model, tokenizer, ids(tokenizer, text), draft_text)
        assert result.draft_tokens == len(ids(tokenizer, draft_text))
    # the strong model's own output as text: re-tokenised, it is kept whole
    prompt = ids(tokenizer, PROMPTS[1])
    own = tokenizer.decode(greedy(model, tokenizer, prompt))
    assert check(model, tokenizer, prompt, own).kept_tokens > 0


def test_a_cache_over_the_conversation_prefix_is_reused(pair):
    """An agent's next prompt extends its last one: a cache over that prefix is read, not the
    tokens again, and the output is unchanged."""
    model, tokenizer = pair
    prompt = ids(tokenizer, PROMPTS[2])
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=torch.tensor([prompt[:10]]), cache=cache, use_cache=True)
    want = greedy(model, tokenizer, prompt)
    result = check(
        model, tokenizer, prompt, [*want[:4], (want[4] + 1) % len(tokenizer)], cache=cache
    )
    assert result.forward_tokens == len(prompt) - 10 + 5
    assert result.cache.get_seq_length() == len(prompt) + len(result.token_ids) - 1
    with pytest.raises(ValueError, match="covers"):
        continue_draft(
            model, tokenizer, prompt[:5], want, max_new_tokens=4, end_ids=[0], cache=result.cache
        )


@pytest.mark.parametrize("kept", [0, 5, BUDGET])
def test_a_prompt_read_ahead_gives_the_first_token_and_nothing_is_read_again(pair, kept):
    """A pass over the whole prompt made ahead (``HFChatModel.prefill``) leaves its cache and
    its greedy token: the check starts from that token, reads only the draft, and its output is
    still the greedy one, for a draft wrong at once, partly right or right."""
    model, tokenizer = pair
    prompt = ids(tokenizer, PROMPTS[1])
    want = greedy(model, tokenizer, prompt)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True).logits
    first = int(logits[0, -1].argmax())
    draft = [*want[:kept], (want[kept] + 1) % len(tokenizer)] if kept < BUDGET else want
    result = continue_draft(model, tokenizer, prompt, draft, max_new_tokens=BUDGET,
                            end_ids=[tokenizer.eos_token_id], cache=cache, first=first)  # fmt: skip
    assert result.token_ids == want and result.kept_tokens == kept
    assert result.forward_tokens == result.checked_tokens  # no prompt token read again
    options = {"max_new_tokens": 4, "end_ids": [0]}
    with pytest.raises(ValueError, match="first needs a cache over all"):
        continue_draft(model, tokenizer, prompt, want, first=first, **options)
    with pytest.raises(ValueError, match="covers"):
        covering = DynamicCache(config=model.config)
        with torch.inference_mode():
            model(input_ids=torch.tensor([prompt]), cache=covering, use_cache=True)
        continue_draft(model, tokenizer, prompt, want, cache=covering, **options)


def test_a_checkpoint_that_alters_greedy_choices_is_refused(pair):
    _, tokenizer = pair
    model = qwen2(tokenizer)
    model.generation_config.repetition_penalty = 1.1
    with pytest.raises(NotGreedyError, match=r"repetition_penalty=1\.1"):
        continue_draft(model, tokenizer, [1, 2, 3], [4], max_new_tokens=4, end_ids=[2])


def test_left_padded_batch_equals_one_prompt_at_a_time(pair):
    model, tokenizer = pair
    prompts = [ids(tokenizer, p) for p in PROMPTS] + [ids(tokenizer, CORPUS[1])]
    assert len({len(p) for p in prompts}) == len(prompts)  # padding is really exercised
    end = [tokenizer.eos_token_id]
    out, length = generate_batch(model, tokenizer, prompts, max_new_tokens=BUDGET, end_ids=end)
    rows = [cut_at_end(out.sequences[i, length:].tolist(), end) for i in range(len(prompts))]
    assert rows == [greedy(model, tokenizer, p) for p in prompts]


def test_chat_model_continue_draft_replies_as_invoke_does():
    """HFChatModel.continue_draft: the same reply as a greedy invoke, for a local model's draft
    (its raw text and end token), an API model's draft (a parsed call, rendered with the template)
    and a wrong text; the ledger fields count what the model read and what it wrote."""
    from langchain_core.messages import AIMessage, HumanMessage

    from spec_tool_node.chat_models.hf import HFChatModel
    from tests.conftest import CORPUS, teach

    tokenizer = make_tokenizer()
    model = qwen2(tokenizer, seed=2)
    chat = HFChatModel(model="tiny", loaded=(model, tokenizer), max_new_tokens=64, prefix_cache=0)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages = [HumanMessage("What's the weather in Paris in celsius?")]
    teach(model, tokenizer, chat._prompt(messages, tools, None), CORPUS[0], steps=60)
    bound = chat.bind_tools(tools)
    want = bound.invoke(messages)
    assert want.tool_calls and want.response_metadata["end_text"] == "<|im_end|>"

    api_draft = AIMessage(
        "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "1"}]
    )
    for draft in (want, api_draft, '<tool_call>\n{"name": "get_time"', ""):
        got = chat.continue_draft(messages, draft, tools)
        assert got.response_metadata["raw_text"] == want.response_metadata["raw_text"]
        assert got.content == want.content
        assert [(c["name"], c["args"]) for c in got.tool_calls] == [
            (c["name"], c["args"]) for c in want.tool_calls
        ]
    whole = chat.continue_draft(messages, want, tools)
    info = whole.response_metadata["lossless"]
    assert info["full_draft_kept"] and info["generated_tokens"] == 0
    assert info["kept_tokens"] == want.usage_metadata["output_tokens"]
    assert whole.usage_metadata["output_tokens"] == 0
    assert (
        whole.usage_metadata["input_tokens"]
        == want.usage_metadata["input_tokens"] + info["checked_tokens"]
    )


def test_prefill_reads_the_prompt_ahead_and_the_reply_is_unchanged():
    """HFChatModel.prefill: the prompt is read once, ahead; continue_draft then reads none of it
    again (it starts from the token the prefill chose), a greedy invoke only its last token, and
    both reply exactly as without it."""
    from langchain_core.messages import AIMessage, HumanMessage

    from spec_tool_node.chat_models.hf import HFChatModel

    tokenizer = make_tokenizer()
    model = qwen2(tokenizer, seed=3)
    chat = HFChatModel(model="tiny", loaded=(model, tokenizer), max_new_tokens=24)
    plain = HFChatModel(model="tiny", loaded=(model, tokenizer), max_new_tokens=24, prefix_cache=0)
    messages = [HumanMessage("What's the weather in Paris in celsius? " * 3)]
    prompt_len = len(
        tokenizer(chat._prompt(messages, None, None), add_special_tokens=False).input_ids
    )
    want = plain.invoke(messages)
    draft = AIMessage("The weather in Paris")

    assert plain.prefill(messages) == 0  # no prefix cache: nothing to keep
    assert chat.prefill(messages) == prompt_len
    assert chat.prefill(messages) == 1  # cached already: only the last token is read again
    chat.clear_prefix_cache()
    assert chat.prefill(messages) == prompt_len  # forgotten: the whole prompt again
    got = chat.continue_draft(messages, draft)
    assert got.usage_metadata["input_token_details"]["cache_read"] == prompt_len
    assert got.response_metadata["raw_text"] == want.response_metadata["raw_text"]
    assert (
        got.response_metadata["raw_text"]
        == (plain.continue_draft(messages, draft).response_metadata["raw_text"])
    )

    chat.prefill(messages)
    again = chat.invoke(messages)
    assert again.usage_metadata["input_token_details"]["cache_read"] == prompt_len - 1
    assert again.response_metadata["raw_text"] == want.response_metadata["raw_text"]
