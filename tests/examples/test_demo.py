"""`make demo`'s script with smoke-test settings (SmolLM2-135M as both models, one task)."""

from __future__ import annotations

import json

import pytest

from tests.examples.test_examples import run_example

pytestmark = pytest.mark.packaged


@pytest.mark.slow
def test_demo_prints_the_table_and_writes_the_plot(tmp_path):
    out = run_example("demo.py", "--small", "--out", str(tmp_path))
    assert "mode F against A: relative cost" in out  # the default bundle runs mode F
    rows = json.loads((tmp_path / "demo.json").read_text())
    assert sorted(r["mode"] for r in rows) == ["A", "F"]
    assert all(r["decisions"] >= 1 for r in rows)
    assert (tmp_path / "savings.png").stat().st_size > 0
