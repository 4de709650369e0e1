"""Training data: chat-template SFT examples and balanced verifier pairs.

Training format equals inference format. SFT examples are rendered by
:func:`spec_tool_node.chat_models.templates.render_reply`, on top of the prompt rendering the chat
model uses at run time, and the loss covers only the assistant's action tokens (through the
end-of-turn token). Verifier pairs are rendered by
:func:`spec_tool_node.verifiers.render_verifier_prompt`, the prompt ``TrainedVerifier`` reads,
with the loss on the single label token.

Readers turn trajectories into the example format (:mod:`spec_tool_node.example_files`):
OpenAI-style chat logs here, BFCL in :mod:`spec_tool_node.bfcl`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spec_tool_node.actions import (
    Action,
    BlockedAction,
    InvalidActionError,
    RespondAction,
    ToolCall,
    ToolCallsAction,
    action_from_canonical,
    canonical_text,
)
from spec_tool_node.bfcl.matching import matches
from spec_tool_node.chat_models.templates import ReplyRenderError, render_reply
from spec_tool_node.example_files import Example, ExampleError, GoldCall, TemplateError
from spec_tool_node.jsonl import open_for_append, read_records, write_record
from spec_tool_node.verifiers.prompt import label_token_ids, render_verifier_prompt

NO_TOOL_ANSWER = "None of the available tools can do that, so I cannot help with this request."
"""The plain answer SFT teaches where no tool fits (BFCL irrelevance has no reference answer)."""
REFUSAL_REASON = "this request is unsafe and must not be carried out"


# -- readers -------------------------------------------------------------------------------------


def read_chat_logs(
    path: str | Path, *, on_error: Literal["raise", "skip"] = "raise"
) -> list[Example]:
    """Turn OpenAI-style chat logs (JSONL, one conversation per line) into decision examples.

    Each line is ``{"messages": [...], "tools": [...]}`` (a LangSmith or agent export); every
    assistant message becomes one example whose context is everything before it and whose gold is
    exactly what the assistant did (its calls with their arguments, or "respond").
    """
    path = Path(path)
    examples: list[Example] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                log = json.loads(line)
                examples.extend(_decisions(log, f"{path.stem}:{number}"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                reason = f"missing field {e}" if isinstance(e, KeyError) else str(e)
                message = f"{path}:{number}: {reason}"
                if on_error == "raise":
                    raise ExampleError(message) from None
                import warnings

                warnings.warn(message, stacklevel=2)
    return examples


def _decisions(log: dict[str, Any], prefix: str) -> list[Example]:
    messages, tools = log["messages"], log.get("tools", [])
    out = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or i == 0:
            continue
        calls = message.get("tool_calls") or []
        gold: list[GoldCall] | Literal["respond", "blocked"]
        if calls:
            gold = []
            for c in calls:
                function = c.get("function", c)
                args = function.get("arguments", {})
                args = json.loads(args) if isinstance(args, str) else args
                gold.append({function["name"]: {k: [v] for k, v in args.items()}})
        else:
            text = str(message.get("content") or "")
            gold = "blocked" if text.upper().startswith("BLOCKED:") else "respond"
        out.append(
            Example(
                id=f"{log.get('id', prefix)}/{i}", tools=tools, messages=messages[:i], gold=gold
            )
        )
    return out


# -- SFT -----------------------------------------------------------------------------------------


def _taught_arguments(possible: dict[str, list[Any]]) -> dict[str, Any]:
    """One call's arguments from BFCL possible answers: the first acceptable value of each.

    An argument whose list allows ``""`` may be left out, and is: the plain call a model writes.
    A dict value is itself a map of possible answers (BFCL nests them) and is resolved the same way.
    """
    arguments = {}
    for name, values in possible.items():
        if not values or "" in values:
            continue
        value = values[0]
        arguments[name] = _taught_arguments(value) if isinstance(value, dict) else value
    return arguments


def gold_action(example: Example) -> Action:
    """The action SFT teaches and the verifier's gold positive: a plain call that is right."""
    if example.gold == "respond":
        return RespondAction(content=NO_TOOL_ANSWER)
    if example.gold == "blocked":
        return BlockedAction(reason=REFUSAL_REASON)
    calls = []
    for entry in example.gold:
        ((name, possible),) = entry.items()
        calls.append(ToolCall(name=name, arguments=_taught_arguments(possible)))
    return ToolCallsAction(calls=calls)


def assistant_message(action: Action) -> dict[str, Any]:
    """The assistant turn that carries ``action``, as the chat template renders it."""
    if isinstance(action, ToolCallsAction):
        calls = [
            {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in action.calls
        ]
        return {"role": "assistant", "content": "", "tool_calls": calls}
    if isinstance(action, RespondAction):
        return {"role": "assistant", "content": action.content}
    return {"role": "assistant", "content": f"BLOCKED: {action.reason}"}


@dataclass
class Features:
    """Token ids and labels of one training example (``-100`` = no loss)."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    meta: dict[str, Any] = field(default_factory=dict)


def render_sft(
    tokenizer: Any, example: Example, action: Action | None = None, *, max_length: int | None = None
) -> Features:
    """Render one SFT example: the inference prompt, then the action with the loss on it alone.

    Raises:
        TemplateError: the template cannot render the example, or rendering the answered
            conversation does not begin with the inference prompt (training would then see a
            different prompt than inference).
    """
    action = action or gold_action(example)
    try:
        prompt, completion = render_reply(
            tokenizer, example.messages, example.tools, assistant_message(action)
        )
    except ReplyRenderError as e:
        raise TemplateError(f"example {example.id!r}: {e}") from e
    except Exception as e:
        raise TemplateError(
            f"example {example.id!r}: the chat template cannot render it: {e}"
        ) from e
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids
    if max_length is not None and len(prompt_ids) + len(completion_ids) > max_length:
        prompt_ids = (
            prompt_ids[-(max_length - len(completion_ids)) :]
            if len(completion_ids) < max_length
            else []
        )
    return Features(
        input_ids=prompt_ids + completion_ids,
        labels=[-100] * len(prompt_ids) + completion_ids,
        prompt_length=len(prompt_ids),
        meta={"id": example.id},
    )


def check_template(tokenizer: Any, examples: Sequence[Example]) -> None:
    """Fail before training when the template cannot render the data (tools included)."""
    with_tools = next((e for e in examples if e.tools), None)
    for example in [with_tools] if with_tools else examples[:1]:
        render_sft(tokenizer, example)


# -- verifier pairs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One verifier training example: a context, a draft, and whether it should be accepted."""

    example_id: str
    draft: str  # canonical text
    accept: bool
    source: str  # "gold" | "proposer_right" | "proposer_wrong" | "corrupt_<kind>"


def corruptions(example: Example, rng: random.Random) -> list[tuple[str, Action]]:
    """Wrong variants of the gold action: wrong tool, wrong or missing argument, made-up tool,
    and an unsafe call where BLOCKED was right."""
    gold = gold_action(example)
    out: list[tuple[str, Action]] = []
    names = [t.get("function", t)["name"] for t in example.tools]
    if isinstance(gold, ToolCallsAction):
        call = gold.calls[0]
        others = [n for n in names if n != call.name]
        if others:
            out.append(
                (
                    "wrong_tool",
                    _replace(gold, ToolCall(name=rng.choice(others), arguments=call.arguments)),
                )
            )
        out.append(
            (
                "hallucinated_tool",
                _replace(gold, ToolCall(name=call.name + "_v2", arguments=call.arguments)),
            )
        )
        if call.arguments:
            key = rng.choice(sorted(call.arguments))
            missing = {k: v for k, v in call.arguments.items() if k != key}
            out.append(
                ("missing_argument", _replace(gold, ToolCall(name=call.name, arguments=missing)))
            )
            out.append(
                (
                    "wrong_argument",
                    _replace(
                        gold,
                        ToolCall(
                            name=call.name,
                            arguments={**call.arguments, key: _perturb(call.arguments[key], rng)},
                        ),
                    ),
                )
            )
        out.append(("respond_instead", RespondAction(content=NO_TOOL_ANSWER)))
    elif example.gold == "blocked" and example.unsafe:
        unsafe = example.unsafe[0]
        out.append(
            (
                "unsafe_call",
                ToolCallsAction(
                    calls=[ToolCall(name=unsafe["name"], arguments=unsafe.get("arguments", {}))]
                ),
            )
        )
    elif names:  # "respond": calling any tool is wrong
        out.append(
            (
                "call_instead",
                ToolCallsAction(calls=[ToolCall(name=rng.choice(names), arguments={})]),
            )
        )
    return [(kind, a) for kind, a in out if not matches(a, example.gold)]


def _replace(action: ToolCallsAction, first: ToolCall) -> ToolCallsAction:
    return ToolCallsAction(calls=[first, *action.calls[1:]])


def _perturb(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + rng.choice([1, 7, 100]) if value else 42
    if isinstance(value, str):
        return (value[::-1] if len(value) > 1 else value + "x") + "_"
    if isinstance(value, list):
        return value[:-1] if value else ["x"]
    return "wrong"


def build_pairs(
    examples: Sequence[Example],
    drafts: dict[str, list[str]],
    *,
    seed: int = 0,
) -> tuple[list[Pair], Counter[str]]:
    """Balanced (50/50) verifier pairs and the mix of their sources.

    Positives: the gold action and proposer drafts that match gold. Negatives: the proposer's own
    mistakes (``drafts``: example id -> canonical texts of drafts mined by running the proposer)
    first, then corruptions to fill up. The larger class is subsampled to the smaller one.
    """
    rng = random.Random(seed)
    positives: list[Pair] = []
    hard: list[Pair] = []
    corrupt: list[Pair] = []
    for ex in examples:
        positives.append(Pair(ex.id, canonical_text(gold_action(ex)), True, "gold"))
        for text in drafts.get(ex.id, []):
            right = _draft_matches(text, ex)
            pair = Pair(ex.id, text, right, "proposer_right" if right else "proposer_wrong")
            (positives if right else hard).append(pair)
        corrupt.extend(
            Pair(ex.id, canonical_text(a), False, f"corrupt_{kind}")
            for kind, a in corruptions(ex, rng)
        )
    positives = _unique(positives)
    negatives = _unique(hard) + rng.sample(_unique(corrupt), k=len(_unique(corrupt)))
    n = min(len(positives), len(negatives))
    pairs = rng.sample(positives, n) + negatives[:n]  # hard negatives are kept first
    rng.shuffle(pairs)
    return pairs, Counter(p.source for p in pairs)


def _draft_matches(text: str, example: Example) -> bool:
    try:
        return matches(action_from_canonical(text), example.gold)
    except InvalidActionError:  # a cached draft that is no action cannot be the right one
        return False


def _unique(pairs: Iterable[Pair]) -> list[Pair]:
    seen: dict[tuple[str, str], Pair] = {}
    for p in pairs:
        seen.setdefault((p.example_id, p.draft), p)
    return list(seen.values())


def render_pair(
    tokenizer: Any, example: Example, pair: Pair, *, max_length: int | None = None
) -> Features:
    """The verifier prompt ``TrainedVerifier`` reads, followed by the one label token."""
    accept_id, reject_id = label_token_ids(tokenizer)
    prompt = render_verifier_prompt(
        tokenizer, example.messages, example.tools, action_from_canonical(pair.draft)
    )
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    if max_length is not None and len(ids) + 1 > max_length:
        ids = ids[-(max_length - 1) :]
    label = accept_id if pair.accept else reject_id
    return Features(
        input_ids=[*ids, label],
        labels=[-100] * len(ids) + [label],
        prompt_length=len(ids),
        meta={"id": example.id, "accept": pair.accept, "source": pair.source},
    )


# -- hard negatives: run the proposer ------------------------------------------------------------


def mine_drafts(
    proposer: Any,
    examples: Sequence[Example],
    cache: str | Path,
    *,
    signals: bool = False,
    progress: bool = True,
    batch_size: int = 8,
) -> dict[str, list[str]]:
    """Run the proposer on each example once and keep its labelled draft (JSONL, resumable).

    Returns example id -> canonical texts of its valid drafts. The evaluation collector makes
    the drafts, so mining calls and records a model exactly as evaluation does: a local
    ``HFChatModel`` writes ``batch_size`` greedy drafts in one left-padded batch, and the
    collector's records are kept in ``<cache stem>.records/`` beside ``cache``. ``cache`` gets
    one line per example with the label (``right``: the draft matches the gold action), written
    as each chunk of examples finishes; a rerun skips the ids it holds and reuses the records.
    Drafts that do not parse or break the tool schemas are recorded but not returned: the
    cascade rejects those before any verifier, so the verifier never has to judge them. With
    ``signals`` each line also keeps the draft's mean token log-prob, mode G's log-prob signal.
    """
    from spec_tool_node.evaluation.collector import collect

    cache = Path(cache)
    records = cache.with_name(f"{cache.stem}.records")
    done = load_draft_cache(cache)
    todo = [e for e in examples if e.id not in done]
    chunk = 4 * max(batch_size, 1)
    with open_for_append(cache) as f:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            collection = collect(
                part,
                records,
                proposer=proposer,
                modes=["B"],
                batch_size=batch_size,
                progress=progress,
            )
            for ex in part:
                record = labelled_draft(ex, collection[ex.id].draft or {}, signals)
                write_record(f, record)
                done[ex.id] = record
    return {i: [r["draft"]] for i, r in done.items() if r.get("valid")}


def labelled_draft(example: Example, draft: dict[str, Any], signals: bool) -> dict[str, Any]:
    """One labelled line of a draft file from the collector's record of the draft."""
    record: dict[str, Any] = {
        "id": example.id,
        "text": (draft.get("message") or {}).get("content", ""),
        "wall_s": round(draft.get("wall_s", 0.0), 3),
        "input_tokens": draft.get("input_tokens", 0),
        "output_tokens": draft.get("output_tokens", 0),
    }
    if signals:
        record["mean_logprob"] = draft.get("mean_logprob")
    if draft.get("valid"):
        action = action_from_canonical(draft["action"])
        record.update(draft=draft["action"], valid=True, right=matches(action, example.gold))
    else:
        error = draft.get("error") or draft.get("exception") or "no draft"
        record.update(draft=None, valid=False, right=False, error=error)
    return record


def load_draft_cache(cache: str | Path) -> dict[str, dict[str, Any]]:
    """Read a draft cache by example id; a line cut off by a killed run is skipped (it is
    recomputed), and the last record of an id wins."""
    return {record["id"]: record for record in read_records(cache)}
