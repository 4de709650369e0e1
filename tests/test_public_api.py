"""The package root: every public name, loaded lazily; the API-only path never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import spec_tool_node

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_every_public_name_resolves_and_is_listed():
    assert sorted(spec_tool_node.__all__) == sorted(spec_tool_node._WHERE)
    for name in set(spec_tool_node.__all__) - {"MODES"}:
        assert getattr(spec_tool_node, name).__name__ == name
    assert set(spec_tool_node.MODES) >= set("ABCDE")
    assert issubclass(spec_tool_node.CascadeError, spec_tool_node.SpecToolNodeError)
    assert issubclass(spec_tool_node.ConfigError, ValueError)


def test_importing_the_node_and_the_middleware_does_not_import_torch():
    done = _run(
        "import sys, spec_tool_node as s; s.SpeculativeActionNode; s.SpeculativeActionMiddleware;"
        " s.SafetyGateMiddleware; s.SpecAgentState; s.CascadeConfig; s.SafetyPolicy; s.CostModel;"
        " s.ChatModelVerifier; import spec_tool_node.verifiers;"
        " assert 'torch' not in sys.modules, 'torch'; assert 'transformers' not in sys.modules"
    )
    assert done.returncode == 0, done.stderr


def test_local_model_names_load_on_first_use():
    done = _run(
        "import sys, spec_tool_node as s; assert 'torch' not in sys.modules;"
        " s.HFChatModel, s.TrainedVerifier; assert 'torch' in sys.modules"
    )
    assert done.returncode == 0, done.stderr


def test_an_agent_with_api_models_runs_a_turn_without_torch():
    done = subprocess.run(
        [sys.executable, "-m", "tests.api_only_agent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "torch not imported" in done.stdout
