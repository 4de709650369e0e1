"""The probe verifier: a frozen causal LM reads (context + draft) once; a small head on its pooled
hidden states gives p(ACCEPT).

The draft is written the way the chat template writes an assistant reply with that action
(:func:`~spec_tool_node.chat_models.templates.render_reply`), after the prompt the proposer saw
(tools bound), so the features are those of the proposer's own drafting pass when the base model
is the proposer: :meth:`ProbeHead.predict_drafted` scores the states the drafting pass returned
(mode G) without another forward pass. It works with any proposer, API models included, since it
needs only the draft's action.

Poolings over the reply's tokens (:data:`POOLINGS`): ``mean`` (every token of the reply),
``last`` (its last token, the end-of-turn), ``values`` (the tokens of the tool names and argument
values, where a wrong call differs from a right one; the whole reply for a text answer),
``drafting`` (the states that wrote the reply: the prompt's last position and every reply token
but the last, each of which predicted the next reply token). ``drafting`` is what a local
proposer's own generation computes (``HFChatModel(hidden_layers=...)``), so a head trained on it
scores a draft from its drafting pass with no forward pass of its own: mode G's probe. The head
is a logistic regression or a small MLP on standardised features, stored as safetensors plus a
JSON file: no pickle, and it loads without scikit-learn.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from langchain_core.messages import AIMessage, BaseMessage

from spec_tool_node.actions import Action, ToolCallsAction, action_to_message
from spec_tool_node.chat_models.loading import load_pretrained
from spec_tool_node.chat_models.templates import render_reply
from spec_tool_node.costs import CallRecord
from spec_tool_node.errors import ConfigError
from spec_tool_node.verifiers.base import Verdict, Verifier

POOLINGS = ("mean", "last", "values", "drafting")
"""How the reply's hidden states are pooled into one vector per layer."""

HEAD_FILE = "head.safetensors"
TEXT_FOLDER = "text"
"""Where a probe with a head per kind of draft keeps the head for drafts that call no tool."""
CONFIG_FILE = "probe.json"


# -- rendering ------------------------------------------------------------------------------------


@dataclass
class RenderedDraft:
    """One (context, draft) pair as token ids, with the positions the poolings read."""

    input_ids: list[int]
    reply_start: int
    """Index of the reply's first token (everything before it is the prompt)."""
    values: list[int] = field(default_factory=list)
    """Positions of the tool-name and argument-value tokens (empty for a text answer)."""


def wrapped_tools(tools: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Tools as the proposer's prompt carries them (``bind_tools`` wraps bare function schemas)."""
    return [t if "function" in t else {"type": "function", "function": t} for t in tools or []]


def _value_spans(completion: str, draft: Action) -> list[tuple[int, int]]:
    """Character spans of each call's name and argument values in the rendered reply.

    The template writes a call as JSON, so each piece is found by its JSON text after its key;
    a piece written otherwise is simply not found (the pooling then has fewer tokens).
    """
    if not isinstance(draft, ToolCallsAction):
        return []
    spans: list[tuple[int, int]] = []
    cursor = 0
    for call in draft.calls:
        pieces = [("name", call.name), *call.arguments.items()]
        for key, value in pieces:
            needle = (
                f"{json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}"
            )
            at = completion.find(needle, cursor)
            if at < 0:
                continue
            start = at + len(json.dumps(key, ensure_ascii=False)) + 2
            spans.append((start, at + len(needle)))
            if key == "name":
                cursor = at
    return spans


def render_draft(
    tokenizer: Any,
    context: Sequence[BaseMessage | dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None,
    draft: Action,
    *,
    max_length: int | None = None,
) -> RenderedDraft:
    """The prompt the proposer saw, then ``draft`` as the template writes that reply.

    ``max_length`` cuts the prompt from the left (the reply and the latest turns are kept).
    """
    prompt, completion = render_reply(
        tokenizer, context, wrapped_tools(tools) or None, action_to_message(draft)
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    encoded = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
    reply_ids = encoded.input_ids
    if max_length is not None:
        prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(reply_ids) - max_length) :]
    spans = _value_spans(completion, draft)
    values = [
        len(prompt_ids) + i
        for i, (a, b) in enumerate(encoded["offset_mapping"])
        if any(a < e and b > s for s, e in spans)
    ]
    return RenderedDraft(prompt_ids + reply_ids, len(prompt_ids), values)


# -- pooling --------------------------------------------------------------------------------------


def pooling_masks(rendered: Sequence[RenderedDraft], width: int) -> dict[str, torch.Tensor]:
    """``[batch, width]`` float masks of each pooling for right-padded rows."""
    positions = torch.arange(width)[None, :]
    starts = torch.tensor([r.reply_start for r in rendered])[:, None]
    ends = torch.tensor([len(r.input_ids) for r in rendered])[:, None]
    mean = ((positions >= starts) & (positions < ends)).float()
    last = (positions == ends - 1).float()
    drafting = ((positions >= starts - 1) & (positions < ends - 1)).float()
    values = torch.zeros_like(mean)
    for row, r in enumerate(rendered):
        if r.values:
            values[row, r.values] = 1.0
        else:
            values[row] = mean[row]
    return {"mean": mean, "last": last, "values": values, "drafting": drafting}


def pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over positions: ``[batch, width, dim]`` and ``[batch, width]`` give
    ``[batch, dim]``."""
    mask = mask.to(hidden.device, torch.float32)
    total = torch.einsum("btd,bt->bd", hidden.float(), mask)
    return total / mask.sum(1, keepdim=True).clamp_min(1.0)


LOGPROB_STATS = ("values_mean", "values_min", "reply_mean")
"""What a head may read besides hidden states: the base model's log-probs of the draft's own
tokens, from the same pass (natural log): their mean and minimum over the ``values`` tokens, and
their mean over the whole reply. A model that finds a call's argument values surprising is often
right to. The ``values`` tokens are the tool names and argument values (the log-prob gate of
mode G reads the argument values alone)."""


@dataclass
class DraftReading:
    """What one pass over each (context, draft) pair gives a probe."""

    pooled: np.ndarray
    """``[n, len(poolings), len(layers), hidden]`` pooled hidden states (float32)."""
    logprobs: np.ndarray
    """``[n, len(LOGPROB_STATS)]`` statistics of the draft tokens' log-probs (float32)."""


def _logprob_stats(
    output_embeddings: Any, last: torch.Tensor, input_ids: torch.Tensor, r: RenderedDraft
) -> list[float]:
    """:data:`LOGPROB_STATS` of one row: the reply's tokens scored from the states before them
    (the last hidden state is the normed one the vocabulary projection reads)."""
    # the first token has no state before it: when truncation left no prompt, it is skipped
    start = max(r.reply_start, 1)
    if start >= len(r.input_ids):
        return [0.0] * len(LOGPROB_STATS)  # nothing of the reply left to score
    positions = torch.arange(start, len(r.input_ids), device=last.device)
    logits = output_embeddings(last[positions - 1]).float()
    token = torch.log_softmax(logits, dim=-1).gather(1, input_ids[positions][:, None])[:, 0]
    offsets = [p - start for p in r.values if p >= start]
    values = token[offsets] if offsets else token
    return [values.mean().item(), values.min().item(), token.mean().item()]


@torch.inference_mode()
def read_drafts(
    model: Any,
    tokenizer: Any,
    rendered: Sequence[RenderedDraft],
    layers: Sequence[int],
    poolings: Sequence[str] = POOLINGS,
    *,
    batch_size: int = 8,
) -> DraftReading:
    """One forward pass per batch: the pooled hidden states and the draft's log-prob statistics.

    Rows are grouped by length to limit padding; the tokenizer pads them on the right (so no
    position ids change) and the attention mask hides the padding. Layer ``0`` is the embedding
    output, layer ``k`` the output of block ``k`` (``output_hidden_states`` order). Only the
    reply's positions go through the vocabulary projection.
    """
    unknown = set(poolings) - set(POOLINGS)
    if unknown:
        raise ValueError(f"unknown poolings {sorted(unknown)}; known: {', '.join(POOLINGS)}")
    # the vocabulary projection is applied to the reply's positions below: skip the model's own
    keeps = "logits_to_keep" in inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if keeps else {}
    output_embeddings = model.get_output_embeddings()
    order = sorted(range(len(rendered)), key=lambda i: len(rendered[i].input_ids))
    pooled = np.zeros(
        (len(rendered), len(poolings), len(layers), model.config.hidden_size), dtype=np.float32
    )
    logprobs = np.zeros((len(rendered), len(LOGPROB_STATS)), dtype=np.float32)
    for b in range(0, len(order), batch_size):
        rows = order[b : b + batch_size]
        batch = tokenizer.pad(
            {"input_ids": [rendered[i].input_ids for i in rows]},
            padding=True,
            padding_side="right",
            return_tensors="pt",
        )
        input_ids = batch["input_ids"].to(model.device)
        hidden = model(
            input_ids=input_ids,
            attention_mask=batch["attention_mask"].to(model.device),
            output_hidden_states=True,
            use_cache=False,
            **extra,
        ).hidden_states
        masks = pooling_masks([rendered[i] for i in rows], input_ids.shape[1])
        for p, name in enumerate(poolings):
            for j, layer in enumerate(layers):
                pooled[rows, p, j] = pool(hidden[layer], masks[name]).cpu().numpy()
        for k, i in enumerate(rows):
            logprobs[i] = _logprob_stats(
                output_embeddings, hidden[-1][k], input_ids[k], rendered[i]
            )
    return DraftReading(pooled, logprobs)


# -- the head -------------------------------------------------------------------------------------


_CONFIG_KEYS = {
    *("kind", "base_model", "layers", "pooling", "head", "dense_layers", "logprob_stats"),
    *("threshold", "card", "text_head"),
}
"""The keys of ``probe.json`` this release reads; a file with others is refused, not misread."""


@dataclass
class ProbeHead:
    """Standardise, then dense layers with ReLU between them, then a sigmoid: p(ACCEPT).

    One dense layer is a logistic regression; two are a 2-layer MLP. ``layers`` and ``pooling``
    say which hidden states the features are (concatenated in ``layers`` order), followed by the
    ``logprob_stats`` it reads (:data:`LOGPROB_STATS`, in that order).

    With a ``text_head`` there are two heads on the same features, one per kind of draft: this
    one for drafts that call tools, ``text_head`` for drafts that call none (answers and
    refusals). A single head spends most of its capacity telling the kinds apart; which kind a
    draft is, the verifier already knows, so each head learns only what makes a draft of its
    kind right.
    """

    base_model: str
    layers: list[int]
    pooling: str
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    """``[in, out]`` matrices; the last has one output column."""
    biases: list[np.ndarray]
    threshold: float | None = None
    """The threshold calibrated with the head (the cascade uses its bundle config's threshold)."""
    card: dict[str, Any] = field(default_factory=dict)
    """What it was trained on and how it was chosen (free-form, saved in the JSON file)."""
    logprob_stats: list[str] = field(default_factory=list)
    """The draft log-prob statistics appended to the hidden states (none: hidden states only)."""
    text_head: ProbeHead | None = None
    """The head for drafts that call no tool; ``None``: this head scores every draft."""

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; known: {', '.join(POOLINGS)}")
        unknown = set(self.logprob_stats) - set(LOGPROB_STATS)
        if unknown:
            raise ValueError(
                f"unknown log-prob statistics {sorted(unknown)}; known: {', '.join(LOGPROB_STATS)}"
            )
        if not self.layers and not self.logprob_stats:
            raise ValueError("a head reads at least one layer or one log-prob statistic")
        if len(self.weights) != len(self.biases) or not self.weights:
            raise ValueError("a head needs as many bias vectors as weight matrices (at least one)")
        text = self.text_head
        if text is not None and (
            text.text_head is not None
            or (text.base_model, text.layers, text.pooling, text.logprob_stats)
            != (self.base_model, self.layers, self.pooling, self.logprob_stats)
        ):
            raise ValueError(
                "a text head reads the same base model, layers, pooling and log-prob statistics "
                "as its head, and has no text head of its own"
            )

    @property
    def kind(self) -> str:
        return "logistic" if len(self.weights) == 1 else f"mlp{len(self.weights)}"

    def inputs(self, reading: DraftReading, pooling: int = 0) -> np.ndarray:
        """This head's input rows from a reading made with this head's layers and, at index
        ``pooling``, its pooling."""
        hidden = reading.pooled[:, pooling].reshape(len(reading.pooled), -1)
        columns = [LOGPROB_STATS.index(s) for s in self.logprob_stats]
        return np.concatenate([hidden, reading.logprobs[:, columns]], axis=1)

    def predict(self, features: np.ndarray, calls: Sequence[bool] | None = None) -> np.ndarray:
        """p(ACCEPT) of each row of ``[n, len(layers) * hidden + len(logprob_stats)]`` features
        (float64). ``calls[i]``: whether draft ``i`` calls tools (needed with a text head).

        Raises:
            ValueError: this head has a text head and ``calls`` is not given.
        """
        if self.text_head is None:
            return self._dense(features)
        if calls is None:
            raise ValueError("this probe has a head per kind of draft: say which drafts call tools")
        calls = np.asarray(calls, dtype=bool)
        if calls.shape != (len(features),):
            raise ValueError(f"{len(features)} feature rows, but calls says {calls.size} kinds")
        return np.where(calls, self._dense(features), self.text_head._dense(features))

    def _dense(self, features: np.ndarray) -> np.ndarray:
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        return 1.0 / (1.0 + np.exp(-x[:, 0]))

    def predict_drafted(
        self, states: Mapping[str, Sequence[float]], *, calls: bool
    ) -> float | None:
        """p(ACCEPT) from the pooled states a drafting pass returned (``HFChatModel``'s
        ``hidden_layers``, keyed by layer) for a draft that calls tools (``calls``) or does
        not, or ``None`` when this head does not read them (its pooling is not ``drafting``) or
        a layer it needs is missing."""
        if (
            self.pooling != "drafting"
            or self.logprob_stats
            or any(str(layer) not in states for layer in self.layers)
        ):
            return None
        features = np.concatenate([np.asarray(states[str(layer)]) for layer in self.layers])
        return float(self.predict(features[None, :], [calls])[0])

    def save(self, directory: str | Path) -> Path:
        """Write ``probe.json`` and ``head.safetensors`` into ``directory`` (a text head into
        its ``text/`` folder)."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            tensors[f"dense{i}.weight"] = np.ascontiguousarray(w)
            tensors[f"dense{i}.bias"] = np.ascontiguousarray(b)
        save_file(
            {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()},
            str(directory / HEAD_FILE),
        )
        config = {
            "kind": "probe",
            "base_model": self.base_model,
            "layers": self.layers,
            "pooling": self.pooling,
            "head": self.kind,
            "dense_layers": len(self.weights),
            "logprob_stats": self.logprob_stats,
            "threshold": self.threshold,
            "card": self.card,
            "text_head": TEXT_FOLDER if self.text_head is not None else None,
        }
        if self.text_head is not None:
            self.text_head.save(directory / TEXT_FOLDER)
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ProbeHead:
        """Read a head written by :meth:`save`."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{directory} is not a probe: no {CONFIG_FILE} in it")
        config = json.loads(config_path.read_text())
        unknown = set(config) - _CONFIG_KEYS
        if unknown:  # a head from a newer release: scoring it without them would be wrong
            raise ConfigError(
                f"{config_path}: unknown keys {sorted(unknown)} (written by a newer "
                "spec-tool-node? upgrade it to load this probe)"
            )
        tensors = load_file(str(directory / HEAD_FILE))
        count = int(config["dense_layers"])
        return cls(
            base_model=config["base_model"],
            layers=[int(x) for x in config["layers"]],
            pooling=config["pooling"],
            mean=tensors["mean"],
            scale=tensors["scale"],
            weights=[tensors[f"dense{i}.weight"] for i in range(count)],
            biases=[tensors[f"dense{i}.bias"] for i in range(count)],
            threshold=config.get("threshold"),
            card=config.get("card") or {},
            logprob_stats=list(config.get("logprob_stats") or []),
            text_head=cls.load(directory / config["text_head"])
            if config.get("text_head")
            else None,
        )


def is_probe(directory: str | Path | None) -> bool:
    """Whether ``directory`` holds a probe head (rather than, say, a peft adapter)."""
    return directory is not None and (Path(directory) / CONFIG_FILE).is_file()


# -- the verifier ---------------------------------------------------------------------------------


class ProbeVerifier(Verifier):
    """p(ACCEPT) from a frozen causal LM's hidden states over (context + draft) and a small head.

    Args:
        head: the trained head. Its ``base_model`` is loaded on first use, unless ``loaded`` is
            given; in mode G it is never loaded. A model that cannot be loaded therefore shows
            at the first score, as any verifier failure does: the draft is rejected and the
            ledger's reject reason names the error.
        model: load this model instead of ``head.base_model`` (the same weights elsewhere).
        dtype, device: as for ``HFChatModel``.
        loaded: an already-loaded ``(model, tokenizer)`` pair (e.g. the proposer's own).
        batch_size: drafts per forward pass.
        max_length: keep at most this many tokens per pair, cutting the prompt from the left.
    """

    def __init__(
        self,
        head: ProbeHead,
        model: str | None = None,
        *,
        dtype: str = "bfloat16",
        device: str | None = None,
        loaded: tuple[Any, Any] | None = None,
        batch_size: int = 8,
        max_length: int | None = 4096,
    ) -> None:
        self.head = head
        self.name = model or head.base_model
        self.adapter: str | None = None
        """The probe folder this verifier was loaded from (names its evaluation cache)."""
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.batch_size, self.max_length = batch_size, max_length
        self._load = {"dtype": dtype, "device": device}
        self._loaded = loaded
        self._lock = threading.Lock()

    def _model(self) -> tuple[Any, Any]:
        """The base model and tokenizer, loaded on first use: mode G reads the proposer's own
        states and never needs them."""
        with self._lock:
            if self._loaded is None:
                self._loaded = load_pretrained(self.name, **self._load)
            model, tokenizer = self._loaded
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            return model, tokenizer

    @property
    def model(self) -> Any:
        return self._model()[0]

    @property
    def tokenizer(self) -> Any:
        return self._model()[1]

    @property
    def reads_drafting_pass(self) -> bool:
        return self.head.pooling == "drafting" and not self.head.logprob_stats

    def drafting_options(self, proposer: Any) -> dict[str, Any]:
        """``hidden_layers`` for a local proposer with this head's base weights (mode G)."""
        if self.head.pooling != "drafting" or self.head.logprob_stats:
            raise ConfigError(
                f"this probe reads {self._reads()}, which needs a pass of its own over the "
                "draft; mode G needs a head trained on the 'drafting' pooling alone"
            )
        given = (getattr(proposer, "model", None), getattr(proposer, "adapter", None))
        if not hasattr(proposer, "hidden_layers") or given != (self.name, None):
            raise ConfigError(
                f"this probe reads the hidden states of {self.name!r}; mode G needs that model "
                f"as a local proposer (HFChatModel(model={self.name!r})), "
                f"got {type(proposer).__name__} {given[0]!r}"
                + (f" with adapter {given[1]!r}" if given[1] else "")
                + " (use the probe in mode D instead)"
            )
        return {"hidden_layers": tuple(self.head.layers)}

    def _reads(self) -> str:
        stats = f" and log-prob statistics {self.head.logprob_stats}"
        return f"the {self.head.pooling!r} pooling" + (stats if self.head.logprob_stats else "")

    def score_drafted(self, message: AIMessage) -> float | None:
        states = (message.response_metadata or {}).get("hidden_states")
        if not isinstance(states, dict):
            return None
        return self.head.predict_drafted(states, calls=bool(message.tool_calls))

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> ProbeVerifier:
        """Load a probe folder written by :meth:`save_pretrained` (or :meth:`ProbeHead.save`)."""
        verifier = cls(ProbeHead.load(directory), **kwargs)
        verifier.adapter = str(directory)
        return verifier

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the head; the base model is named in it, not copied."""
        return self.head.save(directory)

    def features(
        self,
        context: Sequence[BaseMessage | dict[str, Any]],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> tuple[np.ndarray, int]:
        """The head's input features for each draft, and the number of tokens read."""
        model, tokenizer = self._model()
        rendered = [
            render_draft(tokenizer, context, tools, d, max_length=self.max_length) for d in drafts
        ]
        with self._lock:
            reading = read_drafts(
                model,
                tokenizer,
                rendered,
                self.head.layers,
                [self.head.pooling],
                batch_size=self.batch_size,
            )
        return self.head.inputs(reading), sum(len(r.input_ids) for r in rendered)

    def score_batch(
        self,
        context: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]],
        drafts: Sequence[Action],
    ) -> list[Verdict]:
        if not drafts:
            return []
        start = time.perf_counter()
        features, tokens = self.features(context, tools, drafts)
        calls = [isinstance(d, ToolCallsAction) for d in drafts]
        p_accept = self.head.predict(features, calls).tolist()
        record = CallRecord(
            role="verifier",
            model=self.name,
            purpose="verify",
            input_tokens=tokens,
            output_tokens=0,
            wall_s=time.perf_counter() - start,
        )
        return [Verdict(float(p), record if i == 0 else None) for i, p in enumerate(p_accept)]


def load_verifier(
    model: str,
    adapter: str | None = None,
    *,
    dtype: str = "bfloat16",
    device: str | None = None,
    max_length: int | None = None,
) -> Verifier:
    """The verifier a bundle's model spec names: with a probe folder as its adapter, a
    :class:`ProbeVerifier` reading ``model``; otherwise the LoRA ``TrainedVerifier``."""
    if is_probe(adapter):
        assert adapter is not None
        options: dict[str, Any] = {"max_length": max_length} if max_length is not None else {}
        return ProbeVerifier.from_pretrained(
            adapter, model=model, dtype=dtype, device=device, **options
        )
    from spec_tool_node.verifiers.trained import TrainedVerifier

    return TrainedVerifier(
        model=model, adapter=adapter, dtype=dtype, device=device, max_length=max_length
    )
