"""``spec-tool-node eval``: bad input is reported cleanly; a complete cache loads no model."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest

from spec_tool_node.cli import build_parser, main
from spec_tool_node.config import CascadeConfig
from spec_tool_node.evaluation.datasets import load_dataset
from spec_tool_node.evaluation.runs import ModelPool, RunSettings
from spec_tool_node.example_files import write_examples
from tests.evaluation import toy


def test_unknown_dataset_lists_the_known_ones(tmp_path, capsys):
    code = main(["eval", "--data", "bfcl-nope", "--proposer", "x", "--modes", "B",
                 "--out", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown dataset 'bfcl-nope'" in err
    assert "bfcl-heldout" in err and "simple_python" in err and "multiple" in err
    assert "bfcl-trajectories" in err and "safety" in err


def test_an_example_whose_gold_names_an_unbound_tool_is_reported_with_its_id(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    good = toy.examples()[0].model_dump()
    bad = {**good, "id": "bad-17", "gold": [{"send_email": {"to": ["x"]}}]}
    data.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    code = main(["eval", "--data", str(data), "--proposer", "x", "--modes", "B",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert (
        f"{data}:2: example 'bad-17': gold[0] names tool 'send_email', which is not in its tool list"
        in err
    )
    with pytest.warns(UserWarning, match="bad-17"):
        assert [e.id for e in load_dataset(str(data), on_error="skip")] == ["e1"]


def test_unknown_mode_and_missing_model_are_errors(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    write_examples(data, toy.examples())
    assert main(["eval", "--data", str(data), "--modes", "B,Z", "--out", str(tmp_path)]) == 2
    assert "unknown mode 'Z'; known: A (always_strong)" in capsys.readouterr().err
    assert main(["eval", "--data", str(data), "--modes", "D", "--proposer", "x",
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    assert (
        "need a strong model (--strong NAME[@ADAPTER]) and a verifier (--verifier NAME[@ADAPTER])"
        in capsys.readouterr().err
    )


def test_bfcl_names(tmp_path):
    assert [e.id for e in load_dataset("multiple", limit=2)] == ["multiple_0", "multiple_1"]
    heldout = load_dataset("bfcl-heldout", limit=1)
    assert [e.meta["category"] for e in heldout] == [
        "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
    ]  # fmt: skip


def test_every_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [a for a in sub.choices["eval"]._actions if a.dest != "help"]
    assert options and all(a.help for a in options)


def test_eval_on_a_complete_cache_loads_no_model(tmp_path, monkeypatch, capsys):
    def no_loading(self, role):
        raise AssertionError(f"tried to load the {role} model")

    monkeypatch.setattr(ModelPool, "get", no_loading)
    data, cache, out = tmp_path / "toy.jsonl", tmp_path / "cache", tmp_path / "out"
    write_examples(data, toy.examples())
    toy.write(cache)
    code = main([
        "eval", "--data", str(data), "--proposer", "cheap-model", "--strong", "strong-model",
        "--verifier", "verifier-model", "--modes", "A,B,C,D,E", "--n-drafts", "2",
        "--cache", str(cache), "--out", str(out),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == {
        "metrics.json", "samples.jsonl", "report.md", "pareto.png",
    }  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["D"]["relative_cost"] == pytest.approx(0.7)
    assert "--n-drafts 2" in metrics["command"]
    assert "| D | cheap + trained verifier |" in capsys.readouterr().out


def test_eval_live_check_agrees_with_the_simulation(tmp_path, monkeypatch, capsys):
    models = toy.lookup_models()
    monkeypatch.setattr(ModelPool, "get", lambda self, role: models[role])
    data, cache, out = tmp_path / "toy.jsonl", tmp_path / "cache", tmp_path / "out"
    write_examples(data, toy.examples())
    toy.write(cache)
    code = main([
        "eval", "--data", str(data), "--proposer", "cheap-model", "--strong", "strong-model",
        "--verifier", "verifier-model", "--n-drafts", "2", "--cache", str(cache),
        "--out", str(out), "--live-check", "4",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    live = json.loads((out / "metrics.json").read_text())["live_check"]
    assert (live["n"], live["agree"]) == (20, 20), live["disagreements"]
    assert "## Live check" in (out / "report.md").read_text()
    assert "live check: 20/20 decisions agree" in capsys.readouterr().out


def test_the_command_line_parses_without_loading_the_model_stack():
    import subprocess
    import sys

    code = (
        "import sys; from spec_tool_node.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_package_names_resolve_to_the_functions_not_the_modules():
    # the submodules are loaded first, as the command line loads them
    import spec_tool_node.evaluation.collector
    import spec_tool_node.evaluation.simulator  # noqa: F401
    from spec_tool_node.evaluation import collect, simulate

    assert callable(collect) and callable(simulate)


def test_float32_logits_reach_the_strong_model_only(monkeypatch):
    import spec_tool_node.chat_models.hf as hf

    built: dict[str, bool] = {}
    monkeypatch.setattr(
        hf, "HFChatModel", lambda **kw: built.setdefault(kw["model"], kw["float32_logits"])
    )
    config = CascadeConfig(proposer={"model": "cheap"}, strong={"model": "strong"})
    pool = ModelPool(config, RunSettings(float32_logits=True))
    pool.get("proposer"), pool.get("strong")
    assert built == {"cheap": False, "strong": True}


def _trajectory_key(args: argparse.Namespace, **update: object) -> str:
    from spec_tool_node.evaluation.cli import _cache_file

    return _cache_file(args, CascadeConfig(**update)).name


def test_set_overrides_one_config_field_and_names_what_was_wrong(tmp_path, capsys):
    """``--set FIELD=VALUE`` reads VALUE as JSON where it parses; the command that reruns the
    report keeps it; a bad field or value is an error that names it."""
    from spec_tool_node.evaluation.cli import _command, _settings

    data = tmp_path / "data.jsonl"
    data.write_text(toy.examples()[0].model_dump_json() + "\n")
    base = ["eval", "--data", str(data), "--proposer", "p", "--out", str(tmp_path / "out")]
    sets = ["--set", "multi_turn_speculative_fallback=false", "--set", "mode=lossless",
            "--set", "multi_turn_threshold=null"]  # fmt: skip
    args = build_parser().parse_args([*base, *sets])
    config = _settings(args).cascade_config()
    assert config.multi_turn_speculative_fallback is False and config.mode == "F"
    assert config.multi_turn_threshold is None
    assert shlex.split(_command(args))[-6:] == sets
    for bad, says in [
        ("threshold=lots", "threshold"),
        ("tresholds=0.5", "tresholds"),
        ("threshold", "expected FIELD=VALUE"),
    ]:
        code = main([*base, "--modes", "B", "--set", bad])
        assert code == 2
        assert says in capsys.readouterr().err


def test_a_trajectory_cache_is_keyed_by_what_its_mode_decides_by(tmp_path):
    """Mode A's trajectories hold for any verifier and threshold (the expensive runs are
    shared across bundles); a verifier mode's do not."""
    args = build_parser().parse_args(["eval", "--data", "toy", "--out", str(tmp_path)])
    strong, cheap = {"model": "strong"}, {"model": "cheap"}
    verifier = {"model": "cheap", "adapter": str(tmp_path / "verifier")}
    a = _trajectory_key(args, mode="A", strong=strong)
    assert a == _trajectory_key(
        args, mode="A", strong=strong, proposer=cheap, verifier=verifier, threshold=0.9,
        multi_turn_threshold=0.3, gate_threshold=0.1, n_drafts=5, speculative_fallback=False,
    )  # fmt: skip
    assert a != _trajectory_key(args, mode="A", strong={"model": "other"})
    d = {"strong": strong, "proposer": cheap, "verifier": verifier}
    key_d = _trajectory_key(args, mode="D", **d)
    assert key_d == _trajectory_key(args, mode="D", **d, gate_threshold=0.1, n_drafts=5)
    for changed in ({"threshold": 0.9}, {"multi_turn_threshold": 0.3},
                    {"speculative_fallback": False}, {"verifier": cheap},
                    {"accept_calls": False}):  # fmt: skip
        assert _trajectory_key(args, mode="D", **{**d, **changed}) != key_d
    # a field added later is in the key only where it decides otherwise than before it was
    assert _trajectory_key(args, mode="D", **d, accept_calls=True) == key_d
    assert _trajectory_key(args, mode="D", **d, multi_turn_speculative_fallback=None) == key_d
    assert _trajectory_key(args, mode="D", **d, multi_turn_speculative_fallback=False) != key_d
    assert a == _trajectory_key(
        args, mode="A", strong=strong, multi_turn_speculative_fallback=False
    )
    assert a == _trajectory_key(args, mode="A", strong=strong, accept_calls=False)
    assert a == _trajectory_key(args, mode="A", strong=strong, max_uncached_prompt_tokens=100)
    assert _trajectory_key(args, mode="D", **d, max_uncached_prompt_tokens=None) == key_d
    # the cold-prompt limit: wherever a decision drafts beside a strong model
    assert _trajectory_key(args, mode="D", **d, max_uncached_prompt_tokens=100) != key_d
    b = {"mode": "B", "proposer": cheap}
    assert _trajectory_key(args, **b, max_uncached_prompt_tokens=100) == _trajectory_key(args, **b)
    closed = {**d, "multi_turn_threshold": 1.01}
    assert _trajectory_key(args, mode="D", **closed, max_uncached_prompt_tokens=100) != (
        _trajectory_key(args, mode="D", **closed)
    )
    # no decision drafts: every threshold above 1 and no fallback continues a draft
    silent = {**closed, "threshold": 1.01, "speculative_fallback": False}
    assert _trajectory_key(
        args, mode="D", **silent, max_uncached_prompt_tokens=100
    ) == _trajectory_key(args, mode="D", **silent)  # fmt: skip
    assert _trajectory_key(args, mode="E", **d) != _trajectory_key(args, mode="E", n_drafts=5, **d)
    f = {"mode": "F", "strong": strong, "proposer": cheap}
    assert _trajectory_key(args, **f) == _trajectory_key(
        args, **f, verifier=verifier, threshold=0.9, prefill_ahead=False
    )
    # mode F reads only the later decisions' switch of the fallback options
    assert _trajectory_key(args, **f) == _trajectory_key(args, **f, speculative_fallback=False)
    assert _trajectory_key(args, **f) != _trajectory_key(
        args, **f, multi_turn_speculative_fallback=False
    )
    assert _trajectory_key(args, **f) != _trajectory_key(args, **f, max_uncached_prompt_tokens=9)


REPORTS = (
    "trajectories_a_vs_d_probe",
    "trajectories_a_vs_f",
    "trajectories_a_vs_d_probe_v6",
    "trajectories_default_bundle",
    "trajectories_default_bundle_18",
    "trajectories_default_bundle_30",
    "trajectories_a_vs_f_first_decision",
    "trajectories_a_vs_f_cold_limit",
    "trajectories_a_vs_f_kept_states",
    "trajectories_a_vs_d_kept_states",
)


@pytest.mark.parametrize("report", REPORTS)
def test_committed_trajectory_commands_find_their_committed_caches(report, monkeypatch, tmp_path):
    """Rerunning a committed report's command reads its committed results (hours of model
    calls) in any checkout: the key holds no absolute path."""
    from spec_tool_node.evaluation.cli import _cache_file, _modes, _settings

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    folder = root / "benchmarks" / "results" / "bfcl" / report
    line = next(
        line
        for line in (folder / "trajectories.md").read_text().splitlines()
        if line.startswith("spec-tool-node eval --data bfcl-trajectories")
    )
    args = build_parser().parse_args(shlex.split(line)[1:])
    config = _settings(args).cascade_config()
    for mode in _modes(args.trajectory_modes):
        cache = _cache_file(args, config.model_copy(update={"mode": mode}))
        assert cache.is_file(), f"{report}: mode {mode} would not find {cache}"

    # and the command writes the committed report again, without a model (none is installed
    # in this test: a cache miss would fail to load one)
    out = tmp_path / report
    monkeypatch.setattr(ModelPool, "node", _no_model)
    words = shlex.split(line)[1:]
    words[words.index("--out") + 1] = str(out)
    assert main(words) == 0
    assert (out / "trajectories.jsonl").read_text() == (folder / "trajectories.jsonl").read_text()


def _no_model(*args: object, **kwargs: object) -> None:
    raise AssertionError("a committed trajectory report needed a model: its cache missed")


def test_a_later_segment_of_trajectories_runs_alone(monkeypatch, tmp_path, capsys):
    """``--first-trajectory K`` runs tasks K..N only (here all cached: no model is loaded), and
    its command says so; a K outside 1..N is refused with the flag's name."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    monkeypatch.setattr(ModelPool, "node", _no_model)
    out = tmp_path / "segment"
    words = [
        "eval", "--data", "bfcl-trajectories", "--bundle", "benchmarks/results/default_bundle",
        "--trajectories", "30", "--trajectory-modes", "A", "--float32-logits",
        "--cache", "benchmarks/results/bfcl/cache_kept_states", "--out", str(out),
    ]  # fmt: skip
    assert main([*words, "--first-trajectory", "28"]) == 0
    from spec_tool_node.bfcl.tasks import heldout_task_ids

    rows = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rows] == heldout_task_ids(30)[27:]
    assert "--trajectories 30 --first-trajectory 28" in (out / "trajectories.md").read_text()
    assert main([*words, "--first-trajectory", "31"]) == 2
    assert "--first-trajectory 31: must be from 1 to --trajectories (30)" in capsys.readouterr().err
