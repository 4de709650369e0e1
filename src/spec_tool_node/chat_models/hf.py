"""A local transformers chat model that really calls tools.

``HFChatModel(model=NAME, adapter=PATH)`` loads a hub id, a local folder or an offline asset
(:mod:`spec_tool_node.assets`), with an optional peft adapter, and behaves like any LangChain chat
model: ``bind_tools`` passes the tools to the chat template, replies are parsed into
``AIMessage.tool_calls``, usage and model name are set so LangChain's usage callbacks count them.

It also exposes what the cascade needs from a local model and an API model cannot give: per-token
log-probs and the last hidden state of a generated action, and
:meth:`HFChatModel.score_continuation`, which teacher-forces a given continuation in one
forward pass.

Prompt rendering (with the fallback for templates without tool support) lives in
:mod:`spec_tool_node.chat_models.templates`, weight loading in
:mod:`spec_tool_node.chat_models.loading`; both are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from spec_tool_node.chat_models.loading import load_pretrained
from spec_tool_node.chat_models.parsing import call_forms, parse_reply
from spec_tool_node.chat_models.speculative import (
    Continuation,
    continue_draft,
    float32_logits,
    generate_batch,
    last_logits,
)
from spec_tool_node.chat_models.templates import (
    FALLBACK_TOOL_PROMPT,
    TOOL_CHOICE_HINT,
    ReplyRenderError,
    parse_model_reply,
    render_prompt,
    render_reply,
    template_supports_tools,
    to_chat_dicts,
)
from spec_tool_node.chat_models.watch import DraftWatch

__all__ = [
    "FALLBACK_TOOL_PROMPT",
    "TOOL_CHOICE_HINT",
    "ContinuationScore",
    "HFChatModel",
    "ReplyRenderError",
    "load_pretrained",
    "parse_model_reply",
    "render_prompt",
    "render_reply",
    "template_supports_tools",
    "to_chat_dicts",
]

_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<|end_of_text|>")
_PASSED_BY_LANGCHAIN = {
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "ls_structured_output_format",
}
"""Call options LangChain or create_agent may pass: accepted (several calls per reply are always
allowed, structured output is parsed by the caller)."""
_WATCH = "draft_watch"
"""Call option: a :class:`DraftWatch` this reply is offered to as it is written (mode F's
check reads along and may stop it). Passed per call, never bound."""
_CALL_OPENERS = frozenset("{[`<")
"""First characters of every written form of a tool call (:func:`call_forms`); the chat
template's own form adds its first character (see ``HFChatModel._unlike_a_call``)."""
_WATCH_CHUNK = 8
"""Draft tokens the reader gathers before it reads them: one pass over a few tokens costs the
strong model about what one decoding step does, so reading each token as it comes would cost a
step per draft token."""
_MIN_PREFIX = 16
"""Shorter shared prefixes are not worth copying a cache for."""
_GEN_OPTIONS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "n",
    "return_logprobs",
    "hidden_layers",
)


def drafting_states(
    steps: Sequence[Sequence[Any]], row: int, length: int, opts: dict[str, Any]
) -> dict[str, list[float]]:
    """Per layer of ``opts["hidden_layers"]``, the mean hidden state over the positions that
    wrote row ``row``'s ``length`` reply tokens: step 0's last position (the prompt's last token),
    then the one new position of each later step (``generate``'s ``hidden_states`` layout)."""
    out: dict[str, list[float]] = {}
    for layer in opts["hidden_layers"]:
        states = torch.stack([steps[s][layer][row, -1].float() for s in range(length)])
        out[str(layer)] = states.mean(0).tolist()
    return out


def _offering(watch: DraftWatch, tokenizer: Any, start: int) -> Any:
    """Stopping criteria for ``generate`` that offer the reply (the tokens from column
    ``start``) to ``watch`` after each step and stop when its reader says so."""
    from transformers import StoppingCriteriaList

    def offer(input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        text = tokenizer.decode(input_ids[0, start:], skip_special_tokens=False)
        stop = watch.offer(text)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([offer])


def _key(opts: dict[str, Any], stop: list[str] | None) -> str:
    """The options a precomputed reply was generated with, as a lookup key."""
    return json.dumps([sorted(opts.items()), stop], default=str)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _most_covered(prefixes: list[list[int]]) -> int:
    """Which kept prefix to drop: the one (never the newest, last) with the fewest tokens that no
    other kept prefix also starts with; the oldest of equals.

    An agent's next prompt rarely extends its last reply token for token (the template renders a
    tool call its own way), so each decision of a conversation keeps a new prefix that shares all
    but its last reply with the one before. Dropping the oldest would let one long conversation
    push every other one out (a new conversation with the same tools would then read its whole
    prompt again); dropping the most covered keeps the newest state of each conversation.
    """

    def own(i: int) -> int:
        return len(prefixes[i]) - max(
            _common_prefix(prefixes[i], other) for j, other in enumerate(prefixes) if j != i
        )

    return min(range(len(prefixes) - 1), key=own)


@dataclass
class ContinuationScore:
    """How a model scores a given continuation under teacher forcing (one forward pass)."""

    token_ids: list[int]
    logprobs: list[float]
    """Log-prob of each continuation token given everything before it."""
    greedy_ids: list[int]
    """The model's own argmax at each continuation position."""
    agreed: int
    """Number of leading continuation tokens that equal the model's greedy choice."""
    next_greedy_id: int
    """The model's greedy token after the whole continuation."""

    @property
    def fully_agreed(self) -> bool:
        return self.agreed == len(self.token_ids)

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0


class HFChatModel(BaseChatModel):
    """A local transformers (+ peft) chat model with real tool calling.

    Args:
        model: an offline asset name (see ``spec_tool_node.assets.ASSETS``), a local folder or a
            hub id, as ``ChatOpenAI(model=...)`` takes a model name.
        adapter: optional peft adapter folder, merged into the weights at load.
        max_new_tokens: generation budget per reply.
        do_sample: sample instead of greedy decoding.
        temperature, top_p: sampling parameters (used only when ``do_sample``).
        n: number of replies per call (needs ``do_sample``); ``generate`` returns all of them.
        return_logprobs: put per-token log-probs in ``response_metadata["logprobs"]`` in OpenAI's
            shape (``{"content": [{"token", "logprob"}]}``) plus their mean.
        hidden_layers: for each of these layers (``output_hidden_states`` order: 0 is the
            embeddings), the mean of the hidden states that wrote the reply (the prompt's last
            position and every reply token but the last, each of which predicted the next reply
            token) in ``response_metadata["hidden_states"]`` as ``{layer: [floats]}``. A probe
            head trained on the same pooling (``drafting``) scores the draft from it with no
            forward pass of its own: mode G. Not with ``assistant`` (assisted decoding is
            skipped when it is asked).
        dtype: torch dtype name used to load the weights.
        device: torch device; defaults to CUDA when available, else CPU.
        prefix_cache: how many conversation prefixes' key/value caches to keep. An agent's next
            prompt extends its last one (reply and tool result appended), so a single-reply call
            prefills only the tokens after the longest cached prefix; ``0`` turns it off. The
            reused count is in ``usage_metadata["input_token_details"]["cache_read"]``. When
            full, the prefix that the others cover most is dropped (an older state of a
            conversation kept anew), so the latest state of each recent conversation stays.
        batch_size: prompts per left-padded ``generate`` in :meth:`batch`, :meth:`abatch` and
            :meth:`generate_many` (``1`` decodes one prompt at a time).
        assistant: a smaller local ``HFChatModel`` that drafts a few tokens ahead for each of
            this model's greedy replies (transformers' assisted generation: the output is this
            model's own, token for token; another tokenizer is handled by re-tokenising). Used
            for single greedy replies, not in batches, and without the prefix cache.
        float32_logits: compute the logits in float32 (the rest of the model keeps ``dtype``).
            bfloat16 logits are so coarse that greedy choices often tie; with ties, a draft
            checked in one pass (:meth:`continue_draft`) can pick another token than generation
            one token at a time would. Costs one float32 copy of the output layer.
        loaded: an already-loaded ``(model, tokenizer)`` pair used instead of loading ``model``.

    Every option except the loading ones can be overridden per call (``model.invoke(m, n=3,
    do_sample=True)``) or bound (``model.bind(return_logprobs=True)``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    offers_drafts: ClassVar[bool] = True
    """Takes a ``draft_watch`` call option (a :class:`DraftWatch`): offers its reply as it
    writes it and stops when the watch's reader says so (mode F's read-along)."""

    model: str = Field(description="Asset name, local folder or hub id.")
    adapter: str | None = None
    max_new_tokens: int = Field(default=256, gt=0)
    do_sample: bool = False
    temperature: float = Field(default=0.7, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    return_logprobs: bool = False
    hidden_layers: tuple[int, ...] = ()
    dtype: str = "bfloat16"
    device: str | None = None
    prefix_cache: int = Field(default=4, ge=0)
    float32_logits: bool = False
    batch_size: int = Field(default=8, ge=1)
    assistant: Any = Field(default=None, exclude=True, repr=False)
    """A smaller local model (an ``HFChatModel``) that drafts tokens for this one's greedy
    generation: transformers' assisted generation, lossless at the token level."""

    loaded: tuple[Any, Any] | None = Field(default=None, exclude=True, repr=False)
    """An already-loaded ``(model, tokenizer)`` pair; skips loading (tests, custom loading)."""

    _hf_model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _ready: dict[tuple[str, str], list[ChatResult]] = PrivateAttr(default_factory=dict)
    """Replies a batch call computed, by prompt and options, for its invokes to pick up."""
    _end_token_ids: list[int] = PrivateAttr(default_factory=list)
    _prefixes: list[tuple[list[int], Any, int | None]] = PrivateAttr(default_factory=list)
    """(token ids, key/value cache over exactly those ids, this model's greedy token after them
    when a prompt pass computed it), most recent last."""

    def model_post_init(self, context: Any, /) -> None:
        if self.loaded is not None:
            self._hf_model, self._tokenizer = self.loaded
            if self._tokenizer.pad_token_id is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
        else:
            self._hf_model, self._tokenizer = load_pretrained(
                self.model, self.adapter, dtype=self.dtype, device=self.device
            )
        if self.float32_logits:
            float32_logits(self._hf_model)
        self._end_token_ids = self._end_ids()  # once: it scans the whole vocabulary

    @property
    def hf_model(self) -> Any:
        return self._hf_model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def _llm_type(self) -> str:
        return "hf-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, pydantic models, functions or OpenAI dicts).

        ``tool_choice``: ``None``/``"auto"`` lets the model decide; ``"none"`` hides the tools;
        ``"any"``/``"required"`` or a tool name add a system hint that a call is required (local
        generation is not constrained, so a reply may still be text; parse it as usual).
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    # -- generation ---------------------------------------------------------------------------

    def _options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = set(overrides) - set(_GEN_OPTIONS) - _PASSED_BY_LANGCHAIN - {_WATCH}
        if unknown:
            raise TypeError(f"HFChatModel got unknown generation options: {sorted(unknown)}")
        opts = {k: overrides.get(k, getattr(self, k)) for k in _GEN_OPTIONS}
        if opts["n"] > 1 and not opts["do_sample"]:
            raise ValueError("n > 1 needs do_sample=True (greedy decoding would repeat one reply)")
        return opts

    def _prompt(
        self,
        messages: Sequence[BaseMessage],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
    ) -> str:
        if tool_choice == "none":
            tools = None
        elif tools and tool_choice not in (None, "auto"):
            hint = (
                TOOL_CHOICE_HINT
                if tool_choice in ("any", "required")
                else f"{TOOL_CHOICE_HINT} Call {tool_choice}."
            )
            messages = [SystemMessage(hint), *messages]
        return render_prompt(self._tokenizer, messages, tools)

    def _end_ids(self) -> list[int]:
        ids = {self._tokenizer.eos_token_id}
        configured = self._hf_model.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured])
        vocab = self._tokenizer.get_vocab()
        ids.update(vocab[t] for t in _END_TOKENS if t in vocab)
        return sorted(i for i in ids if i is not None)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        opts = self._options(kwargs)
        tools = kwargs.get("tools")
        prompt = self._prompt(messages, tools, kwargs.get("tool_choice"))
        with self._lock:
            ready = self._ready.get((prompt, _key(opts, stop)))
            if ready:
                return ready.pop()
        tokenizer, model = self._tokenizer, self._hf_model
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        end_ids = self._end_token_ids
        gen_kwargs = self._gen_kwargs(opts, stop)
        assisted = (
            self.assistant is not None
            and opts["n"] == 1
            and not opts["do_sample"]
            and not opts["hidden_layers"]  # assisted steps write several tokens per step
        )
        if assisted:
            gen_kwargs["assistant_model"] = self.assistant.hf_model
            if self.assistant.tokenizer.get_vocab() != tokenizer.get_vocab():
                gen_kwargs.update(tokenizer=tokenizer, assistant_tokenizer=self.assistant.tokenizer)
        watch: DraftWatch | None = kwargs.get(_WATCH) if opts["n"] == 1 and not assisted else None
        if watch is not None:
            gen_kwargs["stopping_criteria"] = _offering(watch, tokenizer, enc["input_ids"].shape[1])
        single = opts["n"] == 1 and self.prefix_cache > 0 and not assisted
        with self._lock, torch.inference_mode():
            reused = self._reuse_prefix(enc["input_ids"][0].tolist(), gen_kwargs) if single else 0
            out = model.generate(**enc, **gen_kwargs)
            if single:
                self._remember_prefix(out)
        prompt_len = enc["input_ids"].shape[1]
        generations = [
            self._to_generation(out, row, prompt, prompt_len, reused, end_ids, stop, tools, opts)
            for row in range(out.sequences.shape[0])
        ]
        if watch is not None and watch.stopped:  # cut short by its reader: say so
            generations[0].generation_info["finish_reason"] = "stopped_early"
            generations[0].message.response_metadata["finish_reason"] = "stopped_early"
        usage = {
            "input_tokens": prompt_len,
            "output_tokens": sum(g.message.usage_metadata["output_tokens"] for g in generations),
            "cache_read": reused,
        }
        return ChatResult(
            generations=generations, llm_output={"model_name": self.model, "token_usage": usage}
        )

    def _gen_kwargs(self, opts: dict[str, Any], stop: list[str] | None) -> dict[str, Any]:
        """``generate`` options for one call: budget, decoding, end tokens, signals to return."""
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": opts["max_new_tokens"],
            "do_sample": opts["do_sample"],
            "num_return_sequences": opts["n"],
            "eos_token_id": self._end_token_ids,
            "pad_token_id": self._tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": opts["return_logprobs"],
            "output_hidden_states": bool(opts["hidden_layers"]),
        }
        if opts["do_sample"]:
            gen_kwargs.update(temperature=opts["temperature"], top_p=opts["top_p"], top_k=0)
        else:  # make greedy explicit whatever the checkpoint's generation_config says
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            gen_kwargs.update(stop_strings=stop, tokenizer=self._tokenizer)
        return gen_kwargs

    # -- batches ---------------------------------------------------------------------------------

    def invoke_many(
        self,
        conversations: Sequence[Sequence[BaseMessage]],
        tool_sets: Sequence[Sequence[Any] | None] | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """:meth:`generate_many`'s replies as the AIMessages ``invoke`` would return (no
        callbacks run: for LangChain's batch semantics use :meth:`batch`)."""
        results = self.generate_many(conversations, tool_sets, stop=stop, **kwargs)
        return [
            g.message.model_copy(
                update={"response_metadata": {**g.generation_info, **g.message.response_metadata}}
            )
            for g in (r.generations[0] for r in results)
        ]

    def generate_many(
        self,
        conversations: Sequence[Sequence[BaseMessage]],
        tool_sets: Sequence[Sequence[Any] | None] | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> list[ChatResult]:
        """Replies to several conversations, ``batch_size`` prompts per left-padded ``generate``.

        Each conversation may bind its own tools (``tool_sets[i]``, as ``bind_tools`` takes
        them); without ``tool_sets``, every conversation gets the ``tools`` option.
        Left padding puts every prompt's last token in the last column and the attention mask
        hides the padding, so each reply is what the prompt alone gets (greedy replies up to
        floating-point near-ties, see :mod:`spec_tool_node.chat_models.speculative`). A batch
        decodes until its longest reply ends, so prompts of similar length batch best. One
        reply per conversation (``n`` is 1); the prefix cache is not used.
        """
        opts = self._options({k: v for k, v in kwargs.items() if k != "tools"})
        if opts["n"] != 1:
            raise ValueError("generate_many writes one reply per conversation (n=1)")
        tool_lists = (
            list(tool_sets) if tool_sets is not None else [kwargs.get("tools")] * len(conversations)
        )
        formatted = [[convert_to_openai_tool(t) for t in ts] if ts else None for ts in tool_lists]
        prompts = [
            self._prompt(list(messages), ts, kwargs.get("tool_choice"))
            for messages, ts in zip(conversations, formatted, strict=True)
        ]
        results: list[ChatResult] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(range(start, min(start + self.batch_size, len(prompts))))
            results += self._generate_chunk(
                [prompts[i] for i in chunk], [formatted[i] for i in chunk], opts, stop
            )
        return results

    def _generate_chunk(
        self,
        prompts: list[str],
        tools: list[list[dict[str, Any]] | None],
        opts: dict[str, Any],
        stop: list[str] | None,
    ) -> list[ChatResult]:
        ids = [self._tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        given = ("max_new_tokens", "eos_token_id", "return_dict_in_generate")
        gen_kwargs = {k: v for k, v in self._gen_kwargs(opts, stop).items() if k not in given}
        with self._lock:
            out, width = generate_batch(
                self._hf_model,
                self._tokenizer,
                ids,
                max_new_tokens=opts["max_new_tokens"],
                end_ids=self._end_token_ids,
                **gen_kwargs,
            )
        results = []
        for row, (prompt, row_tools) in enumerate(zip(prompts, tools, strict=True)):
            generation = self._to_generation(
                out,
                row,
                prompt,
                len(ids[row]),
                0,
                self._end_token_ids,
                stop,
                row_tools,
                opts,
                start=width,
            )
            usage = {
                "input_tokens": len(ids[row]),
                "output_tokens": generation.message.usage_metadata["output_tokens"],
                "cache_read": 0,
            }
            results.append(
                ChatResult(
                    generations=[generation],
                    llm_output={"model_name": self.model, "token_usage": usage},
                )
            )
        return results

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: Any = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Reply to ``inputs`` in left-padded batches (see :meth:`generate_many`).

        The replies are computed first, then each input goes through ``invoke`` as usual and
        gets its precomputed reply, so callbacks, tracing and usage counting see one call per
        input exactly as before.
        """
        keys = self._precompute(inputs, kwargs)
        try:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        finally:
            self._forget(keys)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: Any = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """:meth:`batch` on the async path (the batches run in a worker thread)."""
        keys = await asyncio.to_thread(self._precompute, inputs, kwargs)
        try:
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        finally:
            self._forget(keys)

    def _precompute(
        self, inputs: list[LanguageModelInput], kwargs: dict[str, Any]
    ) -> list[tuple[str, str]]:
        """Generate the replies of a batch call and keep them for the invokes that follow;
        returns their keys."""
        calls = {k: v for k, v in kwargs.items() if k != "stop"}
        opts = self._options(calls)
        if len(inputs) < 2 or opts["n"] != 1 or self.batch_size < 2:
            return []  # nothing to batch: each invoke generates as usual
        conversations = [self._convert_input(i).to_messages() for i in inputs]
        stop = kwargs.get("stop")
        replies = self.generate_many(conversations, stop=stop, **calls)
        tools = kwargs.get("tools")
        keys = [
            (self._prompt(messages, tools, kwargs.get("tool_choice")), _key(opts, stop))
            for messages in conversations
        ]
        with self._lock:
            for key, reply in zip(keys, replies, strict=True):
                self._ready.setdefault(key, []).append(reply)
        return keys

    def _forget(self, keys: list[tuple[str, str]]) -> None:
        """Drop precomputed replies no invoke picked up (an input that failed early)."""
        with self._lock:
            for key in keys:
                self._ready.pop(key, None)

    def _reuse_prefix(self, ids: list[int], gen_kwargs: dict[str, Any], whole: bool = False) -> int:
        """Start generation from the cached conversation sharing the longest prefix with ``ids``.

        Returns how many prompt tokens the cache covers: at least the last one is left to read,
        so generation has a position to start from, unless ``whole`` and a prompt pass over
        exactly ``ids`` left its greedy next token (``gen_kwargs["first"]``): then nothing is
        read again, and the reply starts from the token that pass chose.
        """
        best, cache, first = 0, None, None
        for known, kv, after in self._prefixes:
            common = _common_prefix(known, ids)
            if common > best:
                # the next token is known only after the whole of what was read
                best, cache, first = common, kv, (after if common == len(known) else None)
        if not (whole and first is not None and best == len(ids)):
            best, first = min(best, len(ids) - 1), None
        if cache is None or best < _MIN_PREFIX:
            return 0
        reused = copy.deepcopy(cache)  # generate appends to it; the stored one stays reusable
        if excess := reused.get_seq_length() - best:
            reused.crop(-excess)  # a negative count removes that many tokens
        gen_kwargs["cache"] = reused
        if first is not None:
            gen_kwargs["first"] = first
        return best

    def clear_prefix_cache(self) -> None:
        """Forget every cached conversation prefix (``prefix_cache``): the next call reads its
        whole prompt. For timing one call on its own, or to free the caches' memory."""
        with self._lock:
            self._prefixes = []

    def _remember_prefix(self, out: Any) -> None:
        cache = getattr(out, "cache", None)
        if cache is not None:
            self._remember(out.sequences[0, : cache.get_seq_length()].tolist(), cache)

    def _remember(self, ids: list[int], cache: Any, first: int | None = None) -> None:
        """Keep ``cache`` (over exactly ``ids``) for the next call whose prompt extends ``ids``,
        with ``first``, this model's greedy token after ``ids``, when the pass computed it."""
        if not self.prefix_cache or not getattr(cache, "is_croppable", False):
            return
        kept = [e for e in self._prefixes if e[0] != ids[: len(e[0])]]  # drop what ids extends
        kept.append((ids, cache, first))
        while len(kept) > self.prefix_cache:
            del kept[_most_covered([known for known, _, _ in kept])]
        self._prefixes = kept

    def _to_generation(
        self,
        out: Any,
        row: int,
        prompt: str,
        prompt_len: int,
        reused: int,
        end_ids: list[int],
        stop: list[str] | None,
        tools: list[dict[str, Any]] | None,
        opts: dict[str, Any],
        start: int | None = None,
    ) -> ChatGeneration:
        """Row ``row`` of ``out`` as a reply; its tokens begin at column ``start`` (default
        ``prompt_len``; the padded width in a left-padded batch)."""
        generated = out.sequences[row, prompt_len if start is None else start :].tolist()
        length = next((i + 1 for i, t in enumerate(generated) if t in end_ids), len(generated))
        hit_end = length <= len(generated) and bool(generated) and generated[length - 1] in end_ids
        body = generated[: length - 1] if hit_end else generated[:length]
        text = self._tokenizer.decode(body, skip_special_tokens=False)
        stopped = False
        for s in stop or []:
            if s in text:
                text, stopped = text[: text.index(s)], True
        parsed = parse_model_reply(self._tokenizer, text, prompt, tools)
        finish = "tool_calls" if parsed.tool_calls else ("stop" if hit_end or stopped else "length")
        metadata: dict[str, Any] = {"model_name": self.model, "finish_reason": finish}
        if opts["return_logprobs"]:
            steps = torch.stack([step[row] for step in out.logits[:length]]).float()
            lp = torch.log_softmax(steps, dim=-1).gather(
                1, torch.tensor(generated[:length], device=steps.device)[:, None]
            )
            values = lp.squeeze(1).tolist()
            metadata["logprobs"] = {
                "content": [
                    {"token": self._tokenizer.decode([t]), "logprob": v}
                    for t, v in zip(generated[:length], values, strict=True)
                ],
                "mean": sum(values) / len(values) if values else 0.0,
            }
        if opts["hidden_layers"] and length:
            metadata["hidden_states"] = drafting_states(out.hidden_states, row, length, opts)
        message = AIMessage(
            content=parsed.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata={
                "input_tokens": prompt_len,
                "output_tokens": length,
                "total_tokens": prompt_len + length,
                "input_token_details": {"cache_read": reused},
            },
            response_metadata=metadata,
        )
        end_text = self._tokenizer.decode(generated[length - 1 : length]) if hit_end else ""
        return ChatGeneration(
            message=message,
            generation_info={"finish_reason": finish, "raw_text": text, "end_text": end_text},
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Run generation in a worker thread so the event loop keeps serving other trajectories."""
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)

    # -- teacher forcing ------------------------------------------------------------------------

    def score_continuation(
        self,
        messages: Sequence[BaseMessage | dict[str, Any]],
        continuation: str | Sequence[int],
        tools: Sequence[Any] | None = None,
    ) -> ContinuationScore:
        """Teacher-force ``continuation`` after the rendered prompt in one forward pass.

        Reports the log-prob of each continuation token, the model's greedy choice at each
        position and how many leading tokens it agrees with, which is what a lossless check needs:
        the agreed prefix equals what greedy decoding would have produced.
        """
        formatted = [convert_to_openai_tool(t) for t in tools or []]
        prompt = render_prompt(self._tokenizer, messages, formatted)
        prompt_ids = self._tokenizer(prompt, add_special_tokens=False).input_ids
        cont_ids = (
            self._tokenizer(continuation, add_special_tokens=False).input_ids
            if isinstance(continuation, str)
            else list(continuation)
        )
        if not cont_ids:
            raise ValueError("continuation is empty")
        ids = torch.tensor([prompt_ids + cont_ids], device=self._hf_model.device)
        with self._lock, torch.inference_mode():
            logits = self._hf_model(ids).logits[0, len(prompt_ids) - 1 :].float()
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        target = torch.tensor(cont_ids, device=logits.device)
        greedy = logits.argmax(-1).tolist()
        agreed = next(
            (i for i, (g, t) in enumerate(zip(greedy, cont_ids, strict=False)) if g != t),
            len(cont_ids),
        )
        return ContinuationScore(
            token_ids=cont_ids,
            logprobs=logprobs.gather(1, target[:, None]).squeeze(1).tolist(),
            greedy_ids=greedy[: len(cont_ids)],
            agreed=agreed,
            next_greedy_id=greedy[-1],
        )

    # -- lossless draft checking ----------------------------------------------------------------

    def draft_text(
        self,
        messages: Sequence[BaseMessage],
        draft: AIMessage,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        """The text of ``draft`` to check: what its model wrote, else this model's rendering.

        A reply of a local model carries its raw text (and the end token it stopped on), the
        exact surface form to teacher-force. Any other reply (an API model's) is rendered as
        this model's chat template writes an assistant turn, which is the form it would write.
        """
        metadata = draft.response_metadata or {}
        if isinstance(metadata.get("raw_text"), str):
            return metadata["raw_text"] + (metadata.get("end_text") or "")
        return render_reply(self._tokenizer, messages, tools, draft)[1]

    def continue_draft(
        self,
        messages: Sequence[BaseMessage],
        draft: AIMessage | str,
        tools: Sequence[Any] | None = None,
        *,
        max_new_tokens: int | None = None,
    ) -> AIMessage:
        """This model's own greedy reply, written only where ``draft`` is wrong (mode F).

        One forward pass teacher-forces the draft after the prompt, the longest prefix agreeing
        with this model's greedy choice is kept, and greedy generation continues from there on
        that pass's key/value cache (:mod:`spec_tool_node.chat_models.speculative`). A draft's
        tool calls are also checked in the other surface forms models write them in (a fenced
        block, bare JSON, the template's tags), following the one this model's choice goes
        along, so a right action in another form is not thrown away. The reply equals what
        ``invoke`` returns greedily, token for token.

        Args:
            draft: another model's reply (see :meth:`draft_text`) or the draft's text.
            tools: the bound tools, as ``bind_tools`` takes them.
            max_new_tokens: the budget (default: the model's).

        Returns:
            The reply, with ``response_metadata["lossless"]``: ``draft_tokens``,
            ``checked_tokens``, ``kept_tokens``, ``full_draft_kept``, ``generated_tokens``,
            ``forward_tokens``. ``usage_metadata`` counts as input every token this model
            read (prompt and checked draft, less a reused prefix cache) and as output only the
            tokens it wrote itself.
        """
        formatted, prompt, prompt_ids = self._prompt_ids(messages, tools)
        text = draft if isinstance(draft, str) else self.draft_text(messages, draft, formatted)
        forms = self._draft_forms(messages, draft, text, formatted)
        budget = max_new_tokens or self.max_new_tokens
        with self._lock:
            found: dict[str, Any] = {}
            reused = self._reuse_prefix(prompt_ids, found, whole=True) if self.prefix_cache else 0
            result = continue_draft(
                self._hf_model,
                self._tokenizer,
                prompt_ids,
                text,
                max_new_tokens=budget,
                end_ids=self._end_token_ids,
                cache=found.get("cache"),
                first=found.get("first"),
                alternatives=forms,
            )
            if self.prefix_cache and result.cache is not None:
                self._remember((prompt_ids + result.token_ids)[:-1], result.cache)
        return self._continuation_message(result, prompt, len(prompt_ids), reused, formatted)

    def _prompt_ids(
        self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None
    ) -> tuple[list[dict[str, Any]] | None, str, list[int]]:
        """The tools as the template lists them, the prompt of ``messages`` and its token ids:
        what a single reply on this conversation reads (the continuation, the read-ahead and
        the count of what is uncached all start from it)."""
        formatted = [convert_to_openai_tool(t) for t in tools or []] or None
        prompt = self._prompt(messages, formatted, None)
        return formatted, prompt, self._tokenizer(prompt, add_special_tokens=False).input_ids

    def uncached_prompt_tokens(
        self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """How many tokens of the prompt of ``messages`` this model would read now: those no
        kept conversation prefix (``prefix_cache``) supplies. Reads nothing; tokenises only.

        The cascade asks before drafting (``CascadeConfig.max_uncached_prompt_tokens``): a
        continuation reads these tokens as writing from scratch does, so where they are many
        the decoding steps a kept draft saves cannot repay the proposer.
        """
        _, _, ids = self._prompt_ids(messages, tools)
        with self._lock:
            best = max((_common_prefix(known, ids) for known, _, _ in self._prefixes), default=0)
        return len(ids) - (best if best >= _MIN_PREFIX else 0)

    def prefill(
        self,
        messages: Sequence[BaseMessage],
        tools: Sequence[Any] | None = None,
        *,
        watch: DraftWatch | None = None,
    ) -> int:
        """Read the prompt of ``messages`` now and keep its key/value cache for the next call.

        The next single reply on this conversation then reads none of the prompt again: a
        :meth:`continue_draft` starts from the greedy token this pass chose (so a decision made on
        that token, like the read-along's, is the one the check makes), and a greedy ``invoke``
        reads only the prompt's last token. In mode F the
        cascade calls this beside the proposer's drafting, so the strong model's read of the
        prompt overlaps the draft instead of following it: its check then reads only the draft.
        A prefix already cached is not read again.

        With ``watch`` (the draft being written, see :class:`DraftWatch`) it then reads the draft
        as it grows, when this model's reply starts as prose (or ends at once): a prose reply has
        no other written form, so the first draft token it disagrees with is where the check will
        stop keeping, and the proposer is told to stop writing there. A reply that starts like a
        tool call is not watched (the draft's call may still be kept in another form). Either way
        the check that follows gives this model's own reply; the draft tokens read are counted in
        ``watch.read_tokens``.

        Args:
            tools: the bound tools, as ``bind_tools`` takes them (the prompt lists them).
            watch: the proposer's draft as it is being written.

        Returns:
            How many prompt tokens were read; 0 when the prefix cache is off (``prefix_cache=0``).
        """
        if not self.prefix_cache:
            return 0
        from transformers import DynamicCache

        formatted, _, ids = self._prompt_ids(messages, tools)
        with self._lock, torch.inference_mode():
            found: dict[str, Any] = {}
            reused = self._reuse_prefix(ids, found)
            cache = found.get("cache") or DynamicCache(config=self._hf_model.config)
            new = torch.tensor([ids[reused:]], device=self._hf_model.device)
            logits = self._hf_model(
                input_ids=new, cache=cache, use_cache=True, **last_logits(self._hf_model)
            ).logits
            first = int(logits[0, -1].argmax())
            watching = watch is not None and self._unlike_a_call(first, messages, formatted)
            if not watching:
                self._remember(ids, cache, first)
        if watching:
            self._read_along(watch, cache, first)  # a failure drops the cache, half-written
            # the check reads the draft itself (it may take another form)
            if excess := cache.get_seq_length() - len(ids):
                cache.crop(-excess)
            with self._lock:
                self._remember(ids, cache, first)
        return len(ids) - reused

    def _unlike_a_call(
        self, first: int, messages: Sequence[BaseMessage], tools: list[dict[str, Any]] | None
    ) -> bool:
        """Whether a reply starting with token ``first`` can only be prose or empty: no written
        form of a tool call (nor this template's own) starts that way."""
        if first in self._end_token_ids:
            return True
        text = self._tokenizer.decode([first]).lstrip()
        openers = set(_CALL_OPENERS)
        with contextlib.suppress(ReplyRenderError):
            sample = AIMessage(content="", tool_calls=[{"name": "f", "args": {}, "id": "0"}])
            rendered = render_reply(self._tokenizer, list(messages), tools, sample)[1].lstrip()
            openers.update(rendered[:1])
        return bool(text) and text[0] not in openers

    def _read_along(self, watch: DraftWatch, cache: Any, choice: int) -> None:
        """Follow the draft in ``watch`` on ``cache`` (over the prompt) while each of its tokens is
        this model's greedy choice (``choice``: the one after the prompt); stop the draft at the
        first that is not. The last token of the text so far is left for later: it may still
        grow into another token."""
        agreed: list[int] = []
        seen = 0
        while (offered := watch.wait(seen)) is not None:
            text, seen = offered
            ids = self._tokenizer(text, add_special_tokens=False).input_ids[:-1]
            if ids[: len(agreed)] != agreed:
                return  # re-tokenising moved a boundary already read: leave it to the check
            new = ids[len(agreed) :]
            if new and new[0] != choice:
                watch.stop()
                return
            if len(new) < _WATCH_CHUNK:
                continue
            with self._lock, torch.inference_mode():
                ids_in = torch.tensor([new], device=self._hf_model.device)
                logits = self._hf_model(input_ids=ids_in, cache=cache, use_cache=True).logits[0]
            watch.read_tokens += len(new)
            greedy = [choice, *logits.argmax(-1).tolist()]
            if any(g != t for g, t in zip(greedy, new, strict=False)):
                watch.stop()
                return
            agreed += new
            choice = greedy[-1]
            if agreed[-1] in self._end_token_ids or len(agreed) >= self.max_new_tokens:
                return

    def _draft_forms(
        self,
        messages: Sequence[BaseMessage],
        draft: AIMessage | str,
        text: str,
        tools: list[dict[str, Any]] | None,
    ) -> list[str]:
        """The draft's tool calls in the other forms this model might write them in.

        The template's own rendering first, then every form of :func:`call_forms`, each ending
        with this model's end-of-turn text; a draft without calls has no other form.
        """
        calls = draft.tool_calls if isinstance(draft, AIMessage) else parse_reply(text).tool_calls
        if not calls:
            return []
        end = self._tokenizer.eos_token or ""  # the end-of-turn text, as render_reply ends
        forms = [form + end for form in call_forms(calls)]
        reply = AIMessage(content="", tool_calls=calls)
        # a template that rewrites earlier turns has no reply rendering; the plain forms remain
        with contextlib.suppress(ReplyRenderError):
            forms.insert(0, render_reply(self._tokenizer, messages, tools, reply)[1])
        return [form for form in dict.fromkeys(forms) if form != text]

    def _continuation_message(
        self,
        result: Continuation,
        prompt: str,
        prompt_len: int,
        reused: int,
        tools: list[dict[str, Any]] | None,
    ) -> AIMessage:
        ids = result.token_ids
        hit_end = bool(ids) and ids[-1] in self._end_token_ids
        text = self._tokenizer.decode(ids[:-1] if hit_end else ids, skip_special_tokens=False)
        parsed = parse_model_reply(self._tokenizer, text, prompt, tools)
        finish = "tool_calls" if parsed.tool_calls else ("stop" if hit_end else "length")
        lossless = {
            "draft_tokens": result.draft_tokens,
            "checked_tokens": result.checked_tokens,
            "kept_tokens": result.kept_tokens,
            "full_draft_kept": result.full_draft_kept,
            "generated_tokens": result.generated_tokens,
            "forward_tokens": result.forward_tokens,
        }
        read = prompt_len + result.checked_tokens - reused
        return AIMessage(
            content=parsed.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata={
                "input_tokens": read + reused,
                "output_tokens": result.generated_tokens,
                "total_tokens": read + reused + result.generated_tokens,
                "input_token_details": {"cache_read": reused},
            },
            response_metadata={
                "model_name": self.model,
                "finish_reason": finish,
                "raw_text": text,
                "end_text": self._tokenizer.decode(ids[-1:]) if hit_end else "",
                "lossless": lossless,
            },
        )
