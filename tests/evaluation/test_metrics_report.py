"""Metrics on a hand-computed toy cache, and the report files written from it."""

from __future__ import annotations

import json

import pytest

from spec_tool_node.config import CascadeConfig
from spec_tool_node.costs import percentile
from spec_tool_node.evaluation import compute_metrics, load_collection, simulate, write_report
from tests.evaluation import toy

CONFIG = CascadeConfig(threshold=0.5, n_drafts=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    toy.write(cache)
    collection = load_collection(cache, toy.KEYS)
    simulation = simulate(toy.examples(), collection, CONFIG, thresholds=[0.0, 0.35, 0.95])
    return simulation, compute_metrics(simulation, collection)


def test_modes_oracle_and_savings_share_by_hand(run):
    _, m = run
    assert m["A"]["accuracy"] == 0.75 and m["A"]["relative_cost"] == 1.0
    assert m["B"]["accuracy"] == 0.5 and m["B"]["relative_cost"] == pytest.approx(0.15)
    # D at 0.5: e1, e2 accepted (0.2 each); e3, e4 fall back (1.2 each)
    d = m["D"]
    assert (d["accuracy"], d["accept_rate"], d["n"]) == (0.5, 0.5, 4)
    assert d["relative_cost"] == pytest.approx(2.8 / 4)
    assert d["wall_cost_ratio"] == pytest.approx((1.1 + 1.1 + 5.1 + 5.1) / 16)
    assert (d["accepted_wrong"], d["fallback_wrong"]) == (1, 1)
    # C: the judge (a strong call, 1.0) accepts e1 and e2
    assert m["C"]["relative_cost"] == pytest.approx((1.15 * 2 + 2.15 * 2) / 4)
    # oracle: e1 and e4 from the draft (draft + verifier), e2 and e3 from the strong model
    o = m["oracle"]
    assert o["accuracy"] == 0.75 and o["relative_cost"] == pytest.approx(
        (0.2 + 1.2 + 1.2 + 0.2) / 4
    )
    s = m["summary"]
    assert s["savings_share"] == pytest.approx(1.0)
    assert s["accuracy_gap_to_A"] == pytest.approx(0.25) and s["target_accuracy_met"] is False
    assert s["target_savings_met"] is True and s["targets_met"] is False
    assert m["D"]["unsafe_executed"] == 0 and d["latency_p50_s"] == pytest.approx(3.1)


def test_sweep_by_hand(run):
    _, m = run
    rows = {r["threshold"]: (r["accuracy"], r["relative_cost"]) for r in m["sweep"]["D"]}
    assert rows.keys() == {0.0, 0.35, 0.5, 0.95}
    assert rows[0.0] == pytest.approx((0.5, 0.8 / 4))
    assert rows[0.35] == pytest.approx((0.5, 1.8 / 4))
    assert rows[0.5] == pytest.approx((0.5, 2.8 / 4))
    assert rows[0.95] == pytest.approx((0.75, 4.8 / 4))
    assert [r["threshold"] for r in m["sweep"]["E"]] == [0.0, 0.35, 0.5, 0.95]


def test_verifier_signals_by_hand(run):
    _, m = run
    v = m["verifiers"]
    # right drafts e1 (0.9), e4 (0.4); wrong e2 (0.6), e3 (0.3): 3 of 4 pairs ordered
    assert v["verifier"]["auroc"] == 0.75
    assert (v["verifier"]["precision"], v["verifier"]["recall"]) == (0.5, 0.5)
    assert (v["judge"]["precision"], v["judge"]["recall"]) == (0.5, 0.5)
    assert v["proposer_logprob"]["auroc"] == 1.0
    assert v["greedy_draft"] == {
        "n": 4,
        "valid": 4,
        "right": 2,
        "valid_rate": 1.0,
        "right_rate": 0.5,
    }


def test_percentile():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)


def test_report_files_and_keys(run, tmp_path):
    simulation, metrics = run
    paths = write_report(tmp_path, simulation, metrics, title="toy", command="spec-tool-node eval")
    assert {p.name for p in tmp_path.iterdir()} == {
        "metrics.json", "samples.jsonl", "report.md", "pareto.png",
    }  # fmt: skip
    data = json.loads(paths["metrics"].read_text())
    for mode in "ABCDE":
        assert {"accuracy", "relative_cost", "wall_cost_ratio", "accept_rate",
                "unsafe_executed", "n"} <= data[mode].keys()  # fmt: skip
    assert {"oracle", "sweep", "verifiers", "summary", "config"} <= data.keys()
    assert data["sweep"]["D"][0].keys() >= {"threshold", "accuracy", "relative_cost"}
    rows = [json.loads(line) for line in paths["samples"].read_text().splitlines()]
    assert len(rows) == 4 * 6  # four examples, five modes and the oracle
    assert {r["mode"] for r in rows} == {*"ABCDE", "oracle"}
    assert paths["pareto"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = paths["report"].read_text()
    assert "| D | cheap + trained verifier | 50.0% | 0.70 | 0.77 | 50% | 0 | 4 |" in report
    assert "Target missed: D is 25.0 points below A's accuracy, 23.0 points more" in report
    assert "Target met: D keeps 100% of the oracle's savings" in report
    assert "savings share of 1.00" in report


def test_report_states_a_missed_savings_target(run, tmp_path):
    from spec_tool_node.evaluation.report import findings

    _, metrics = run
    changed = json.loads(json.dumps(metrics))
    changed["summary"].update(savings_share=0.65, target_savings_met=False)
    text = " ".join(findings(changed))
    assert "D keeps 65% of the oracle's savings, 15.0 points short of 80%" in text


def test_report_says_what_savings_beyond_the_oracle_cost(run):
    from spec_tool_node.evaluation.report import findings

    _, metrics = run
    changed = json.loads(json.dumps(metrics))
    changed["summary"].update(savings_share=1.4)
    text = " ".join(findings(changed))
    wrong = metrics["D"]["accepted_wrong"]
    assert f"it accepted {wrong} wrong draft(s) that the oracle would have sent" in text
    assert "beyond the oracle's" in text
    assert "beyond the oracle's" not in " ".join(findings(metrics))  # share 1.00: nothing beyond
