"""Collect every model output an evaluation needs once per example, into a resumable cache.

For each example the cache holds:

- ``proposer``: the proposer's greedy draft with its mean token log-prob (and, on request, its last
  hidden state), tokens and wall time;
- ``samples``: ``n_drafts - 1`` sampled drafts for mode E (drawn with ``sample_kwargs``);
- ``verifier``: the trained verifier's p(ACCEPT) of the greedy draft alone (mode D) and of the
  batch of valid drafts (mode E), each with the call's record;
- ``judge``: the prompted strong judge's verdict on the greedy draft (mode C);
- ``strong``: the strong model's own action (modes A, C, D, E and the oracle router).

One JSONL file per (role, model key) under the cache folder, keyed by example id, appended and
flushed after every example. A rerun computes only what is missing (a killed run's half-written
last line is skipped, and cut off before the next append: :mod:`spec_tool_node.jsonl`); the last
line of an id wins, so a record is updated by appending it again. Scores are stored with the
draft texts they scored and are recomputed when the drafts change. The verifier and judge files
are named after the proposer too, since they score its drafts.

All calls go through the real classes (any ``BaseChatModel`` and :class:`Verifier`), called the
way :class:`~spec_tool_node.node.SpeculativeActionNode` calls them: tools bound with
``bind_tools``, sampled drafts with ``.bind(**sample_kwargs)``, the verifier on the function
schemas, the judge as :class:`~spec_tool_node.verifiers.judge.ChatModelVerifier` of the strong
model. An exception in a call is recorded (the cascade turns it into a reject); pass
``retry_errors=True`` to compute such records again.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, convert_to_messages
from langgraph.errors import GraphBubbleUp

from spec_tool_node.actions import (
    InvalidActionError,
    action_from_message,
    canonical_text,
    tool_schemas,
    validate_action,
)
from spec_tool_node.cascade import can_continue
from spec_tool_node.config import CascadeConfig
from spec_tool_node.errors import ConfigError, SpecToolNodeError
from spec_tool_node.example_files import Example
from spec_tool_node.jsonl import open_for_append, read_records, write_record
from spec_tool_node.modes import MODES, mode_letter
from spec_tool_node.node import model_name
from spec_tool_node.verifiers.base import Verifier
from spec_tool_node.verifiers.judge import ChatModelVerifier

ROLES = ("proposer", "samples", "verifier", "judge", "strong", "continued")
"""The cache files of one configuration."""


class CacheMissingError(SpecToolNodeError, LookupError):
    """The cache lacks an output the simulation needs (and no model was given to compute it)."""


# -- model keys -----------------------------------------------------------------------------------


def adapter_fingerprint(adapter: str) -> str:
    """What a cache key holds of an adapter: a local folder's (or file's) content, else the
    name as given (a hub id).

    Content, not the path: the key is then the same in every checkout (a bundle's adapter is
    resolved to an absolute path) and changes when an adapter is retrained in place, so stale
    scores are never read back. Documentation files (``*.md``) are left out.
    """
    path = Path(adapter)
    if not path.exists():
        return adapter
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        if file.suffix != ".md":
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()[:16]


def model_key(name: str, adapter: str | None = None) -> str:
    """A file-safe key for one model configuration: readable name + hash of the name and the
    adapter's content (:func:`adapter_fingerprint`).

    Two adapters on one base model get different keys; one adapter gets the same key wherever
    it lies.
    """
    full = f"{name}@{adapter_fingerprint(adapter)}" if adapter else name
    readable = Path(name.rstrip("/")).name or name
    if adapter:
        readable += "@" + (Path(str(adapter).rstrip("/")).name or "adapter")
    slug = re.sub(r"[^A-Za-z0-9._@-]+", "_", readable).strip("_")[:60] or "model"
    return f"{slug}-{hashlib.sha1(full.encode()).hexdigest()[:8]}"


def key_of(model: Any) -> str:
    """The key of a chat model or verifier: its name and, where it has one, its adapter."""
    if isinstance(model, ChatModelVerifier):
        return key_of(model.model)
    name = model_name(model)
    if getattr(model, "float32_logits", False) is True:  # breaks bf16 near-ties differently
        name += "-fp32logits"
    adapter = getattr(model, "adapter", None)
    return model_key(name, adapter if isinstance(adapter, str) else None)


@dataclass(frozen=True)
class ModelKeys:
    """The keys that name the cache files; ``judge`` defaults to the strong model's key."""

    proposer: str | None = None
    strong: str | None = None
    verifier: str | None = None
    judge: str | None = None

    def path(self, directory: str | Path, role: str) -> Path:
        """The cache file of ``role`` (raises when the keys it needs are not set)."""
        directory = Path(directory)
        judge = self.judge or self.strong
        needed = {
            "proposer": [self.proposer],
            "samples": [self.proposer],
            "verifier": [self.verifier, self.proposer],
            "judge": [judge, self.proposer],
            "strong": [self.strong],
            "continued": [self.strong, self.proposer],
        }[role]
        if any(k is None for k in needed):
            raise ValueError(f"the cache file of {role!r} needs model keys that were not given")
        if role in ("verifier", "judge", "continued"):
            return directory / f"{role}--{needed[0]}--on--{self.proposer}.jsonl"
        return directory / f"{role}--{needed[0]}.jsonl"


# -- records --------------------------------------------------------------------------------------


def message_record(
    message: AIMessage,
    tools: dict[str, dict[str, Any]],
    *,
    wall_s: float = 0.0,
    model_name: str | None = None,
) -> dict[str, Any]:
    """What the cache keeps of one model reply: the message itself (rebuildable), its action in
    canonical text (or why it is invalid), tokens, wall time and the proposer's signals."""
    usage = message.usage_metadata or {}
    metadata = message.response_metadata or {}
    record: dict[str, Any] = {
        "message": {
            "content": message.text,
            "tool_calls": [{"name": c["name"], "args": c["args"]} for c in message.tool_calls],
            "invalid_tool_calls": [
                {"name": c.get("name"), "args": c.get("args"), "error": c.get("error")}
                for c in message.invalid_tool_calls
            ],
        },
        "model_name": metadata.get("model_name") or model_name,
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "wall_s": wall_s,
        "mean_logprob": _mean_logprob(metadata),
    }
    if cached := (usage.get("input_token_details") or {}).get("cache_read"):
        record["cached_tokens"] = cached
    record.update({k: metadata[k] for k in _KEPT_METADATA if metadata.get(k) is not None})
    try:
        action = action_from_message(message)
    except InvalidActionError as e:
        record.update(action=None, valid=False, error=f"invalid: {e}")
        return record
    record["action"] = canonical_text(action)
    try:
        validate_action(action, tools)
        record.update(valid=True, error=None)
    except InvalidActionError as e:
        record.update(valid=False, error=f"invalid: {e}")
    return record


def exception_record(error: Exception, wall_s: float, model_name: str | None) -> dict[str, Any]:
    """A call that raised: the cascade records it as ``error: Type: message``."""
    return {
        "exception": f"error: {type(error).__name__}: {error}",
        "model_name": model_name,
        "input_tokens": 0,
        "output_tokens": 0,
        "wall_s": wall_s,
        "action": None,
        "valid": False,
    }


_KEPT_METADATA = ("raw_text", "end_text", "logprobs", "hidden_states", "lossless")
"""Reply metadata the cache keeps as it is: the exact text a draft's check teacher-forces, the
token log-probs and pooled hidden states mode G reads, and what a continuation of a draft kept."""


def rebuild_message(record: dict[str, Any]) -> AIMessage:
    """The AIMessage a cached reply came from (fresh call ids; usage, model name, raw text,
    log-probs and a continuation's counts kept)."""
    m = record["message"]
    calls = [
        {"name": c["name"], "args": c["args"], "id": f"call_cached_{i}", "type": "tool_call"}
        for i, c in enumerate(m["tool_calls"])
    ]
    invalid = [
        {**c, "id": f"call_cached_invalid_{i}", "type": "invalid_tool_call"}
        for i, c in enumerate(m["invalid_tool_calls"])
    ]
    tokens_in, tokens_out = record.get("input_tokens", 0), record.get("output_tokens", 0)
    return AIMessage(
        content=m["content"],
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata={
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "input_token_details": {"cache_read": record.get("cached_tokens", 0)},
        },
        response_metadata={
            **({"model_name": record["model_name"]} if record.get("model_name") else {}),
            **{k: record[k] for k in _KEPT_METADATA if record.get(k) is not None},
        },
    )


def _mean_logprob(metadata: dict[str, Any]) -> float | None:
    """Mean token log-prob from HFChatModel's or OpenAI's ``logprobs`` metadata, if present."""
    logprobs = metadata.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    if isinstance(logprobs.get("mean"), int | float):
        return float(logprobs["mean"])
    values = [t.get("logprob") for t in logprobs.get("content") or [] if isinstance(t, dict)]
    values = [v for v in values if isinstance(v, int | float)]
    return sum(values) / len(values) if values else None


def valid_texts(records: Iterable[dict[str, Any] | None]) -> list[str]:
    """Canonical texts of the valid drafts among ``records``, in order (what a verifier scores)."""
    return [r["action"] for r in records if r is not None and r.get("valid")]


# -- the collection ------------------------------------------------------------------------------


@dataclass
class Collected:
    """Everything cached for one example (``None`` where a role was not collected)."""

    draft: dict[str, Any] | None = None
    samples: list[dict[str, Any]] | None = None
    verifier: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    strong: dict[str, Any] | None = None
    continued: dict[str, Any] | None = None
    """The strong model's continuation of the greedy draft (mode F and speculative fallbacks),
    a :func:`message_record` of ``HFChatModel.continue_draft``'s reply."""
    continuations: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Continuations of sampled drafts, by the :func:`draft_text` of the draft continued: mode
    E's speculative fallback continues the best-scored draft, which may be a sample."""


@dataclass
class Collection:
    """The cache of one configuration, read into memory: example id -> :class:`Collected`."""

    directory: Path
    keys: ModelKeys
    records: dict[str, Collected] = field(default_factory=dict)

    def __getitem__(self, example_id: str) -> Collected:
        return self.records.setdefault(example_id, Collected())


def load_collection(directory: str | Path, keys: ModelKeys) -> Collection:
    """Read the cache files of ``keys`` (missing files are empty) into a :class:`Collection`."""
    collection = Collection(Path(directory), keys)
    for role in ROLES:
        try:
            path = keys.path(directory, role)
        except ValueError:
            continue
        if not path.exists():
            continue
        if role == "continued":  # a continuation per draft continued, the greedy one's last
            for line in read_records(path):
                record = {**line["continued"], "of": line.get("of")}
                if line.get("sample"):
                    collection[line["id"]].continuations[record["of"]] = record
                else:
                    collection[line["id"]].continued = record
            continue
        for example_id, line in {r["id"]: r for r in read_records(path)}.items():
            value = {
                "proposer": lambda r: r["draft"],
                "samples": lambda r: r["samples"],
                "verifier": lambda r: r,
                "judge": lambda r: r,
                "strong": lambda r: r["act"],
            }[role](line)
            setattr(collection[example_id], "draft" if role == "proposer" else role, value)
    return collection


@dataclass(frozen=True)
class Needs:
    """Which outputs the requested modes need."""

    draft: bool
    samples: int
    verifier_single: bool
    verifier_batch: bool
    judge: bool
    strong: bool
    continued: bool = False
    """The strong model's continuation of the greedy draft (mode F; the speculative fallback of
    a mode with one draft)."""
    continued_best: bool = False
    """The strong model's continuation of each example's best-scored draft, which a sample may
    be (mode E's speculative fallback)."""

    @classmethod
    def of(cls, modes: Iterable[str], n_drafts: int, continue_fallbacks: bool = False) -> Needs:
        """Read off :data:`MODES`: what each mode drafts, who scores the drafts, who acts.

        ``continue_fallbacks``: also the strong model's continuations that the speculative
        fallbacks of the modes that score drafts read (a local strong model continues its best
        draft on reject, live); without them a replay falls back to the strong action.
        """
        specs = [MODES[mode_letter(m)] for m in modes]
        fallbacks = [  # the modes that score drafts and fall back to a strong model
            s
            for s in specs
            if continue_fallbacks and s.has_strong and s.scorer not in ("none", "lossless")
        ]
        counts = [s.draft_count(n_drafts) for s in specs]
        scored_by = [(s.scorer, c) for s, c in zip(specs, counts, strict=True)]
        return cls(
            draft=any("proposer" in s.requires for s in specs),
            samples=max([c - 1 for c in counts if c > 1], default=0),
            verifier_single=("verifier", 1) in scored_by,
            verifier_batch=any(who == "verifier" and c > 1 for who, c in scored_by),
            judge=any(who == "judge" for who, _ in scored_by),
            strong=any("strong" in s.requires for s in specs),
            continued=any(s.scorer == "lossless" for s in specs)
            or any(s.draft_count(n_drafts) == 1 for s in fallbacks),
            continued_best=any(s.draft_count(n_drafts) > 1 for s in fallbacks),
        )


def _failed(part: dict[str, Any] | None, retry_errors: bool) -> bool:
    return part is None or (retry_errors and bool(part.get("exception")))


def missing(
    collected: Collected,
    needs: Needs,
    sample_kwargs: dict[str, Any],
    *,
    retry_errors: bool = False,
) -> set[str]:
    """The tasks still to do for one example: ``draft``, ``samples``, ``verifier``, ``judge``,
    ``strong``, ``continued`` (the greedy draft's continuation), ``continued_best`` (the best
    draft's, decided once its scores are known). A score or continuation is missing when the
    drafts it was made from have changed."""
    todo: set[str] = set()
    if needs.draft and _failed(collected.draft, retry_errors):
        todo.add("draft")
    samples = collected.samples or []
    if needs.samples and (
        len(samples) < needs.samples
        or any(s.get("sample_kwargs") != sample_kwargs for s in samples[: needs.samples])
        or any(_failed(s, retry_errors) for s in samples[: needs.samples])
    ):
        todo.add("samples")
    if needs.strong and _failed(collected.strong, retry_errors):
        todo.add("strong")
    if needs.continued and (
        "draft" in todo
        or _failed(collected.continued, retry_errors)
        or collected.continued.get("of") != draft_text(collected.draft)
    ):
        todo.add("continued")
    if todo & {"draft", "samples"}:  # scores of drafts not made yet are missing too
        if needs.verifier_single or needs.verifier_batch:
            todo.add("verifier")
        if needs.judge:
            todo.add("judge")
        if needs.continued_best:
            todo.add("continued_best")
        return todo
    greedy = valid_texts([collected.draft])
    batch = valid_texts([collected.draft, *samples[: needs.samples]])
    v = collected.verifier or {}
    if (needs.verifier_single and greedy and _stale(v.get("single"), greedy, retry_errors)) or (
        needs.verifier_batch and batch and _stale(v.get("batch"), batch, retry_errors)
    ):
        todo.add("verifier")
    if needs.judge and greedy and _stale(collected.judge, greedy, retry_errors):
        todo.add("judge")
    if needs.continued_best and (
        "verifier" in todo or _continuation_missing(collected, needs, retry_errors)
    ):
        todo.add("continued_best")
    return todo


def best_draft(
    records: Sequence[dict[str, Any] | None], p: Sequence[float]
) -> dict[str, Any] | None:
    """The draft a speculative fallback continues, as :func:`~spec_tool_node.cascade.decide`
    picks it: the first valid draft with the highest score ``p`` (one per valid draft, in
    order), else the first draft that has a reply (``None``: the strong model writes alone)."""
    valid = [r for r in records if r is not None and r.get("valid")]
    if valid:  # scores clamped to [0, 1], as the replay hands them to decide()
        return valid[max(range(len(valid)), key=lambda i: min(max(float(p[i]), 0.0), 1.0))]
    return next((r for r in records if draft_text(r) is not None), None)


def _best_of(collected: Collected, needs: Needs) -> dict[str, Any] | None:
    """The best draft under the cached batch scores (``None``: none to continue, or the valid
    drafts are not scored yet)."""
    records = [collected.draft, *(collected.samples or [])[: needs.samples]]
    scored = (collected.verifier or {}).get("batch")
    texts = valid_texts(records)
    if texts and (scored is None or scored.get("drafts") != texts):
        return None
    return best_draft(records, scored["p"] if texts and scored else [])


def _continuation_missing(collected: Collected, needs: Needs, retry_errors: bool) -> bool:
    """Whether the continuation the best draft's fallback reads is absent, of another draft, or
    a failure to compute again (``retry_errors``)."""
    best = _best_of(collected, needs)
    if best is None:
        return False
    if best is collected.draft:
        record = collected.continued
        return _failed(record, retry_errors) or record.get("of") != draft_text(best)
    return _failed(collected.continuations.get(draft_text(best) or ""), retry_errors)


def draft_text(draft: dict[str, Any] | None) -> str | None:
    """What identifies the draft a continuation checked: the raw text a local proposer wrote,
    else the draft's action (None: the proposer failed, nothing was checked)."""
    if draft is None or draft.get("exception"):
        return None
    if draft.get("raw_text") is None:
        return draft.get("action") or draft["message"]["content"]
    return draft["raw_text"] + (draft.get("end_text") or "")


def _stale(scored: dict[str, Any] | None, drafts: list[str], retry_errors: bool) -> bool:
    return _failed(scored, retry_errors) or scored.get("drafts") != drafts


def context_of(example: Example, system_prompt: str | None = None) -> list[BaseMessage]:
    """The conversation as the node sees it: LangChain messages, after an optional system prompt."""
    messages = convert_to_messages(example.messages)
    return [SystemMessage(system_prompt), *messages] if system_prompt else list(messages)


def collect(
    examples: Sequence[Example],
    cache_dir: str | Path,
    *,
    proposer: BaseChatModel | None = None,
    strong: BaseChatModel | None = None,
    verifier: Verifier | None = None,
    judge: Verifier | None = None,
    keys: ModelKeys | None = None,
    config: CascadeConfig | None = None,
    modes: Iterable[str] = "ABCDE",
    hidden_layers: Sequence[int] = (),
    system_prompt: str | None = None,
    progress: bool = True,
    retry_errors: bool = False,
    batch_size: int = 1,
    continue_fallbacks: bool = False,
) -> Collection:
    """Compute what the cache lacks for ``modes`` on ``examples``, and return the whole cache.

    Args:
        proposer, strong, verifier: the models; only those whose outputs are missing are
            called, so a complete cache needs none (give ``keys`` then).
        judge: the mode-C judge (default: ``ChatModelVerifier(strong)``, as the node builds it).
        keys: cache file keys (default: :func:`key_of` each model given).
        config: ``n_drafts`` and ``sample_kwargs`` of mode E (default ``CascadeConfig()``).
        hidden_layers: also keep, per layer, the mean of the hidden states that wrote the
            proposer's greedy draft (``HFChatModel``'s ``hidden_layers``: what a mode-G probe
            reads).
        system_prompt: prepended for every call, as the node's ``system_prompt``.
        retry_errors: compute records that hold an exception again.
        batch_size: examples whose greedy drafts and strong actions a local model
            (``HFChatModel``) writes in one left-padded batch; each example's wall time is the
            batch's divided evenly. Greedy actions stay the ones written one at a time, up to
            floating-point near-ties. Other models are called one example at a time.
        continue_fallbacks: also collect the strong model's continuation of the draft each
            speculative fallback continues (modes C, D, E, G; the strong model must be a local
            ``HFChatModel``), so their replays price a fallback as the live cascade pays it;
            without, a replayed fallback is the strong model's action from scratch.

    Raises:
        CacheMissingError: an output is missing and the model that makes it was not given.
    """
    config = config or CascadeConfig()
    modes = list(modes)
    needs = Needs.of(modes, config.n_drafts, continue_fallbacks)
    keys = keys or ModelKeys(
        proposer=key_of(proposer) if proposer is not None else None,
        strong=key_of(strong) if strong is not None else None,
        verifier=key_of(verifier) if verifier is not None else None,
        judge=key_of(judge) if judge is not None else None,
    )
    if judge is None and strong is not None:
        judge = ChatModelVerifier(strong)
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    collection = load_collection(directory, keys)
    kwargs = dict(config.sample_kwargs)
    plans = {
        ex.id: missing(collection[ex.id], needs, kwargs, retry_errors=retry_errors)
        for ex in examples
    }
    todo = [ex for ex in examples if plans[ex.id]]
    if not todo:
        return collection
    _check_models(todo, plans, proposer=proposer, strong=strong, verifier=verifier, judge=judge)
    from tqdm.auto import tqdm

    runner = _Runner(
        proposer, strong, verifier, judge, needs, kwargs, tuple(hidden_layers), system_prompt
    )
    runner.retry_errors = retry_errors
    files: dict[str, Any] = {}
    try:
        for i, ex in enumerate(tqdm(todo, desc="collecting", unit="example", disable=not progress)):
            if batch_size > 1 and i % batch_size == 0:
                runner.prefetch(todo[i : i + batch_size], plans)
            for role, line in runner.run(ex, collection[ex.id], plans[ex.id]):
                if role not in files:
                    files[role] = open_for_append(keys.path(directory, role))
                write_record(files[role], {"id": ex.id, **line})
    finally:
        for f in files.values():
            f.close()
    return collection


TASK_MODEL = {
    "draft": "proposer",
    "samples": "proposer",
    "verifier": "verifier",
    "judge": "judge",
    "strong": "strong",
    "continued": "strong",
    "continued_best": "strong",
}
"""Which model computes each task of :func:`missing` (the judge is the strong model unless
another is given)."""


def _check_models(todo: list[Example], plans: dict[str, set[str]], **models: Any) -> None:
    """Fail before the first call: a missing model, or a strong model asked to continue drafts
    that cannot (each continuation would otherwise be recorded as a failed call).

    Raises:
        CacheMissingError: outputs are missing and the model that makes them was not given.
        ConfigError: continuations are missing and the strong model cannot continue a draft.
    """
    for task, role in TASK_MODEL.items():
        count = sum(task in plans[ex.id] for ex in todo)
        if count and models[role] is None:
            what = "strong" if role == "judge" else role
            raise CacheMissingError(
                f"the cache lacks {task} outputs for {count} example(s) and no {what} model "
                f"was given to compute them"
            )
        if count and task.startswith("continued") and not can_continue(models["strong"]):
            raise ConfigError(
                f"the cache lacks {task} outputs for {count} example(s) (mode F, or "
                "continue_fallbacks / --continue-fallbacks) and the strong model "
                f"{model_name(models['strong'])!r} cannot continue a draft: that needs a "
                "local HFChatModel; collect without continue_fallbacks to replay each "
                "fallback as the strong model's action from scratch"
            )


class _Runner:
    """Calls the models for one example the way the node calls them."""

    def __init__(
        self,
        proposer: BaseChatModel | None,
        strong: BaseChatModel | None,
        verifier: Verifier | None,
        judge: Verifier | None,
        needs: Needs,
        sample_kwargs: dict[str, Any],
        hidden_layers: tuple[int, ...],
        system_prompt: str | None,
    ) -> None:
        from spec_tool_node.chat_models.hf import HFChatModel

        self.proposer, self.strong, self.verifier, self.judge = proposer, strong, verifier, judge
        self.needs, self.sample_kwargs = needs, sample_kwargs
        self.system_prompt = system_prompt
        self.retry_errors = False
        self.local = isinstance(proposer, HFChatModel)
        self.signals = (
            {"return_logprobs": True, "hidden_layers": hidden_layers} if self.local else {}
        )
        self.proposer_name = model_name(proposer) if proposer is not None else None
        self.strong_name = model_name(strong) if strong is not None else None
        self.ready: dict[tuple[str, str], dict[str, Any]] = {}
        """Records a batch computed ahead, by (task, example id)."""

    def prefetch(self, examples: Sequence[Example], plans: dict[str, set[str]]) -> None:
        """Greedy drafts and strong actions of ``examples`` in left-padded batches, where the
        model can (``invoke_many``); a batch that fails leaves each example to its own call."""
        for task, model, name, options in (
            ("draft", self.proposer, self.proposer_name, self.signals),
            ("strong", self.strong, self.strong_name, {}),
        ):
            chosen = [ex for ex in examples if task in plans[ex.id]]
            if len(chosen) < 2 or not hasattr(model, "invoke_many"):
                continue
            tools = [tool_schemas(ex.tools) for ex in chosen]
            tool_sets = [[{"type": "function", "function": f} for f in t.values()] for t in tools]
            start = time.perf_counter()
            try:
                replies = model.invoke_many(
                    [context_of(ex, self.system_prompt) for ex in chosen], tool_sets, **options
                )
            except GraphBubbleUp:
                raise
            except Exception:  # nothing is lost: run() then calls each example on its own
                continue
            wall = (time.perf_counter() - start) / len(chosen)
            for ex, schemas, reply in zip(chosen, tools, replies, strict=True):
                record = message_record(reply, schemas, wall_s=wall, model_name=name)
                self.ready[(task, ex.id)] = record

    def run(
        self, ex: Example, collected: Collected, tasks: set[str]
    ) -> Iterable[tuple[str, dict[str, Any]]]:
        context = context_of(ex, self.system_prompt)
        tools = tool_schemas(ex.tools)
        tool_list = [{"type": "function", "function": f} for f in tools.values()]
        if "draft" in tasks:
            collected.draft = self.ready.pop(("draft", ex.id), None) or self._draft(
                context, tools, tool_list
            )
            yield "proposer", {"draft": collected.draft}
        if "samples" in tasks:
            collected.samples = self._samples(context, tools, tool_list, collected.samples or [])
            yield "samples", {"samples": collected.samples}
        samples = (collected.samples or [])[: self.needs.samples]
        if "verifier" in tasks and valid_texts([collected.draft, *samples]):
            collected.verifier = self._verifier(context, tools, collected, samples)
            yield "verifier", collected.verifier
        greedy = valid_texts([collected.draft])
        if "judge" in tasks and greedy:  # the judge sees only a valid greedy draft (mode C)
            collected.judge = self._score(self.judge, context, tools, greedy)
            yield "judge", collected.judge
        if "strong" in tasks:
            collected.strong = self.ready.pop(("strong", ex.id), None) or self._act(
                context, tools, tool_list
            )
            yield "strong", {"act": collected.strong}
        if "continued" in tasks:
            collected.continued = self._continue(context, tools, tool_list, collected.draft)
            yield "continued", {"continued": collected.continued, "of": collected.continued["of"]}
        if "continued_best" in tasks and _continuation_missing(
            collected, self.needs, self.retry_errors
        ):
            best = _best_of(collected, self.needs)
            record = self._continue(context, tools, tool_list, best)
            if best is collected.draft:
                collected.continued = record
                yield "continued", {"continued": record, "of": record["of"]}
            else:
                collected.continuations[record["of"]] = record
                yield "continued", {"continued": record, "of": record["of"], "sample": True}

    def _bound(self, model: BaseChatModel, tool_list: list[dict[str, Any]]) -> Any:
        return model.bind_tools(tool_list) if tool_list else model

    def _call(
        self, runnable: Any, context: list[BaseMessage], tools: dict, name: str | None, **kw: Any
    ) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            message = runnable.invoke(context, **kw)
        except GraphBubbleUp:
            raise
        except Exception as e:
            return exception_record(e, time.perf_counter() - start, name)
        return message_record(message, tools, wall_s=time.perf_counter() - start, model_name=name)

    def _draft(self, context: list[BaseMessage], tools: dict, tool_list: list) -> dict[str, Any]:
        assert self.proposer is not None
        runnable = self._bound(self.proposer, tool_list)
        return self._call(runnable, context, tools, self.proposer_name, **self.signals)

    def _samples(
        self, context: list[BaseMessage], tools: dict, tool_list: list, have: list[dict]
    ) -> list[dict[str, Any]]:
        assert self.proposer is not None
        kept = [
            s
            for s in have[: self.needs.samples]
            if s.get("sample_kwargs") == self.sample_kwargs
            and not (self.retry_errors and s.get("exception"))
        ]
        count = self.needs.samples - len(kept)
        if self.local and count > 1:  # one generate call with n sequences
            new = self._local_samples(context, tools, tool_list, count)
        else:
            runnable = self._bound(self.proposer, tool_list).bind(**self.sample_kwargs)
            new = [self._call(runnable, context, tools, self.proposer_name) for _ in range(count)]
        return [*kept, *({**s, "sample_kwargs": self.sample_kwargs} for s in new)]

    def _local_samples(
        self, context: list[BaseMessage], tools: dict, tool_list: list, count: int
    ) -> list[dict[str, Any]]:
        """HFChatModel samples ``count`` drafts in one ``generate`` (``n``); wall time is split
        evenly and each draft keeps its own token counts, as separate calls would have."""
        assert self.proposer is not None
        options: dict[str, Any] = {**self.sample_kwargs, "n": count}
        if tool_list:
            options.update(tools=tool_list, tool_choice=None)
        start = time.perf_counter()
        try:
            result = self.proposer.generate([context], **options)
        except GraphBubbleUp:
            raise
        except Exception as e:
            wall = (time.perf_counter() - start) / count
            return [exception_record(e, wall, self.proposer_name) for _ in range(count)]
        wall = (time.perf_counter() - start) / count
        return [
            message_record(g.message, tools, wall_s=wall, model_name=self.proposer_name)
            for g in result.generations[0]
        ]

    def _verifier(
        self,
        context: list[BaseMessage],
        tools: dict,
        collected: Collected,
        samples: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Score what is stale: the greedy draft alone (mode D), the valid drafts (mode E)."""
        single = valid_texts([collected.draft]) if self.needs.verifier_single else []
        batch = valid_texts([collected.draft, *samples]) if self.needs.verifier_batch else []
        record: dict[str, Any] = dict(collected.verifier or {})
        if single and _stale(record.get("single"), single, self.retry_errors):
            record["single"] = self._score(self.verifier, context, tools, single)
        if batch and _stale(record.get("batch"), batch, self.retry_errors):
            same = record.get("single") is not None and record["single"]["drafts"] == batch
            record["batch"] = (
                record["single"] if same else self._score(self.verifier, context, tools, batch)
            )
        return record

    def _score(
        self, scorer: Verifier | None, context: list[BaseMessage], tools: dict, drafts: list[str]
    ) -> dict[str, Any]:
        """One ``score_batch`` call on ``drafts`` (canonical texts), as the cascade makes it."""
        from spec_tool_node.actions import action_from_canonical

        assert scorer is not None
        start = time.perf_counter()
        try:
            verdicts = scorer.score_batch(
                context, list(tools.values()), [action_from_canonical(d) for d in drafts]
            )
        except GraphBubbleUp:
            raise
        except Exception as e:
            return {
                "drafts": drafts,
                "p": [0.0] * len(drafts),
                "records": [],
                "exception": f"error: {type(e).__name__}: {e}",
                "wall_s": time.perf_counter() - start,
            }
        records = [v.record.model_dump(mode="json") for v in verdicts if v.record is not None]
        return {
            "drafts": drafts,
            "p": [float(v.p_accept) for v in verdicts],
            "records": records,
            "exception": None,
            "wall_s": time.perf_counter() - start,
        }

    def _continue(
        self,
        context: list[BaseMessage],
        tools: dict,
        tool_list: list,
        draft: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The strong model's reply written by checking ``draft`` (the greedy draft for mode F,
        the best-scored one for a speculative fallback); a proposer that failed left nothing to
        check, so the strong model writes alone, as live."""
        assert self.strong is not None
        text = draft_text(draft)
        start = time.perf_counter()
        try:
            if draft is None or draft.get("exception"):
                message = self._bound(self.strong, tool_list).invoke(context)
            else:  # the rebuilt reply carries the raw text a local proposer wrote
                message = self.strong.continue_draft(context, rebuild_message(draft), tool_list)
        except GraphBubbleUp:
            raise
        except Exception as e:
            record = exception_record(e, time.perf_counter() - start, self.strong_name)
        else:
            wall = time.perf_counter() - start
            record = message_record(message, tools, wall_s=wall, model_name=self.strong_name)
        return {**record, "of": text}

    def _act(self, context: list[BaseMessage], tools: dict, tool_list: list) -> dict[str, Any]:
        assert self.strong is not None
        return self._call(self._bound(self.strong, tool_list), context, tools, self.strong_name)
