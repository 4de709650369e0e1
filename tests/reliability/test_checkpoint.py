"""Checkpoint and resume with LangGraph's SQLite checkpointer, across a killed process.

A trajectory in a child process blocks an over-limit transfer, then asks for the weather and is
killed mid-run (inside the tool, or inside a model call). A second process resumes the thread from
its checkpoint. The ledger must continue without losing or double counting a completed call, and
the BLOCKED decision must stand: the transfer never runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# LangGraph's coming default: only types the state schema names may be read back from a
# checkpoint, so the ledger's TurnRecords must come back under it.
STRICT = {**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true"}


def child(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.reliability.checkpoint_child", *args]


@pytest.mark.parametrize("where", ["tool", "model"])
def test_a_killed_trajectory_resumes_its_ledger_and_keeps_its_block(tmp_path, where) -> None:
    db, log = str(tmp_path / "checkpoints.sqlite"), tmp_path / "calls.jsonl"
    first = subprocess.Popen(child("first", db, str(log), where), cwd=ROOT, env=STRICT)
    hung = log.with_suffix(".hung")
    deadline = time.monotonic() + 600  # generous: the CPU may be shared with model runs
    try:
        while not hung.exists():
            assert first.poll() is None, "the first run ended before it reached the hang"
            assert time.monotonic() < deadline, "the first run never reached the hang"
            time.sleep(0.2)
    finally:
        first.kill()  # killed mid-run, as a crash would; never left behind
        first.wait()
    before = [json.loads(line) for line in log.read_text().splitlines()]

    resumed = subprocess.run(
        child("resume", db, str(log)),
        cwd=ROOT,
        env=STRICT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Blocked deserialization" not in resumed.stderr
    state = json.loads(resumed.stdout.strip().splitlines()[-1])
    entries = [json.loads(line) for line in log.read_text().splitlines()]

    # the BLOCKED decision stands: the transfer never ran, in either process
    assert not [e for e in entries if e.get("tool") == "transfer_money"]
    ledger = state["ledger"]
    assert [t["path"] for t in ledger] == ["blocked", "accepted", "accepted"]
    assert (ledger[0]["rule"], ledger[0]["safety"]) == ("over-limit", "block")
    assert state["messages"][1][1].startswith("BLOCKED: refused to call transfer_money")
    assert state["messages"][-1] == ["ai", "It is sunny in Paris."]

    # every completed model call is in the ledger exactly once (the call in flight when the
    # process died never completed, so neither the log nor the ledger holds it)
    completed = Counter(e["model"] for e in entries if "model" in e)
    counted = Counter(c["model"] for t in ledger for c in t["calls"])
    assert counted == completed == Counter({"cheap": 3, "verifier": 3})
    # the turns decided before the kill were not decided again after it
    assert Counter(e["model"] for e in before if "model" in e) == Counter(
        {"cheap": 2, "verifier": 2}
    )
    assert sum(t["cost"] for t in ledger) == pytest.approx(sum(
        c["cost"] for t in ledger for c in t["calls"]))  # fmt: skip
    # the tool that was killed mid-call ran again on resume (LangGraph re-runs an unfinished step)
    weather = [e for e in entries if e.get("tool") == "get_weather"]
    assert len(weather) == 1
