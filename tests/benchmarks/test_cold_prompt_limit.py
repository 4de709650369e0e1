"""The cold-prompt limit is chosen from committed training-side continuations and written into
a bundle the library loads back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from spec_tool_node.bundle import Bundle

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "benchmarks" / "results" / "first_decision" / "cache"


def test_the_limit_keeps_warm_first_decisions_and_skips_cold_ones(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "benchmarks" / "results" / "default_bundle", bundle)
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cold_prompt_limit.py"), "--cache", str(CACHE),
         "--bundle", str(bundle), "--json", str(tmp_path / "limit.json"), "--write", str(bundle)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "limit.json").read_text())
    rows, (kept_up_to, skipped_from) = result["rows"], result["choice"]["gap"]
    limit = result["choice"]["max_uncached_prompt_tokens"]
    assert len(rows) == 12 and kept_up_to <= limit < skipped_from
    # every first decision read cold (thousands of tokens) costs more than the strong model alone
    assert all(r["cost"] > 1 for r in rows if r["uncached"] > limit)
    assert sum(r["saving"] for r in rows if r["uncached"] <= limit) > 0
    loaded = Bundle.from_pretrained(bundle)
    assert loaded.config.max_uncached_prompt_tokens == limit
    assert str(limit) in (bundle / "README.md").read_text()
    assert loaded.card["max_uncached_prompt_tokens"].startswith(f"{limit}: where a draft")
