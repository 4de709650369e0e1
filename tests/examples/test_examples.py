"""Every example runs with one command; smoke tests with small settings (SmolLM2-135M everywhere).

`make test` runs the first, the one-line integration, as the examples' real-model smoke test; each
of the others starts Python, loads real models and runs an agent (half a minute on 2 cores), so
they are `slow` (`make slow`), as is `make demo`'s test.

The remote-models example runs against a real llama.cpp server on Qwen2.5-Coder-0.5B (slow).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.llama_server import llama_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.packaged


def run_example(name: str, *args: str) -> str:
    """Run ``python examples/NAME`` as a user would; returns its output, failing on an error."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(done.stdout)
    return done.stdout


def test_add_to_your_agent(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run in the test process through the example's ``main``, whereas the other examples run
    in a new one: this worker has torch, transformers and LangChain loaded already, and a new
    process would spend seconds loading them again on every `make test`."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    importlib.import_module("add_to_your_agent").main(["--small"])
    out = capsys.readouterr().out
    before, after = out.split("\nafter (SpeculativeActionNode, mode D")
    assert "before (strong model every step" in before and "human: What's the weather" in before
    assert "human: What's the weather" in after
    assert "relative cost" in after and " D " in after  # the ledger of the speculative run


@pytest.mark.slow
def test_create_agent_middleware():
    out = run_example("create_agent_middleware.py", "--small")
    before, after = out.split("\nafter (cascade + safety gate middleware")
    assert "human: What time is it in Tokyo" in before
    assert "relative cost" in after and " D " in after


@pytest.mark.slow
def test_gate_probe():
    """--small has no probe for SmolLM2, so mode G falls back to its log-prob signal; the full
    run (Qwen models, the committed drafting probe) is in the example's docstring."""
    out = run_example("gate_probe.py", "--small")
    assert "mode G, log-probs of the argument values" in out
    assert "roles called: cheap" in out and "verifier" not in out.split("roles called:")[1]


@pytest.mark.slow
def test_safety_policy():
    out = run_example("safety_policy.py", "--small")
    assert "policy travel.yaml: transfer-limit, transfers-need-the-strong-model" in out
    assert "transfer_money(Bob, 5000) -> block (transfer-limit)" in out
    assert "transfer_money(Bob, 200) -> escalate (transfers-need-the-strong-model)" in out
    events = [line for line in out.splitlines() if line.strip().startswith("path=")]
    assert events, "no decision was streamed"


@pytest.mark.slow
def test_remote_models_against_a_real_llama_cpp_server(tmp_path):
    with llama_server("qwen2.5-coder-0.5b-instruct", "qwen", tmp_path / "server.log") as url:
        out = run_example(
            "remote_models.py",
            *("--proposer-url", url, "--proposer-name", "qwen"),
            *("--strong-url", url, "--strong-name", "qwen"),
        )
    assert "ai [" in out and "get_weather(" in out  # a parsed tool call was run
    assert "tool: Paris: 21 degrees celsius, sunny" in out
    assert "ledger in dollars" in out and "relative cost" in out
    calls = [line for line in out.splitlines() if line.strip().startswith("turn ")]
    assert any(" cheap " in line and "in=" in line for line in calls)


@pytest.mark.slow
def test_lossless():
    out = run_example("lossless.py", "--small", "--question", "Convert 250 EUR to USD.")
    assert "mode A actions:" in out and "mode F actions:" in out
    assert "same actions: True" in out and "same actions: False" not in out  # lossless
    assert "draft tokens (" in out and "wall time: mode A" in out


@pytest.mark.slow
def test_train_your_own(tmp_path):
    out = run_example("train_your_own.py", "--small", "--work", str(tmp_path / "work"))
    assert "$ spec-tool-node data chat-logs" in out
    assert "$ spec-tool-node train verifier --method probe" in out
    assert "cross-validated AUROC" in out
    assert (tmp_path / "work" / "bundle" / "cascade.json").is_file()
    assert "relative cost" in out  # the agent ran on the new bundle
