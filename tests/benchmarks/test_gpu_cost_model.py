"""The GPU cost model stays runnable where no accelerator is lent: its smoke mode runs the
whole measurement on shrunken shapes on the CPU and writes its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_cost_model_runs_end_to_end_in_smoke_mode(tmp_path):
    script = ROOT / "benchmarks" / "gpu_cost_model.py"
    args = ["--smoke", "--device", "cpu", "--repeats", "1", "--context", "32", "--action", "6"]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    times = json.loads((tmp_path / "times.json").read_text())
    assert len(times) == 7 and all(seconds > 0 for seconds in times.values())
    table = (tmp_path / "table.md").read_text()
    assert "SMOKE" in table and "| F, agreeing draft |" in table
