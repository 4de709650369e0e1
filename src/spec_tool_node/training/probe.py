"""Probe training: cached hidden-state features, the head, and its choice by grouped validation.

Features are extracted once per (example, draft) with a frozen base model and cached on disk in
chunks (``.npz``, float16, resumable: a rerun extracts only what is missing); every layer and every
pooling is kept, so choosing among them costs no further forward pass. The layer, pooling, head
and regularisation are chosen by cross-validated AUROC on the training split only, with folds
grouped so that drafts sharing a tool (BFCL's function groups) never sit on both sides of a fold.
The chosen head is then fit on all training drafts; its out-of-fold scores are what a threshold is
calibrated on, since in-sample scores of a fitted head are optimistic.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spec_tool_node.actions import action_from_canonical
from spec_tool_node.errors import SpecToolNodeError
from spec_tool_node.example_files import Example
from spec_tool_node.jsonl import atomic_file
from spec_tool_node.verifiers.probe import (
    LOGPROB_STATS,
    POOLINGS,
    ProbeHead,
    read_drafts,
    render_draft,
)

META_FILE = "features.json"


class ProbeTrainingError(SpecToolNodeError, ValueError):
    """Drafts, labels or a feature cache that cannot train the probe asked for (the CLI prints
    the message instead of a traceback)."""


# -- features ------------------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Pooled hidden states of drafts: ``features[i, pooling, layer]`` is one vector."""

    base_model: str
    layers: list[int]
    poolings: list[str]
    ids: list[str]
    drafts: list[str]
    features: np.ndarray
    """``[n, len(poolings), len(layers), hidden]``, float16 on disk."""
    logprobs: np.ndarray | None = None
    """``[n, len(LOGPROB_STATS)]`` draft log-prob statistics; ``None`` in a cache made before
    they were recorded."""

    def matrix(self, layers: Sequence[int], pooling: str, stats: Sequence[str] = ()) -> np.ndarray:
        """``[n, len(layers) * hidden + len(stats)]`` float64 features of one configuration.

        Raises:
            ValueError: ``stats`` are asked of a cache that lacks them.
        """
        p = self.poolings.index(pooling)
        columns = [self.features[:, p, self.layers.index(layer)] for layer in layers]
        if stats:
            if self.logprobs is None:
                raise ProbeTrainingError(
                    "this feature cache has no log-prob statistics (made before they were "
                    "recorded): extract the features again into a new folder"
                )
            columns.append(self.logprobs[:, [LOGPROB_STATS.index(s) for s in stats]])
        return np.concatenate(columns, axis=1).astype(np.float64)

    def select(self, keys: Sequence[tuple[str, str]]) -> FeatureSet:
        """The rows of these ``(id, draft)`` pairs, in that order.

        Raises:
            KeyError: a pair has no features.
        """
        index = {k: i for i, k in enumerate(zip(self.ids, self.drafts, strict=True))}
        rows = [index[k] for k in keys]
        return FeatureSet(
            self.base_model,
            self.layers,
            self.poolings,
            [self.ids[i] for i in rows],
            [self.drafts[i] for i in rows],
            self.features[rows],
            None if self.logprobs is None else self.logprobs[rows],
        )


def load_features(folder: str | Path) -> FeatureSet | None:
    """Every chunk of a feature cache (later chunks win for a repeated pair); ``None`` if empty.

    The log-prob statistics are kept only when every chunk has them.
    """
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        return None
    meta = json.loads((folder / META_FILE).read_text())
    rows: dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None]] = {}
    for part in sorted(folder.glob("part-*.npz")):
        with np.load(part) as data:
            stats = data["logprobs"] if "logprobs" in data else [None] * len(data["ids"])
            for i, d, f, s in zip(
                data["ids"], data["drafts"], data["features"], stats, strict=True
            ):
                rows[(str(i), str(d))] = (f, s)
    if not rows:
        return None
    keys = list(rows)
    has_stats = all(rows[k][1] is not None for k in keys)
    return FeatureSet(
        meta["base_model"],
        meta["layers"],
        meta["poolings"],
        [k[0] for k in keys],
        [k[1] for k in keys],
        np.stack([rows[k][0] for k in keys]),
        np.stack([rows[k][1] for k in keys]).astype(np.float32) if has_stats else None,
    )


def extract_features(
    items: Sequence[tuple[Example, str]],
    folder: str | Path,
    *,
    base_model: str,
    loaded: tuple[Any, Any] | None = None,
    layers: Sequence[int] | None = None,
    poolings: Sequence[str] = POOLINGS,
    batch_size: int = 8,
    chunk: int = 32,
    max_length: int | None = 4096,
    dtype: str = "bfloat16",
    progress: bool = True,
) -> FeatureSet:
    """Pooled hidden states of each ``(example, canonical draft)``, cached under ``folder``.

    Only pairs the cache lacks are computed (the model is loaded only then), ``chunk`` pairs at a
    time, each chunk written as it finishes. ``layers`` defaults to every layer.

    Raises:
        ValueError: the cache was made with another base model, layers or poolings.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    have = load_features(folder)
    done = set(zip(have.ids, have.drafts, strict=True)) if have else set()
    todo = [(e, d) for e, d in items if (e.id, d) not in done]
    meta_path = folder / META_FILE
    if todo:
        from tqdm.auto import tqdm

        from spec_tool_node.chat_models.loading import load_pretrained

        model, tokenizer = loaded or load_pretrained(base_model, dtype=dtype)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        chosen = list(range(model.config.num_hidden_layers + 1)) if layers is None else list(layers)
        meta = {
            "base_model": base_model,
            "layers": chosen,
            "poolings": list(poolings),
            "max_length": max_length,
        }
        if meta_path.is_file():
            recorded = json.loads(meta_path.read_text())
            if recorded != meta:
                raise ProbeTrainingError(
                    f"feature cache {folder} was made with {recorded}, not {meta}: use another "
                    "folder"
                )
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        start = len(list(folder.glob("part-*.npz")))
        bar = tqdm(total=len(todo), desc="probe features", disable=not progress)
        for n, c in enumerate(range(0, len(todo), chunk)):
            part = todo[c : c + chunk]
            rendered = [
                render_draft(
                    tokenizer, e.messages, e.tools, action_from_canonical(d), max_length=max_length
                )
                for e, d in part
            ]
            reading = read_drafts(
                model, tokenizer, rendered, chosen, poolings, batch_size=batch_size
            )
            with atomic_file(folder / f"part-{start + n:05d}.npz") as sink:  # never half a part
                np.savez(
                    sink,
                    ids=np.array([e.id for e, _ in part]),
                    drafts=np.array([d for _, d in part]),
                    features=reading.pooled.astype(np.float16),
                    logprobs=reading.logprobs,
                )
            bar.update(len(part))
        bar.close()
    features = load_features(folder)
    assert features is not None
    return features.select([(e.id, d) for e, d in items])


# -- grouping ------------------------------------------------------------------------------------

_BFCL_LIVE = re.compile(r"^(?P<category>.+)_\d+-(?P<group>\d+)-\d+$")


def group_of(example_id: str) -> str:
    """The group an example is validated with: BFCL live examples by function group (they share
    their tools), multi-turn steps and chat-log decisions by conversation, anything else alone."""
    head = example_id.split("/", 1)[0]
    match = _BFCL_LIVE.match(head)
    return f"{match['category']}-{match['group']}" if match else head


# -- heads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadSpec:
    """One head configuration: logistic regression (``hidden=0``) or a one-hidden-layer MLP."""

    C: float
    """Inverse L2 strength (logistic); the MLP's weight decay is ``1 / C``."""
    hidden: int = 0

    @property
    def name(self) -> str:
        return f"logistic C={self.C:g}" if not self.hidden else f"mlp{self.hidden} C={self.C:g}"


def fit_head(
    x: np.ndarray, y: np.ndarray, spec: HeadSpec, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Fit standardisation and head: ``(mean, scale, weights, biases)`` for :class:`ProbeHead`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    if spec.hidden:
        mlp = MLPClassifier(
            hidden_layer_sizes=(spec.hidden,),
            alpha=1.0 / spec.C,
            max_iter=500,
            random_state=seed,
        ).fit(z, y)
        weights, biases = [w.copy() for w in mlp.coefs_], [b.copy() for b in mlp.intercepts_]
    else:
        lr = LogisticRegression(C=spec.C, max_iter=5000).fit(z, y)
        weights, biases = [lr.coef_.T.copy()], [lr.intercept_.copy()]
    return scaler.mean_.copy(), scaler.scale_.copy(), weights, biases


def calls_tools(drafts: Sequence[str]) -> np.ndarray:
    """Whether each canonical draft calls tools (the kind a probe with a text head routes by)."""
    from spec_tool_node.actions import ToolCallsAction

    return np.array([isinstance(action_from_canonical(d), ToolCallsAction) for d in drafts])


def _predict(x: np.ndarray, fitted: tuple) -> np.ndarray:
    mean, scale, weights, biases = fitted
    head = ProbeHead("", [0], "mean", mean, scale, weights, biases)
    return head.predict(x)


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    spec: HeadSpec,
    *,
    folds: int = 5,
    seed: int = 0,
    calls: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of each row from a head fit without its group (grouped K-fold); with ``calls``
    (whether each draft calls tools), from the head of its own kind, fit on that kind alone."""
    from sklearn.model_selection import GroupKFold

    if calls is not None:
        scores = np.zeros(len(y))
        groups = np.asarray(groups)
        for kind in (True, False):
            rows = np.asarray(calls, dtype=bool) == kind
            if rows.any():
                scores[rows] = out_of_fold(
                    x[rows], y[rows], groups[rows], spec, folds=folds, seed=seed
                )
        return scores
    if len(set(groups)) < 2:
        raise ProbeTrainingError(
            f"cross-validation needs drafts from at least two groups; these {len(y)} all come "
            f"from {str(next(iter(groups)))!r}"
        )
    scores = np.zeros(len(y))
    splitter = GroupKFold(n_splits=min(folds, len(set(groups))), shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y, groups):
        if len(set(y[train])) < 2:
            scores[test] = float(np.mean(y[train]))
            continue
        scores[test] = _predict(x[test], fit_head(x[train], y[train], spec, seed=seed))
    return scores


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (``nan`` when only one class occurs)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


@dataclass
class Selection:
    """The validation table and the configuration it chose."""

    rows: list[dict[str, Any]]
    """One row per configuration: layers, pooling, head, cross-validated AUROC."""
    best: dict[str, Any]
    oof: np.ndarray = field(repr=False)
    """Out-of-fold scores of the chosen configuration (for calibration)."""
    per_kind_skipped: str | None = None
    """Why a head per kind of draft was asked for and not tried (``None``: tried or not asked)."""


def per_kind_problem(
    calls: np.ndarray, y: np.ndarray, groups: Sequence[str] | None = None
) -> str | None:
    """Why a head per kind of draft cannot be fit here, or ``None`` if it can: each kind needs
    right and wrong drafts, and, to be cross-validated (``groups`` given), at least two groups."""
    for kind, name in ((True, "tool-call"), (False, "text")):
        rows = np.asarray(calls, dtype=bool) == kind
        if not rows.any():
            return f"there are no {name} drafts"
        if len(set(y[rows])) < 2:
            return f"the {name} drafts have no {'wrong' if y[rows].all() else 'right'} ones"
        kind_groups = None if groups is None else np.asarray(groups)[rows]
        if kind_groups is not None and len(set(kind_groups)) < 2:
            return f"the {name} drafts all come from one group ({str(kind_groups[0])!r})"
    return None


def select_probe(
    features: FeatureSet,
    labels: Sequence[bool],
    *,
    layers: Iterable[Sequence[int]] | None = None,
    poolings: Sequence[str] | None = None,
    heads: Sequence[HeadSpec] = (HeadSpec(0.01), HeadSpec(0.1), HeadSpec(1.0)),
    stat_sets: Sequence[Sequence[str]] = ((),),
    per_kind: Sequence[bool] = (False,),
    folds: int = 5,
    seed: int = 0,
) -> Selection:
    """Grouped cross-validated AUROC of every configuration; the best is chosen (ties: the first,
    so list simpler configurations first).

    ``stat_sets`` are the choices of log-prob statistics appended to the hidden states (the
    default: none). A layer set may be empty when a statistic set is not: the statistics alone.
    ``per_kind``: whether to try one head per kind of draft (tool calls, text) besides one head
    for all (only where each kind has right and wrong drafts); their out-of-fold scores are
    pooled into one AUROC.
    """
    from threadpoolctl import threadpool_limits

    y = np.asarray(labels, dtype=int)
    if len(set(y)) < 2:
        raise ProbeTrainingError(
            "the training drafts need both right and wrong ones to train a probe"
        )
    unknown = {name for chosen in stat_sets for name in chosen} - set(LOGPROB_STATS)
    if unknown:
        raise ProbeTrainingError(
            f"unknown log-prob statistics {sorted(unknown)}; known: {', '.join(LOGPROB_STATS)}"
        )
    with threadpool_limits(limits=1):  # BLAS threads cost more than they save on fits this small
        return _select(features, y, layers, poolings, heads, stat_sets, per_kind, folds, seed)


def _select(
    features: FeatureSet,
    y: np.ndarray,
    layers: Iterable[Sequence[int]] | None,
    poolings: Sequence[str] | None,
    heads: Sequence[HeadSpec],
    stat_sets: Sequence[Sequence[str]],
    per_kind: Sequence[bool],
    folds: int,
    seed: int,
) -> Selection:
    groups = [group_of(i) for i in features.ids]
    calls = calls_tools(features.drafts)
    # a head per kind is fit only where each kind has right and wrong drafts, from two groups
    skipped = per_kind_problem(calls, y, groups) if any(per_kind) else None
    per_kind = [split for split in per_kind if not (split and skipped)]
    layer_sets = [list(s) for s in layers] if layers else [[la] for la in features.layers[1:]]
    rows = []
    best: tuple[float, dict[str, Any], np.ndarray] | None = None
    poolings = poolings or features.poolings
    configurations = [
        (pooling, chosen, list(stats))
        for pooling in poolings
        for chosen in layer_sets
        for stats in stat_sets
        # statistics alone read no hidden state: one pooling is enough for them
        if chosen or (stats and pooling == poolings[0])
        # the drafting pass is mode G's, which reads no statistics
        if not (stats and pooling == "drafting")
    ]
    for pooling, chosen, stats in configurations:
        x = features.matrix(chosen, pooling, stats)
        for spec, split in ((spec, split) for spec in heads for split in per_kind):
            kinds = calls if split else None
            oof = out_of_fold(x, y, groups, spec, folds=folds, seed=seed, calls=kinds)
            score = auroc(oof, y.astype(bool))
            row = {
                "layers": chosen,
                "pooling": pooling,
                "logprob_stats": stats,
                "per_kind": split,
                "head": spec.name,
                "C": spec.C,
                "hidden": spec.hidden,
                "cv_auroc": round(score, 4),
            }
            rows.append(row)
            if best is None or score > best[0]:
                best = (score, row, oof)
    if best is None:
        raise ProbeTrainingError(
            "no probe configuration to try"
            + (f": a head per kind was the only choice, and {skipped}" if skipped else "")
        )
    return Selection(rows, best[1], best[2], per_kind_skipped=skipped)


def train_head(
    features: FeatureSet,
    labels: Sequence[bool],
    *,
    layers: Sequence[int],
    pooling: str,
    spec: HeadSpec,
    logprob_stats: Sequence[str] = (),
    per_kind: bool = False,
    seed: int = 0,
    card: dict[str, Any] | None = None,
) -> ProbeHead:
    """Fit the chosen configuration on every training draft (``per_kind``: a head on the drafts
    that call tools, with a text head on the others)."""
    y = np.asarray(labels, dtype=int)
    if per_kind:
        calls = calls_tools(features.drafts)
        if per_kind_problem(calls, y):
            raise ProbeTrainingError(
                "a head per kind of draft needs right and wrong drafts of each kind (tool calls "
                "and text)"
            )
        keys = list(zip(features.ids, features.drafts, strict=True))
        head, text = (
            train_head(
                features.select([k for k, c in zip(keys, calls, strict=True) if c == kind]),
                y[calls == kind],
                layers=layers,
                pooling=pooling,
                spec=spec,
                logprob_stats=logprob_stats,
                seed=seed,
                card=card if kind else None,
            )
            for kind in (True, False)
        )
        return dataclasses.replace(head, text_head=text)  # checks that the two heads fit
    x = features.matrix(layers, pooling, logprob_stats)
    mean, scale, weights, biases = fit_head(x, y, spec, seed=seed)
    return ProbeHead(
        base_model=features.base_model,
        layers=list(layers),
        pooling=pooling,
        mean=mean,
        scale=scale,
        weights=weights,
        biases=biases,
        card=dict(card or {}),
        logprob_stats=list(logprob_stats),
    )


# -- the whole run -------------------------------------------------------------------------------


@dataclass
class ProbeRun:
    """What :func:`train_probe_verifier` made: the head (saved), the validation, the threshold."""

    head: ProbeHead
    selection: Selection
    n_drafts: int
    n_accept: int
    threshold: float


def train_probe_verifier(
    items: Sequence[tuple[Example, str]],
    labels: Sequence[bool],
    out: str | Path,
    *,
    base_model: str,
    features_dir: str | Path,
    loaded: tuple[Any, Any] | None = None,
    layers: Iterable[Sequence[int]] | None = None,
    poolings: Sequence[str] | None = None,
    heads: Sequence[HeadSpec] = (HeadSpec(0.01), HeadSpec(0.1), HeadSpec(1.0)),
    stat_sets: Sequence[Sequence[str]] = ((),),
    per_kind: Sequence[bool] = (False,),
    folds: int = 5,
    seed: int = 0,
    batch_size: int = 8,
    max_length: int | None = 4096,
    precision: float | None = None,
    accept_rate: float | None = None,
    card: dict[str, Any] | None = None,
) -> ProbeRun:
    """Extract (or read cached) features, choose the configuration by grouped validation, fit it
    on every draft, calibrate the threshold on out-of-fold scores, and save the head to ``out``.

    ``labels[i]`` says whether draft ``i`` should be accepted. The threshold reaches
    ``precision`` (or ``accept_rate``) on the out-of-fold scores; with neither, 0.5.
    """
    from spec_tool_node.training.verifier import calibrate

    features = extract_features(
        items,
        features_dir,
        base_model=base_model,
        loaded=loaded,
        batch_size=batch_size,
        max_length=max_length,
    )
    selection = select_probe(
        features,
        labels,
        layers=layers,
        poolings=poolings,
        heads=heads,
        stat_sets=stat_sets,
        per_kind=per_kind,
        folds=folds,
        seed=seed,
    )
    best = selection.best
    if precision is None and accept_rate is None:
        threshold = 0.5
    else:
        threshold = calibrate(
            selection.oof.tolist(), list(labels), precision=precision, accept_rate=accept_rate
        )
    head = train_head(
        features,
        labels,
        layers=best["layers"],
        pooling=best["pooling"],
        spec=HeadSpec(best["C"], best["hidden"]),
        logprob_stats=best["logprob_stats"],
        per_kind=best["per_kind"],
        seed=seed,
        card={
            **(card or {}),
            "training drafts": len(items),
            "accept labels": int(sum(labels)),
            "chosen by": f"{folds}-fold grouped cross-validated AUROC on the training drafts",
            "cross-validated AUROC": best["cv_auroc"],
            "threshold from": (
                f"out-of-fold scores, precision {precision}"
                if precision is not None
                else f"out-of-fold scores, accept rate {accept_rate}"
                if accept_rate is not None
                else "default 0.5"
            ),
        },
    )
    head.threshold = float(threshold)
    head.save(out)
    (Path(out) / "validation.json").write_text(json.dumps(selection.rows, indent=1) + "\n")
    return ProbeRun(head, selection, len(items), int(sum(labels)), float(threshold))


# -- labels --------------------------------------------------------------------------------------


def strong_correct(path: str | Path, examples: dict[str, Example]) -> dict[str, bool]:
    """Whether the strong model's action is right, per example id, from a JSONL cache.

    Reads the evaluation cache's strong file (``{"id", "act": {"action", "valid"}}``) or a
    ``train mine`` cache of the strong model (``{"id", "draft", "valid"}``); ids not in
    ``examples`` are ignored.
    """
    from spec_tool_node.bfcl.matching import matches
    from spec_tool_node.training.data import load_draft_cache

    out = {}
    for i, record in load_draft_cache(path).items():
        if i not in examples:
            continue
        act = record.get("act", record)
        text = act.get("action", act.get("draft"))
        out[i] = (
            bool(act.get("valid"))
            and text is not None
            and matches(action_from_canonical(text), examples[i].gold)
        )
    return out


def deferral_labels(right: dict[str, bool], strong: dict[str, bool]) -> dict[str, bool]:
    """Accept unless deferring changes the outcome (the draft is wrong and the strong model is
    right). A wrong draft whose strong action is unknown gets no label (left out)."""
    return {i: r or not strong[i] for i, r in right.items() if r or i in strong}
