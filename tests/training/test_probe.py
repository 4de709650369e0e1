"""Probe training: the feature cache, grouped selection, labels, and the CLI on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spec_tool_node.cli import main
from spec_tool_node.config import ACCEPTS_NOTHING
from spec_tool_node.example_files import Example
from spec_tool_node.training.probe import (
    HeadSpec,
    calls_tools,
    deferral_labels,
    extract_features,
    fit_head,
    group_of,
    load_features,
    out_of_fold,
    per_kind_problem,
    select_probe,
    strong_correct,
    train_head,
)
from spec_tool_node.verifiers.probe import POOLINGS, ProbeHead

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CITIES = ["Paris", "Rome"]


def _draft(city: str) -> str:
    return json.dumps(
        {"tool_calls": [{"arguments": {"city": city}, "name": "get_weather"}]}, sort_keys=True
    )


def _examples(n: int = 16) -> list[Example]:
    return [
        Example(
            id=f"live_simple_{i}-{i // 2}-{i % 2}",
            tools=TOOLS,
            messages=[{"role": "user", "content": f"Weather in Paris, question {i}?"}],
            gold=[{"get_weather": {"city": ["Paris"]}}],
        )
        for i in range(n)
    ]


def _items(examples: list[Example]) -> list[tuple[Example, str]]:
    return [(e, _draft(CITIES[i % 2])) for i, e in enumerate(examples)]


def test_group_of_keeps_function_groups_and_conversations_together():
    assert group_of("live_simple_3-2-1") == group_of("live_simple_2-2-0") == "live_simple-2"
    assert group_of("live_simple_4-3-0") != group_of("live_multiple_4-3-0")
    assert group_of("multi_turn_base_4/turn0/step1") == "multi_turn_base_4"
    assert group_of("simple_python_7") == "simple_python_7"


def test_feature_cache_resumes_and_a_complete_one_needs_no_model(
    tiny_model, tiny_tokenizer, tmp_path
):
    items = _items(_examples(6))
    first = extract_features(
        items[:4], tmp_path, base_model="tiny", loaded=(tiny_model, tiny_tokenizer), chunk=3
    )
    assert first.features.shape == (4, len(POOLINGS), 3, tiny_model.config.hidden_size)
    assert len(list(tmp_path.glob("part-*.npz"))) == 2
    both = extract_features(
        items, tmp_path, base_model="tiny", loaded=(tiny_model, tiny_tokenizer), chunk=3
    )
    assert len(list(tmp_path.glob("part-*.npz"))) == 3  # only the 2 new pairs were computed
    assert not list(tmp_path.glob(".*.tmp"))  # each part is written whole, then renamed
    np.testing.assert_array_equal(both.features[:4], first.features)
    # complete: no model is loaded (the name would not load) and the order follows ``items``
    again = extract_features(items[::-1], tmp_path, base_model="tiny")
    assert again.ids == [e.id for e, _ in items[::-1]]
    np.testing.assert_array_equal(again.features[::-1], both.features)
    with pytest.raises(ValueError, match="feature cache"):
        extract_features(
            [(items[0][0], _draft("Oslo"))],
            tmp_path,
            base_model="other",
            loaded=(tiny_model, tiny_tokenizer),
        )
    assert load_features(tmp_path / "missing") is None


def test_head_matches_scikit_learn_and_out_of_fold_scores_hold_groups_out():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = (x[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    mean, scale, weights, biases = fit_head(x, y, HeadSpec(0.1))
    head = ProbeHead("m", [1], "mean", mean, scale, weights, biases)
    scaler = StandardScaler().fit(x)
    expected = LogisticRegression(C=0.1, max_iter=5000).fit(scaler.transform(x), y)
    np.testing.assert_allclose(
        head.predict(x), expected.predict_proba(scaler.transform(x))[:, 1], atol=1e-6
    )
    groups = [f"g{i // 4}" for i in range(40)]
    oof = out_of_fold(x, y, groups, HeadSpec(0.1), folds=5)
    assert oof.shape == (40,) and not np.allclose(oof, head.predict(x))
    mlp = fit_head(x, y, HeadSpec(1.0, hidden=8))
    assert [w.shape for w in mlp[2]] == [(5, 8), (8, 1)]
    with pytest.raises(ValueError, match="at least two groups; these 40 all come from 'g'"):
        out_of_fold(x, y, ["g"] * 40, HeadSpec(0.1))


def test_a_head_per_kind_needs_each_kind_from_two_groups():
    y = np.array([1, 0, 1, 0, 1, 0])
    calls = np.array([True, True, True, True, False, False])
    assert per_kind_problem(calls, y, ["a", "b", "a", "b", "c", "c"]) == (
        "the text drafts all come from one group ('c')"
    )
    assert per_kind_problem(calls, y, ["a", "b", "a", "b", "c", "d"]) is None
    assert per_kind_problem(calls, np.array([1, 0, 1, 0, 1, 1]), list("abcdef")) == (
        "the text drafts have no wrong ones"
    )


def test_selection_finds_the_informative_configuration(tiny_model, tiny_tokenizer, tmp_path):
    items = _items(_examples(16))
    labels = [d == _draft("Paris") for _, d in items]
    features = extract_features(
        items, tmp_path, base_model="tiny", loaded=(tiny_model, tiny_tokenizer)
    )
    selection = select_probe(features, labels, folds=4)
    assert {(tuple(r["layers"]), r["pooling"]) for r in selection.rows} == {
        ((layer,), p) for layer in (1, 2) for p in POOLINGS
    }
    assert selection.best["cv_auroc"] == 1.0 and len(selection.oof) == 16
    with pytest.raises(ValueError, match="both right and wrong"):
        select_probe(features, [True] * 16)


def test_selection_may_append_the_drafts_logprob_stats(tiny_model, tiny_tokenizer, tmp_path):
    items = _items(_examples(16))
    labels = [d == _draft("Paris") for _, d in items]
    features = extract_features(
        items, tmp_path, base_model="tiny", loaded=(tiny_model, tiny_tokenizer), layers=[1, 2]
    )
    assert features.logprobs is not None and features.logprobs.shape == (16, 3)
    selection = select_probe(
        features, labels, layers=[[1], []], poolings=["mean"], stat_sets=[[], ["values_min"]],
        folds=4,
    )  # fmt: skip
    assert [(r["layers"], r["logprob_stats"]) for r in selection.rows[::3]] == [
        ([1], []),
        ([1], ["values_min"]),
        ([], ["values_min"]),  # the statistic alone; no configuration reads nothing
    ]
    # mode G's drafting pooling reads no statistics: they are not tried with it
    drafting = select_probe(
        features, labels, layers=[[1]], poolings=["drafting"], stat_sets=[[], ["values_min"]],
        folds=4,
    )  # fmt: skip
    assert {tuple(r["logprob_stats"]) for r in drafting.rows} == {()}
    head = train_head(
        features, labels, layers=[1], pooling="mean", spec=HeadSpec(0.1),
        logprob_stats=["values_min"],
    )  # fmt: skip
    assert head.logprob_stats == ["values_min"] and head.mean.shape == (
        tiny_model.config.hidden_size + 1,
    )
    with pytest.raises(ValueError, match="unknown log-prob statistics"):
        select_probe(features, labels, stat_sets=[["entropy"]])
    # a cache from before the statistics were recorded still serves the hidden states alone
    part = next(tmp_path.glob("part-*.npz"))
    with np.load(part) as data:
        np.savez(part, ids=data["ids"], drafts=data["drafts"], features=data["features"])
    old = load_features(tmp_path)
    assert old.logprobs is None and old.matrix([1], "mean").shape == (
        16,
        tiny_model.config.hidden_size,
    )
    with pytest.raises(ValueError, match="no log-prob statistics"):
        old.matrix([1], "mean", ["values_min"])


def test_a_head_per_kind_is_selected_fit_and_routed_by_kind(tiny_model, tiny_tokenizer, tmp_path):
    examples = _examples(16)
    answers = [json.dumps({"respond": t}) for t in ("No tool fits.", "Ask a city.")]
    items = _items(examples) + [(e, answers[i % 2]) for i, e in enumerate(examples)]
    labels = [d in (_draft("Paris"), answers[0]) for _, d in items]
    features = extract_features(
        items, tmp_path, base_model="tiny", loaded=(tiny_model, tiny_tokenizer), layers=[1, 2]
    )
    calls = calls_tools(features.drafts)
    assert calls.sum() == 16 and (~calls).sum() == 16
    selection = select_probe(
        features, labels, layers=[[1]], poolings=["mean"], per_kind=[False, True], folds=4
    )
    assert [r["per_kind"] for r in selection.rows] == [False, True] * 3
    head = train_head(
        features, labels, layers=[1], pooling="mean", spec=HeadSpec(0.1), per_kind=True
    )
    assert head.text_head is not None and head.text_head.layers == [1]
    x = features.matrix([1], "mean")
    np.testing.assert_allclose(
        head.predict(x, calls),
        np.where(calls, head.predict(x, np.ones(32, bool)), head.text_head.predict(x)),
    )
    with pytest.raises(ValueError, match="rows, but calls says 1 kinds"):
        head.predict(x, [True])
    # only tool-call drafts: a head per kind, asked for alone, is refused by name
    calls_only = features.select([(e.id, d) for e, d in items[:16]])
    with pytest.raises(ValueError, match=r"a head per kind was the only choice.*no text drafts"):
        select_probe(calls_only, labels[:16], layers=[[1]], poolings=["mean"], per_kind=[True])
    with pytest.raises(ValueError, match="each kind"):
        train_head(
            features.select([(e.id, d) for e, d in items[:16]]),
            labels[:16],
            layers=[1],
            pooling="mean",
            spec=HeadSpec(0.1),
            per_kind=True,
        )


def test_deferral_labels_reject_only_where_the_strong_model_would_fix_it(tmp_path):
    examples = {e.id: e for e in _examples(4)}
    ids = list(examples)
    strong = tmp_path / "strong.jsonl"
    strong.write_text(
        json.dumps({"id": ids[1], "act": {"action": _draft("Paris"), "valid": True}})
        + "\n"
        + json.dumps({"id": ids[2], "draft": _draft("Rome"), "valid": True})
        + "\n"
        + json.dumps({"id": "other", "draft": _draft("Paris"), "valid": True})
        + "\n"
    )
    correct = strong_correct(strong, examples)
    assert correct == {ids[1]: True, ids[2]: False}
    right = {ids[0]: True, ids[1]: False, ids[2]: False, ids[3]: False}
    # right draft: accept; wrong + strong right: reject; wrong + strong wrong: accept (nothing to
    # gain); wrong + strong unknown: no label
    assert deferral_labels(right, correct) == {ids[0]: True, ids[1]: False, ids[2]: True}


def _save_base(folder: Path, model, tokenizer) -> Path:
    """A tiny model saved as a folder, as a probe's base model is named."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _write_drafts(path: Path, examples: list[Example]) -> Path:
    """A draft file as `train mine` writes it: one valid draft per example, right for Paris."""
    path.write_text(
        "".join(
            json.dumps({"id": e.id, "draft": d, "valid": True, "right": d == _draft("Paris")})
            + "\n"
            for e, d in _items(examples)
        )
    )
    return path


def test_train_verifier_method_probe_cli(tiny_model, tiny_tokenizer, tmp_path, capsys):
    from spec_tool_node.verifiers.probe import ProbeVerifier

    base = _save_base(tmp_path / "tiny", tiny_model, tiny_tokenizer)
    examples = _examples(16)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(e.model_dump_json() + "\n" for e in examples))
    drafts = _write_drafts(tmp_path / "drafts.jsonl", examples)
    out = tmp_path / "probe"
    argv = [
        "train", "verifier", "--method", "probe", "--base", str(base), "--data", str(data),
        "--drafts", str(drafts), "--out", str(out), "--layers", "1,1+2", "--poolings",
        "mean,values", "--C", "0.1", "--folds", "4", "--precision", "0.9",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "probe on 16 drafts (8 to accept)" in printed and "cross-validated AUROC" in printed
    rows = json.loads((out / "validation.json").read_text())
    assert {(tuple(r["layers"]), r["pooling"]) for r in rows} == {
        ((1,), "mean"),
        ((1, 2), "mean"),
        ((1,), "values"),
        ((1, 2), "values"),
    }
    head = ProbeHead.load(out)
    assert head.base_model == str(base) and head.threshold is not None
    # the verifier the folder describes scores the drafts: right above wrong
    verifier = ProbeVerifier.from_pretrained(out)
    from langchain_core.messages import convert_to_messages

    from spec_tool_node.actions import action_from_canonical

    e = examples[0]
    good, bad = verifier.score_batch(
        convert_to_messages(e.messages),
        [t["function"] for t in TOOLS],
        [action_from_canonical(_draft("Paris")), action_from_canonical(_draft("Rome"))],
    )
    assert good.p_accept > bad.p_accept
    # a rerun reads the cached features: no model load is needed for them
    assert main(argv) == 0 and len(list((out / "features").glob("part-*.npz"))) == 1
    # the draft's log-prob statistics are candidates beside the hidden states
    assert main([*argv, "--logprob-stats", "none", "values_mean,values_min"]) == 0
    rows = json.loads((out / "validation.json").read_text())
    assert {tuple(r["logprob_stats"]) for r in rows} == {(), ("values_mean", "values_min")}
    best = max(rows, key=lambda r: r["cv_auroc"])  # ties: the first, as the selection keeps
    assert f"log-prob statistics {best['logprob_stats'] or 'none'}," in capsys.readouterr().out
    # every draft here calls a tool: a head per kind has nothing to fit its text head on
    assert main([*argv, "--per-kind"]) == 0
    rows = json.loads((out / "validation.json").read_text())
    assert {r["per_kind"] for r in rows} == {False}
    assert "a head per kind of draft was not tried: there are no text drafts" in (
        capsys.readouterr().out
    )
    # drafts that are all right cannot train a probe: an error message, not a traceback
    lines = [json.loads(x) for x in drafts.read_text().splitlines()]
    drafts.write_text("".join(json.dumps({**x, "right": True}) + "\n" for x in lines))
    assert main(argv) == 2
    assert "error: the training drafts need both right and wrong ones" in capsys.readouterr().err


def test_probe_method_needs_drafts(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text(_examples(1)[0].model_dump_json() + "\n")
    argv = ["train", "verifier", "--method", "probe", "--base", "x", "--data", str(data)]
    assert main([*argv, "--out", str(tmp_path / "p")]) == 2
    assert "--method probe needs --drafts" in capsys.readouterr().err


def test_calibrate_writes_the_threshold_from_logged_decisions(
    tiny_model, tiny_tokenizer, tmp_path, capsys
):
    from spec_tool_node.bundle import Bundle
    from spec_tool_node.config import CascadeConfig, ModelSpec

    base = _save_base(tmp_path / "tiny", tiny_model, tiny_tokenizer)
    hidden = tiny_model.config.hidden_size
    rng = np.random.default_rng(0)
    head = ProbeHead(
        str(base), [2], "mean", np.zeros(hidden), np.ones(hidden),
        [rng.normal(size=(hidden, 1))], [np.zeros(1)],
    )  # fmt: skip
    head.save(tmp_path / "head")
    config = CascadeConfig(
        mode="D", threshold=0.5, verifier=ModelSpec(model=str(base), adapter=str(tmp_path / "head"))
    )
    bundle = Bundle(config=config).save_pretrained(tmp_path / "bundle")
    examples = _examples(6)
    # two decisions after an earlier tool call: multi-turn
    for e in examples[4:]:
        e.messages = [
            *e.messages,
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        ]  # fmt: skip
    data = tmp_path / "decisions.jsonl"
    data.write_text("".join(e.model_dump_json() + "\n" for e in examples))
    drafts = _write_drafts(tmp_path / "drafts.jsonl", examples)
    argv = ["train", "calibrate", "--bundle", str(bundle), "--data", str(data), "--drafts",
            str(drafts), "--accept-rate", "0.5", "--write"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| single-turn | 4 | 2 |" in out and "| multi-turn | 2 | 1 |" in out
    assert "| all | 6 | 3 |" in out and "(separate decisions) written to" in out
    assert "the bundle's threshold now" in out and "| 0.5000: " in out  # before it was written
    raw = json.loads((bundle / "cascade.json").read_text())
    loaded = Bundle.from_pretrained(bundle).config
    assert raw["threshold"] != 0.5 and loaded.threshold == raw["threshold"]
    assert loaded.multi_turn_threshold == raw["multi_turn_threshold"] is not None
    readme = (bundle / "README.md").read_text()  # shows the thresholds now written
    assert f"threshold {raw['threshold']} (later in a conversation: " in readme
    # one threshold for every decision: the multi-turn one is dropped; before that, the table's
    # "all" row compares each decision against the threshold of its own kind
    assert main([*argv, "--decisions", "all"]) == 0
    all_row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("| all |"))
    assert raw["threshold"] != raw["multi_turn_threshold"]  # so the row must say "per kind"
    assert "| per kind: " in all_row
    assert "multi_turn_threshold" not in json.loads((bundle / "cascade.json").read_text())
    assert not list(bundle.glob(".*.tmp"))


def test_calibrate_with_calls_to_the_strong_model_uses_only_answers(
    tiny_model, tiny_tokenizer, tmp_path, capsys
):
    """A bundle with accept_calls off never scores a call, so its threshold is set on the
    answers and refusals alone; with none among the drafts it says so and writes nothing."""
    from spec_tool_node.bundle import Bundle
    from spec_tool_node.config import CascadeConfig, ModelSpec

    base = _save_base(tmp_path / "tiny", tiny_model, tiny_tokenizer)
    hidden = tiny_model.config.hidden_size
    head = ProbeHead(
        str(base), [2], "mean", np.zeros(hidden), np.ones(hidden),
        [np.random.default_rng(0).normal(size=(hidden, 1))], [np.zeros(1)],
    )  # fmt: skip
    head.save(tmp_path / "head")
    verifier = ModelSpec(model=str(base), adapter=str(tmp_path / "head"))
    config = CascadeConfig(mode="D", threshold=0.5, accept_calls=False, verifier=verifier)
    bundle = Bundle(config=config).save_pretrained(tmp_path / "bundle")
    examples = _examples(6)
    data = tmp_path / "decisions.jsonl"
    data.write_text("".join(e.model_dump_json() + "\n" for e in examples))
    rows = [
        {"id": e.id, "draft": d, "valid": True, "right": d == _draft("Paris")}
        for e, d in _items(examples[:4])
    ] + [
        {"id": e.id, "draft": json.dumps({"respond": text}), "valid": True, "right": right}
        for e, text, right in ((examples[4], "Sunny.", True), (examples[5], "No idea.", False))
    ]
    drafts = tmp_path / "drafts.jsonl"
    drafts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["train", "calibrate", "--bundle", str(bundle), "--data", str(data), "--drafts",
            str(drafts), "--accept-rate", "0.5"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 tool-call drafts left out, 2 answers and refusals calibrated on" in out
    assert "| all | 2 | 1 |" in out
    drafts.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    assert main([*argv, "--write"]) == 2
    assert "no answer or refusal among the drafts" in capsys.readouterr().err
    assert json.loads((bundle / "cascade.json").read_text())["threshold"] == 0.5


def test_calibrate_says_when_no_threshold_reaches_the_precision(
    tiny_model, tiny_tokenizer, tmp_path, capsys
):
    """No threshold reaches the target: those decisions fail closed, the bundle's config and
    README say they accept nothing, and a node built from it never asks the verifier."""
    from spec_tool_node.bundle import Bundle
    from spec_tool_node.config import CascadeConfig, ModelSpec

    base = _save_base(tmp_path / "tiny", tiny_model, tiny_tokenizer)
    hidden = tiny_model.config.hidden_size
    head = ProbeHead(
        str(base), [2], "mean", np.zeros(hidden), np.ones(hidden),
        [np.zeros((hidden, 1))], [np.zeros(1)],
    )  # fmt: skip
    head.save(tmp_path / "head")  # p = 0.5 for every draft: precision is the share right
    config = CascadeConfig(
        mode="D", threshold=0.5, verifier=ModelSpec(model=str(base), adapter=str(tmp_path / "head"))
    )
    bundle = Bundle(config=config).save_pretrained(tmp_path / "bundle")
    examples = _examples(4)
    data = tmp_path / "decisions.jsonl"
    data.write_text("".join(e.model_dump_json() + "\n" for e in examples))
    drafts = _write_drafts(tmp_path / "drafts.jsonl", examples)
    argv = ["train", "calibrate", "--bundle", str(bundle), "--data", str(data), "--drafts",
            str(drafts), "--precision", "0.9"]  # fmt: skip
    assert main([*argv, "--write"]) == 0
    out = capsys.readouterr().out
    assert (
        "note: no threshold reaches precision 0.9 on the single-turn (best 0.500), all (best "
        "0.500) decisions: they accept nothing (threshold 1.01)"
    ) in out
    raw = json.loads((bundle / "cascade.json").read_text())
    assert raw["threshold"] == ACCEPTS_NOTHING
    assert "threshold 1.01 (accepts nothing)" in (bundle / "README.md").read_text()
    assert Bundle.from_pretrained(bundle).config.threshold == ACCEPTS_NOTHING


def test_a_mode_g_bundle_is_written_and_calibrated_on_its_gate_threshold(
    tiny_model, tiny_tokenizer, tmp_path, capsys
):
    """`bundle --mode G --gate-threshold` and `train calibrate` on a drafting probe write
    `gate_threshold` (one for every decision) and leave `threshold` alone; a mode-G bundle whose
    probe needs a pass of its own is refused."""
    base = _save_base(tmp_path / "tiny", tiny_model, tiny_tokenizer)
    hidden = tiny_model.config.hidden_size
    rng = np.random.default_rng(0)
    for pooling in ("drafting", "mean"):
        ProbeHead(
            str(base), [2], pooling, np.zeros(hidden), np.ones(hidden),
            [rng.normal(size=(hidden, 1))], [np.zeros(1)],
        ).save(tmp_path / pooling)  # fmt: skip
    examples = _examples(6)
    data = tmp_path / "decisions.jsonl"
    data.write_text("".join(e.model_dump_json() + "\n" for e in examples))
    drafts = _write_drafts(tmp_path / "drafts.jsonl", examples)
    for pooling in ("drafting", "mean"):
        bundle = tmp_path / f"bundle-{pooling}"
        assert main(["bundle", "--out", str(bundle), "--mode", "gate", "--gate-threshold", "0.3",
                     "--proposer", str(base), "--strong", str(base),
                     "--verifier", f"{base}@{tmp_path / pooling}"]) == 0  # fmt: skip
        assert json.loads((bundle / "cascade.json").read_text())["gate_threshold"] == 0.3
        code = main(["train", "calibrate", "--bundle", str(bundle), "--data", str(data),
                     "--drafts", str(drafts), "--accept-rate", "0.5", "--write"])  # fmt: skip
        if pooling == "mean":
            assert code == 2 and "does not read the drafting pass" in capsys.readouterr().err
            continue
        assert code == 0
        raw = json.loads((bundle / "cascade.json").read_text())
        assert raw["gate_threshold"] != 0.3 and raw["threshold"] == 0.5
        assert "multi_turn_threshold" not in raw
        assert f"gate_threshold {raw['gate_threshold']} (all decisions)" in capsys.readouterr().out
