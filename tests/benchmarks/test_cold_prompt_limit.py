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
    assert loaded.card["max_uncached_prompt_tokens"].startswith(f"{limit}: at a decision")


def test_the_drafts_above_the_limit_are_found_in_every_cache():
    """``cold_open_drafts.py`` looks at each training-side greedy draft whose prompt is longer
    than the limit, once, from every cache it is given (the models run only on those)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from cold_open_drafts import long_drafts
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    results = ROOT / "benchmarks" / "results"
    caches = [results / "probe" / "cache_train", CACHE, results / "cold_prompt" / "cache"]
    found = long_drafts(caches, 1862)
    assert len(found) == 24 and all(d["input_tokens"] > 1862 for d in found.values())
    assert sum("/" in key for key in found) == 12  # the agents' first decisions
    assert len(long_drafts(caches, 6528)) == 0
    rows = (results / "cold_prompt" / "open_drafts" / "rows.jsonl").read_text().splitlines()
    assert sorted(json.loads(row)["id"] for row in rows) == sorted(found)
