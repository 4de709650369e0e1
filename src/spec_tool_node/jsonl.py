"""The JSONL files the package appends to as it goes (caches of drafts, model outputs, results).

Runs are killed and resumed, so a file may end in a line cut off mid-write. Reading skips that
line (its record is computed again); :func:`append_records` first cuts it off, so a new record
never joins a broken one. Reading never writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from spec_tool_node.errors import SpecToolNodeError


class JSONLError(SpecToolNodeError, ValueError):
    """A line of a JSONL file that is not JSON (named by file and line)."""


def read_records(path: str | Path, *, strict: bool = False) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file in order; a missing file has none.

    A last line without its newline (a killed run's) is skipped. Any other line that is not
    JSON is skipped too, unless ``strict``, which raises :class:`JSONLError` naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        return
    # the part after the last newline is "" or a line cut off by a killed run (recomputed)
    *lines, _torn = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            if strict:
                raise JSONLError(f"{path}:{number}: not JSON: {e}") from e


def repair_tail(path: str | Path) -> None:
    """Cut off a last line that lacks its newline, so that appending starts on a fresh line."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def open_for_append(path: str | Path) -> TextIO:
    """Open a JSONL file for appending records (created with its folder; torn tail cut off)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(path)
    return path.open("a", encoding="utf-8")


def write_record(f: TextIO, record: dict[str, Any]) -> None:
    """Append one record and flush it, so a killed run keeps every finished record."""
    f.write(json.dumps(record, ensure_ascii=False) + "\n")
    f.flush()


def append_records(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records to a JSONL file (see :func:`open_for_append`)."""
    with open_for_append(path) as f:
        for record in records:
            write_record(f, record)


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write a whole JSONL file atomically (see :func:`write_text`); returns how many records
    were written."""
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    write_text(path, "".join(lines))
    return len(lines)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` whole or not at all: it is written beside it under
    a temporary name and renamed when the block ends, so a reader never sees it half-written and
    a killed run leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as sink:
        yield sink
    tmp.replace(path)


def write_text(path: str | Path, text: str) -> None:
    """Write a whole file atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as sink:
        sink.write(text.encode("utf-8"))
