"""A draft in the writing, shared by the model that writes it and the model that checks it.

In mode F the strong model reads the prompt while the proposer drafts (``prefill``). Once it has
its own first token it can also read the draft as the draft grows: where the two part ways and
nothing after that point could be kept, the rest of the draft is of no use, and the proposer is
told to stop writing it. The check that follows is unchanged (it is lossless whatever the draft),
so stopping a draft early only saves the proposer's time.
"""

from __future__ import annotations

import threading


class DraftWatch:
    """The proposer's draft text as it grows, and whether the reader wants it to stop.

    The proposer calls :meth:`offer` with its text after each token and stops when told to; the
    reader calls :meth:`wait` for each new text and :meth:`stop` once the draft has gone where it
    will not follow. The driver calls :meth:`close` when drafting ends, whatever happened, so a
    reader never waits for a draft that is not coming. Thread-safe.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._text = ""
        self._version = 0
        self._closed = False
        self._stop = False
        self.read_tokens = 0
        """Draft tokens the reader has read so far (the ledger counts them as its work)."""

    def __repr__(self) -> str:
        return f"DraftWatch(version={self._version}, stopped={self._stop}, closed={self._closed})"

    def offer(self, text: str) -> bool:
        """The proposer's draft so far; returns whether it should stop writing."""
        with self._changed:
            if text != self._text and not self._closed:
                self._text, self._version = text, self._version + 1
                self._changed.notify_all()
            return self._stop

    def wait(self, seen: int, timeout: float | None = None) -> tuple[str, int] | None:
        """The draft once it is newer than version ``seen``: ``(text, version)``; ``None`` once
        drafting has ended (or after ``timeout`` seconds without news)."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._version > seen, timeout)
            if self._closed or self._version <= seen:
                return None
            return self._text, self._version

    def stop(self) -> None:
        """Tell the proposer to stop: the rest of its draft cannot be kept."""
        with self._changed:
            self._stop = True

    def close(self) -> None:
        """Drafting has ended; wake the reader."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def stopped(self) -> bool:
        """Whether the reader asked the proposer to stop."""
        return self._stop
