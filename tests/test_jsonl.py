"""JSONL caches: a killed run's torn last line is skipped on reading and cut off before appending."""

from __future__ import annotations

import pytest

from spec_tool_node.jsonl import JSONLError, append_records, read_records


def test_a_torn_last_line_is_skipped_and_reading_never_writes(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "te')
    before = path.read_bytes()
    assert [r["id"] for r in read_records(path)] == ["a", "b"]
    assert path.read_bytes() == before
    assert list(read_records(tmp_path / "missing.jsonl")) == []


def test_appending_cuts_the_torn_line_off_first(tmp_path):
    path = tmp_path / "sub" / "cache.jsonl"
    append_records(path, [{"id": "a"}])
    path.write_text(path.read_text() + '{"id": "b", "te')
    append_records(path, [{"id": "b"}, {"id": "ü"}])
    assert path.read_text(encoding="utf-8") == '{"id": "a"}\n{"id": "b"}\n{"id": "ü"}\n'
    assert [r["id"] for r in read_records(path, strict=True)] == ["a", "b", "ü"]


def test_a_bad_line_inside_is_skipped_or_named(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"id": "a"}\n{oops\n{"id": "b"}\n')
    assert [r["id"] for r in read_records(path)] == ["a", "b"]
    with pytest.raises(JSONLError, match=r"cache\.jsonl:2: not JSON"):  # a SpecToolNodeError
        list(read_records(path, strict=True))
