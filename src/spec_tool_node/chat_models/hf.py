"""A local transformers chat model that really calls tools.

``HFChatModel(model=NAME, adapter=PATH)`` loads a hub id, a local folder or an offline asset
(:mod:`spec_tool_node.assets`), with an optional peft adapter, and behaves like any LangChain chat
model: ``bind_tools`` passes the tools to the chat template, replies are parsed into
``AIMessage.tool_calls``, usage and model name are set so LangChain's usage callbacks count them.

It also exposes what the cascade needs from a local model and an API model cannot give: per-token
log-probs and the last hidden state of a generated action, and
:meth:`HFChatModel.score_continuation`, which teacher-forces a given continuation in one
forward pass.

Templates without tool support get a documented fallback: the tools are described in a system
prompt that asks for ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` replies, earlier
tool calls are written in that form and tool results are passed back as user turns wrapped in
``<tool_response>`` tags.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from spec_tool_node import assets
from spec_tool_node.chat_models.parsing import ParsedReply, parse_reply, parse_template_response

FALLBACK_TOOL_PROMPT = (
    "You can call the following tools. To call one, reply with only\n"
    '<tool_call>\n{{"name": <tool name>, "arguments": <JSON object of arguments>}}\n</tool_call>\n'
    "(one block per call). If no tool fits, answer the user directly.\n\nTools:\n{tools}"
)
"""System prompt used when the chat template cannot render tools itself."""

TOOL_CHOICE_HINT = "You must answer with a tool call."
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<|end_of_text|>")
_PASSED_BY_LANGCHAIN = {
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "ls_structured_output_format",
}
"""Call options LangChain or create_agent may pass: accepted (several calls per reply are always
allowed, structured output is parsed by the caller)."""
_MIN_PREFIX = 16
"""Shorter shared prefixes are not worth copying a cache for."""
_GEN_OPTIONS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "n",
    "return_logprobs",
    "return_hidden_state",
)


def load_pretrained(
    name: str,
    adapter: str | Path | None = None,
    *,
    dtype: str = "bfloat16",
    device: str | None = None,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from an asset name, a local folder or a hub id, plus a peft adapter.

    Raises:
        ValueError: ``name`` is none of the three, naming what was tried.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name in assets.ASSETS:
        source: str | Path = assets.resolve(name)
    else:
        source = Path(name).expanduser() if Path(name).expanduser().exists() else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    except OSError as e:
        known = ", ".join(sorted(assets.ASSETS))
        raise ValueError(
            f"could not load model {name!r}: it is not an offline asset ({known}), not a local "
            f"folder, and loading it as a hub id failed: {e}"
        ) from e
    if adapter is not None:
        from peft import PeftModel

        if not Path(adapter).exists():
            raise ValueError(f"adapter folder {str(adapter)!r} does not exist")
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)


def to_chat_dicts(messages: Sequence[BaseMessage | dict[str, Any]]) -> list[dict[str, Any]]:
    """LangChain messages (or OpenAI dicts) to the dicts chat templates read.

    OpenAI dicts carry call arguments as JSON strings; templates expect objects, so they are
    decoded here and both inputs render identically.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, dict):
            out.append(_decoded_arguments(m))
        elif isinstance(m, SystemMessage):
            out.append({"role": "system", "content": _text(m.content)})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": _text(m.content)})
        elif isinstance(m, AIMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": _text(m.content)}
            if m.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": c.get("id"),
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["args"]},
                    }
                    for c in m.tool_calls
                ]
            out.append(entry)
        elif isinstance(m, ToolMessage):
            out.append(
                {
                    "role": "tool",
                    "content": _text(m.content),
                    "tool_call_id": m.tool_call_id,
                    "name": m.name,
                }
            )
        else:
            out.append({"role": m.type, "content": _text(m.content)})
    return out


def _decoded_arguments(message: dict[str, Any]) -> dict[str, Any]:
    if not message.get("tool_calls"):
        return message
    calls = []
    for c in message["tool_calls"]:
        function = dict(c.get("function", c))
        if isinstance(function.get("arguments"), str):
            # undecodable arguments stay as they are: the template renders the raw text
            with contextlib.suppress(json.JSONDecodeError):
                function["arguments"] = json.loads(function["arguments"] or "{}")
        calls.append({**c, "function": function} if "function" in c else function)
    return {**message, "tool_calls": calls}


_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "spec_probe_tool_x7",
        "description": "probe",
        "parameters": {"type": "object", "properties": {}},
    },
}


def template_supports_tools(tokenizer: Any) -> bool:
    """True when the chat template renders the tools it is given (checked once per tokenizer)."""
    cached = getattr(tokenizer, "_spec_supports_tools", None)
    if cached is None:
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "hi"}],
                tools=[_PROBE_TOOL],
                tokenize=False,
                add_generation_prompt=True,
            )
            cached = "spec_probe_tool_x7" in text
        except Exception:
            cached = False
        tokenizer._spec_supports_tools = cached
    return cached


def _fallback_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rewrite a conversation for a template without tool support (see the module docstring)."""
    listing = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
    prompt = FALLBACK_TOOL_PROMPT.format(tools=listing)
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            blocks = [
                "<tool_call>\n"
                + json.dumps(
                    {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                    ensure_ascii=False,
                )
                + "\n</tool_call>"
                for c in m["tool_calls"]
            ]
            out.append(
                {
                    "role": "assistant",
                    "content": "\n".join([m.get("content") or "", *blocks]).strip(),
                }
            )
        elif m["role"] == "tool":
            out.append(
                {"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"}
            )
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{prompt}"}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def render_prompt(
    tokenizer: Any,
    messages: Sequence[BaseMessage | dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = True,
) -> str:
    """Render a conversation (and its tools) exactly as the model sees it at inference.

    Training renders its examples with this same function, so training and inference prompts
    are identical token for token.
    """
    chat = to_chat_dicts(messages)
    tools = list(tools or [])
    if tools and not template_supports_tools(tokenizer):
        chat, tools = _fallback_messages(chat, tools), []
    elif not tools:
        chat = [m if m.get("content") is not None else {**m, "content": ""} for m in chat]
    return tokenizer.apply_chat_template(
        chat, tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


class ReplyRenderError(ValueError):
    """The template renders an answered conversation that does not extend its inference prompt."""


def render_reply(
    tokenizer: Any,
    messages: Sequence[BaseMessage | dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None,
    reply: BaseMessage | dict[str, Any],
) -> tuple[str, str]:
    """The inference prompt, and ``reply`` as the template renders it right after that prompt.

    The reply text stops at the end-of-turn token, the last token the model must emit. Training
    puts its labels on exactly this text and scoring teacher-forces it, so both see what
    generation after this prompt would have to produce.

    Raises:
        ReplyRenderError: the answered conversation does not begin with the prompt (a template
            that rewrites earlier turns); no reply text then follows the inference prompt.
    """
    prompt = render_prompt(tokenizer, messages, tools)
    full = render_prompt(tokenizer, [*messages, reply], tools, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ReplyRenderError(
            "the rendered answer does not start with the inference prompt, so training would "
            "see a different prompt than inference"
        )
    completion = full[len(prompt) :]
    end = tokenizer.eos_token or ""
    if end and end in completion:
        completion = completion[: completion.index(end) + len(end)]
    return prompt, completion


def parse_model_reply(
    tokenizer: Any, text: str, prompt: str, tools: Sequence[dict[str, Any]] | None
) -> ParsedReply:
    """Parse with the tokenizer's ``parse_response`` if it has a response template, else by form."""
    if getattr(tokenizer, "response_template", None):
        try:
            return parse_template_response(
                tokenizer.parse_response(text, prefix=prompt, tools=list(tools or []) or None)
            )
        except (
            Exception
        ):  # a template that does not match this reply: fall back to the formats we know
            pass
    return parse_reply(text)


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
        return_hidden_state: put the last layer's hidden state at the final generated position in
            ``response_metadata["hidden_state"]`` (a list of floats), for probes.
        dtype: torch dtype name used to load the weights.
        device: torch device; defaults to CUDA when available, else CPU.
        prefix_cache: how many recent conversations' key/value caches to keep. An agent's next
            prompt extends its last one (reply and tool result appended), so a single-reply call
            prefills only the tokens after the longest cached prefix; ``0`` turns it off. The
            reused count is in ``usage_metadata["input_token_details"]["cache_read"]``.
        loaded: an already-loaded ``(model, tokenizer)`` pair used instead of loading ``model``.

    Every option except the loading ones can be overridden per call (``model.invoke(m, n=3,
    do_sample=True)``) or bound (``model.bind(return_logprobs=True)``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str = Field(description="Asset name, local folder or hub id.")
    adapter: str | None = None
    max_new_tokens: int = Field(default=256, gt=0)
    do_sample: bool = False
    temperature: float = Field(default=0.7, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    return_logprobs: bool = False
    return_hidden_state: bool = False
    dtype: str = "bfloat16"
    device: str | None = None
    prefix_cache: int = Field(default=4, ge=0)

    loaded: tuple[Any, Any] | None = Field(default=None, exclude=True, repr=False)
    """An already-loaded ``(model, tokenizer)`` pair; skips loading (tests, custom loading)."""

    _hf_model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _end_token_ids: list[int] = PrivateAttr(default_factory=list)
    _prefixes: list[tuple[list[int], Any]] = PrivateAttr(default_factory=list)
    """(token ids, key/value cache over exactly those ids), most recent last."""

    def model_post_init(self, context: Any, /) -> None:
        if self.loaded is not None:
            self._hf_model, self._tokenizer = self.loaded
            if self._tokenizer.pad_token_id is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
        else:
            self._hf_model, self._tokenizer = load_pretrained(
                self.model, self.adapter, dtype=self.dtype, device=self.device
            )
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
        unknown = set(overrides) - set(_GEN_OPTIONS) - _PASSED_BY_LANGCHAIN
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
        tokenizer, model = self._tokenizer, self._hf_model
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        end_ids = self._end_token_ids
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": opts["max_new_tokens"],
            "do_sample": opts["do_sample"],
            "num_return_sequences": opts["n"],
            "eos_token_id": end_ids,
            "pad_token_id": tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": opts["return_logprobs"],
            "output_hidden_states": opts["return_hidden_state"],
        }
        if opts["do_sample"]:
            gen_kwargs.update(temperature=opts["temperature"], top_p=opts["top_p"], top_k=0)
        else:  # make greedy explicit whatever the checkpoint's generation_config says
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            gen_kwargs.update(stop_strings=stop, tokenizer=tokenizer)
        single = opts["n"] == 1 and self.prefix_cache > 0
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
        usage = {
            "input_tokens": prompt_len,
            "output_tokens": sum(g.message.usage_metadata["output_tokens"] for g in generations),
            "cache_read": reused,
        }
        return ChatResult(
            generations=generations, llm_output={"model_name": self.model, "token_usage": usage}
        )

    def _reuse_prefix(self, ids: list[int], gen_kwargs: dict[str, Any]) -> int:
        """Start generation from the cached conversation sharing the longest prefix with ``ids``.

        Returns how many prompt tokens the cache covers (at least the last one is prefilled, so
        generation has a position to start from).
        """
        best, cache = 0, None
        for known, kv in self._prefixes:
            common = _common_prefix(known, ids)
            if common > best:
                best, cache = common, kv
        best = min(best, len(ids) - 1)
        if cache is None or best < _MIN_PREFIX:
            return 0
        reused = copy.deepcopy(cache)  # generate appends to it; the stored one stays reusable
        if excess := reused.get_seq_length() - best:
            reused.crop(-excess)  # a negative count removes that many tokens
        gen_kwargs["past_key_values"] = reused
        return best

    def _remember_prefix(self, out: Any) -> None:
        cache = getattr(out, "past_key_values", None)
        if cache is None or not getattr(cache, "is_croppable", False):
            return
        ids = out.sequences[0, : cache.get_seq_length()].tolist()
        kept = [(k, v) for k, v in self._prefixes if k != ids[: len(k)]]  # drop what ids extends
        self._prefixes = [*kept, (ids, cache)][-self.prefix_cache :]

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
    ) -> ChatGeneration:
        generated = out.sequences[row, prompt_len:].tolist()
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
        if opts["return_hidden_state"] and length:
            metadata["hidden_state"] = out.hidden_states[length - 1][-1][row, -1].float().tolist()
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
        return ChatGeneration(
            message=message, generation_info={"finish_reason": finish, "raw_text": text}
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
