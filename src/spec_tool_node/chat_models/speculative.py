"""Lossless speculative decoding over whole actions, and batched greedy generation.

:func:`continue_draft` gives a strong model's greedy output for a prompt while generating only what
a draft (another model's reply) got wrong: one forward pass teacher-forces the draft after the
prompt, the longest prefix that agrees with the model's own argmax is kept, the model's own token
replaces the first disagreeing one, and greedy generation continues from there on the key/value
cache of that same pass. Greedy decoding is deterministic, so the result is the model's greedy
output token for token (up to floating-point near-ties: a pass over many tokens at once sums in
another order than one token at a time, so in bf16 two nearly equal logits can swap).

:func:`generate_batch` decodes several prompts in one left-padded ``generate`` call, each row with
its own attention mask, so each row gets what decoding it alone gives (up to the same near-ties).

Both work on a plain ``(model, tokenizer)`` pair of any transformers causal LM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from inspect import signature
from typing import Any

import torch

_GREEDY = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
"""Plain greedy decoding, whatever the checkpoint's generation config says about sampling."""

_NEUTRAL = {
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "exponential_decay_length_penalty": (None,),
}
"""Generation settings that change greedy choices (and the values that leave them alone): a
checkpoint that sets one would make the teacher-forced argmax differ from ``generate``'s choice."""


class NotGreedyError(ValueError):
    """The model's generation config changes greedy choices, so a draft check is not lossless."""


@dataclass
class Continuation:
    """The strong model's greedy output for a prompt, produced by checking a draft first."""

    token_ids: list[int]
    """The output: the greedy output token for token, up to and including the first end token
    (or ``max_new_tokens`` tokens)."""
    draft_tokens: int
    """Tokens in the draft as given (after re-tokenising draft text)."""
    checked_tokens: int
    """Draft tokens teacher-forced: the draft cut at its first end token and at the budget."""
    kept_tokens: int
    """Leading draft tokens the model agreed with (these are the first tokens of the output)."""
    full_draft_kept: bool
    """Every draft token was kept and the draft was the complete output: it ended with an end
    token, or the model's next greedy token is one, or the draft filled the budget."""
    forward_tokens: int
    """Tokens that went through the model in the check pass (the uncached prompt plus the draft):
    what the strong model read, for pricing."""
    cache: Any = None
    """The key/value cache over the prompt plus the output (less its last token), for reuse."""

    @property
    def generated_tokens(self) -> int:
        """Output tokens that did not come from the draft: what the model had to write itself.

        The first of them (the token replacing the first disagreeing draft token, or the end
        token after a fully kept draft) comes from the check pass; each further one took a
        decoding step.
        """
        return len(self.token_ids) - self.kept_tokens

    @property
    def decode_steps(self) -> int:
        """Forward passes after the check pass (one per generated token beyond the first)."""
        return max(self.generated_tokens - 1, 0)


def check_greedy_config(model: Any) -> None:
    """Fail when the model's generation config alters greedy choices (see :data:`_NEUTRAL`).

    Raises:
        NotGreedyError: naming the setting, so it can be neutralised in the generation config.
    """
    config = model.generation_config
    for name, neutral in _NEUTRAL.items():
        value = getattr(config, name, None)
        if value not in neutral:
            raise NotGreedyError(
                f"the model's generation config sets {name}={value!r}, which changes greedy "
                "choices; checking a draft by its argmax would then not reproduce generate()'s "
                f"output. Set generation_config.{name} to {neutral[-1]!r} to use draft checking"
            )


def usable_draft(
    draft_ids: Sequence[int], max_new_tokens: int, end_ids: Sequence[int]
) -> list[int]:
    """The part of a draft that can be output: up to its first end token, within the budget."""
    return cut_at_end(list(draft_ids)[:max_new_tokens], end_ids)


def _greedy_kwargs(model: Any, tokenizer: Any, end_ids: Sequence[int]) -> dict[str, Any]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    return {**_GREEDY, "eos_token_id": list(end_ids), "pad_token_id": pad}


def last_logits(model: Any) -> dict[str, Any]:
    """Forward options that compute the logits of the last position only, as ``generate`` does
    for a prompt (the output layer over a whole prompt is a sizeable part of reading it)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in signature(model.forward).parameters else {}


def continue_draft(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    draft: Sequence[int] | str,
    *,
    max_new_tokens: int,
    end_ids: Sequence[int],
    cache: Any = None,
    first: int | None = None,
    alternatives: Sequence[Sequence[int] | str] = (),
) -> Continuation:
    """The model's greedy output after ``prompt_ids``, generating only where ``draft`` is wrong.

    ``alternatives`` are other surface forms of the same draft (the same tool call as a fenced
    block, as bare JSON, in the template's tags): two models that agree on an action often write
    it differently, and a draft in the wrong form would be rejected at its first token. The check
    follows the model's own greedy choice through the forms: a pass over the prompt alone gives
    the first token, which picks the form to read next; wherever the form being followed
    disagrees, another form whose tokens so far are the output and whose next token is the
    model's choice takes over, on the same cache (one more pass over its remaining tokens). Only
    tokens equal to the model's greedy choice are ever kept, so the output is its greedy output
    whatever the forms say.

    Args:
        model, tokenizer: a transformers causal LM and its tokenizer.
        prompt_ids: the rendered prompt's token ids.
        draft: the draft's token ids in this tokenizer, or its text (another tokenizer's draft:
            it is re-tokenised here; keep special tokens such as the end token in the text).
        max_new_tokens: the output budget, as in ``generate``.
        end_ids: tokens that end the output (it includes the first one it writes).
        cache: a key/value cache over a proper prefix of ``prompt_ids`` (a conversation's earlier
            turns), or over all of it with ``first``; only the tokens after it are read. It is
            extended in place.
        first: the model's greedy token after the whole prompt, from the pass that filled
            ``cache`` (a prompt read ahead): the check starts from it instead of reading the
            prompt's last token again, which in bf16 may break a near-tie the other way.
        alternatives: other forms of the draft, ids or text like ``draft``, in order of
            preference.

    Raises:
        NotGreedyError: the model's generation config alters greedy choices.
        ValueError: ``cache`` covers the whole prompt without ``first``, or ``first`` comes
            without a cache over exactly the prompt.
    """
    check_greedy_config(model)
    draft_ids = _token_ids(tokenizer, draft)
    forms = [
        usable_draft(_token_ids(tokenizer, f), max_new_tokens, end_ids)
        for f in (draft_ids, *alternatives)
    ]
    prompt = list(prompt_ids)
    cached = cache.get_seq_length() if cache is not None else 0
    if first is not None and cached != len(prompt):
        raise ValueError(f"first needs a cache over all {len(prompt)} prompt tokens, not {cached}")
    if first is None and cached >= len(prompt):
        raise ValueError(f"the cache covers {cached} tokens; the prompt has only {len(prompt)}")

    from transformers import DynamicCache

    cache = cache if cache is not None else DynamicCache(config=model.config)
    # the prompt alone first: its greedy token picks the form, and a draft wrong from its first
    # token (a long answer in other words) is never read
    choice = first
    if choice is None:
        with torch.inference_mode():
            ids = torch.tensor([prompt[cached:]], device=model.device)
            logits = model(input_ids=ids, cache=cache, use_cache=True, **last_logits(model)).logits
            choice = int(logits[0, -1].argmax())
    output: list[int] = []
    following: list[int] = []
    checked = 0
    while True:
        # choice: the model's greedy token after prompt + output
        form = next(
            (
                f
                for f in forms
                if len(f) > len(output) and f[: len(output)] == output and f[len(output)] == choice
            ),
            None,
        )
        if form is None:
            break
        following, segment = form, form[len(output) :]
        with torch.inference_mode():
            ids = torch.tensor([segment], device=model.device)
            logits = model(input_ids=ids, cache=cache, use_cache=True).logits[0]
        # greedy[i]: the model's choice for segment[i]; the last one is the token after it
        greedy = [choice, *logits.argmax(-1).tolist()]
        agreed = next((i for i, t in enumerate(segment) if greedy[i] != t), len(segment))
        output += segment[:agreed]
        checked += len(segment)
        choice = greedy[agreed]
        if dropped := len(segment) - agreed:
            cache.crop(-dropped)  # the rejected draft tokens
        if output[-1] in end_ids or len(output) == max_new_tokens:
            break
    kept = len(output)
    done = bool(output) and (output[-1] in end_ids or kept == max_new_tokens)
    full = done and output == following
    if done:  # the output came whole from the forms; the cache holds all of it
        cache.crop(-1)
    else:
        output.append(choice)  # the model's own token: after the draft, or instead of it
        full = bool(following) and output[:-1] == following and choice in end_ids
        if not (output[-1] in end_ids or len(output) == max_new_tokens):
            rest, cache = _generate(
                model, tokenizer, prompt + output, cache, max_new_tokens - len(output), end_ids
            )
            output += rest
    forward = len(prompt) - cached + checked
    return Continuation(output, len(draft_ids), checked, kept, full, forward, cache)


def _token_ids(tokenizer: Any, draft: Sequence[int] | str) -> list[int]:
    """A draft's ids in ``tokenizer``: text is tokenised (special tokens in it included)."""
    if isinstance(draft, str):
        return tokenizer(draft, add_special_tokens=False).input_ids if draft else []
    return list(draft)


def _generate(
    model: Any,
    tokenizer: Any,
    ids: list[int],
    cache: Any,
    max_new_tokens: int,
    end_ids: Sequence[int],
) -> tuple[list[int], Any]:
    """Greedy ``generate`` after ``ids``, reading only the tokens ``cache`` does not cover."""
    kwargs = _greedy_kwargs(model, tokenizer, end_ids)
    if cache is not None:
        kwargs["cache"] = cache
    inputs = torch.tensor([ids], device=model.device)
    with torch.inference_mode():
        out = model.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            **kwargs,
        )
    return cut_at_end(out.sequences[0, len(ids) :].tolist(), end_ids), out.cache


def generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    end_ids: Sequence[int],
    **generate_kwargs: Any,
) -> tuple[Any, int]:
    """Decode several prompts in one left-padded ``generate`` call.

    Left padding puts every prompt's last token in the last column, where generation continues;
    the attention mask hides the padding and ``generate`` derives positions from it, so each row
    decodes as it would alone. Greedy unless ``generate_kwargs`` say otherwise.

    Returns:
        ``generate``'s output (``return_dict_in_generate``) and the padded prompt length: row
        ``i``'s new tokens are ``out.sequences[i, length:]`` (cut them with :func:`cut_at_end`).
    """
    enc = tokenizer.pad(
        {"input_ids": [list(p) for p in prompts]},
        padding=True,
        padding_side="left",
        return_tensors="pt",
    ).to(model.device)
    kwargs = {**_greedy_kwargs(model, tokenizer, end_ids), **generate_kwargs}
    with torch.inference_mode():
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, return_dict_in_generate=True, **kwargs
        )
    return out, enc["input_ids"].shape[1]


def cut_at_end(tokens: Sequence[int], end_ids: Sequence[int]) -> list[int]:
    """``tokens`` up to and including the first end token (batch rows are padded after it)."""
    tokens = list(tokens)
    end = next((i for i, t in enumerate(tokens) if t in end_ids), None)
    return tokens if end is None else tokens[: end + 1]


def float32_logits(model: Any) -> None:
    """Compute ``model``'s logits in float32 from here on (its body keeps its dtype).

    In bfloat16 the logits themselves are rounded to 8 significant bits: around a logit of 19
    neighbouring values are 0.125 apart, so two candidate tokens often tie exactly, and which
    one wins then depends on rounding noise that differs between a pass over the prompt alone
    and a pass over prompt plus draft. Greedy choices made on float32 logits are separated by
    their real margin. The output layer gets its own float32 weight (untied from the input
    embedding where the two were shared) and casts its input up.
    """
    import torch

    head = model.get_output_embeddings()
    if head.weight.dtype == torch.float32:
        return
    head.weight = torch.nn.Parameter(head.weight.detach().float().clone(), requires_grad=False)
    if getattr(head, "bias", None) is not None:
        head.bias = torch.nn.Parameter(head.bias.detach().float().clone(), requires_grad=False)
    head.register_forward_pre_hook(lambda _module, args: (args[0].float(), *args[1:]))
