"""Mode F's read-along: the strong model reads the draft as it is written and stops it where it
has gone wrong for good; the reply it then writes is its own greedy reply all the same.

Tiny Qwen2 models taught one reply each, in real ``HFChatModel``s on real threads. The proposer
offers each token to a :class:`LockstepWatch`, which waits until the reader has taken it: a slow
proposer, so what is stopped where does not depend on thread timing.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.chat_models.watch import DraftWatch
from tests.chat_models.test_speculative import qwen2
from tests.conftest import CORPUS, make_tokenizer, teach

QUESTION = [HumanMessage("What's the weather in Paris?")]
ANSWER = "The weather is sunny, 21 degrees."
"""The strong model's reply: prose, which has no other written form."""
LONG_DRAFT = "The weather is sunny in Paris in celsius? The weather is sunny, 21 degrees. " * 2
"""The proposer's reply: agrees for four words, then goes on for many more tokens."""


class LockstepWatch(DraftWatch):
    """A watch whose every offer waits until the reader has taken it, or stopped, or left."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = 0
        self.gone = False

    def offer(self, text: str) -> bool:
        super().offer(text)
        with self._changed:
            self._changed.wait_for(
                lambda: self._stop or self.gone or self.taken >= self._version, timeout=10
            )
            return self._stop

    def wait(self, seen: int, timeout: float | None = None) -> tuple[str, int] | None:
        with self._changed:
            self.taken = seen
            self._changed.notify_all()
        return super().wait(seen, timeout)

    def leave(self) -> None:
        with self._changed:
            self.gone = True
            self._changed.notify_all()


def chat(
    reply: str | None, seed: int, name: str, tools: list[dict[str, Any]] | None = None
) -> HFChatModel:
    """A tiny model taught ``reply`` to QUESTION (with ``tools`` bound, as the node binds them)."""
    tokenizer = make_tokenizer()
    model = qwen2(tokenizer, seed=seed)
    model_chat = HFChatModel(model=name, loaded=(model, tokenizer), max_new_tokens=48)
    if reply is not None:
        teach(model, tokenizer, model_chat._prompt(QUESTION, tools, None), reply, steps=80)
    return model_chat


@pytest.fixture(scope="module")
def strong() -> HFChatModel:
    return chat(ANSWER, seed=5, name="tiny-strong")


@pytest.fixture(scope="module")
def proposer() -> HFChatModel:
    return chat(LONG_DRAFT, seed=6, name="tiny-cheap")


def watched_draft(strong: HFChatModel, proposer: HFChatModel) -> tuple[Any, LockstepWatch]:
    """The proposer drafts while the strong model reads the prompt and then the draft."""
    watch = LockstepWatch()
    strong.clear_prefix_cache()

    def read() -> None:
        try:
            strong.prefill(QUESTION, watch=watch)
        finally:
            watch.leave()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        draft = proposer.invoke(QUESTION, draft_watch=watch)
    finally:
        watch.close()
        reader.join(timeout=30)
    return draft, watch


def test_the_watch_passes_text_and_the_stop_between_threads():
    watch = DraftWatch()
    assert watch.offer("The") is False
    assert watch.wait(0) == ("The", 1)

    def waiting(seen: int) -> tuple[threading.Thread, list]:
        got: list = []
        reader = threading.Thread(target=lambda: got.append(watch.wait(seen, timeout=10)))
        reader.start()
        return reader, got

    reader, got = waiting(1)
    watch.offer("The weather")  # wakes the reader
    reader.join(timeout=10)
    assert got == [("The weather", 2)]
    watch.stop()
    assert watch.offer("The weather is") is True and watch.stopped
    reader, got = waiting(3)
    watch.close()  # wakes the reader with nothing more to read
    reader.join(timeout=10)
    assert got == [None] and watch.wait(0) is None


def test_a_prose_draft_is_stopped_where_it_parts_from_the_strong_reply(strong, proposer):
    want = strong.invoke(QUESTION)
    assert want.content == ANSWER
    full = proposer.invoke(QUESTION)
    assert full.response_metadata["raw_text"].startswith("The weather is sunny in Paris")

    draft, watch = watched_draft(strong, proposer)
    assert draft.response_metadata["finish_reason"] == "stopped_early"
    assert full.response_metadata["raw_text"].startswith(draft.response_metadata["raw_text"])
    assert draft.usage_metadata["output_tokens"] < full.usage_metadata["output_tokens"] // 2
    assert watch.read_tokens > 0  # it read a stretch of the draft it agreed with

    # the check after it: the strong model's own reply, keeping what the whole draft would
    stopped, whole = strong.continue_draft(QUESTION, draft), strong.continue_draft(QUESTION, full)
    assert stopped.response_metadata["raw_text"] == want.response_metadata["raw_text"]
    kept = stopped.response_metadata["lossless"]["kept_tokens"]
    assert kept == whole.response_metadata["lossless"]["kept_tokens"] > 0


def test_a_draft_wrong_from_its_first_token_is_stopped_unread(strong):
    stranger = chat(None, seed=9, name="tiny-untaught")
    full = stranger.invoke(QUESTION)
    draft, watch = watched_draft(strong, stranger)
    assert draft.response_metadata["finish_reason"] == "stopped_early"
    assert draft.usage_metadata["output_tokens"] <= 2 < full.usage_metadata["output_tokens"]
    assert watch.read_tokens == 0
    assert strong.continue_draft(QUESTION, draft).content == ANSWER


def test_a_reply_that_starts_like_a_tool_call_is_not_watched(proposer):
    """A call may be kept in another written form than the draft's, so a strong reply that
    starts like one never stops a draft: the check decides."""
    caller = chat(CORPUS[0], seed=7, name="tiny-caller")
    full = proposer.invoke(QUESTION)
    draft, watch = watched_draft(caller, proposer)
    assert draft.response_metadata["finish_reason"] != "stopped_early"
    assert draft.response_metadata["raw_text"] == full.response_metadata["raw_text"]
    assert watch.read_tokens == 0 and not watch.stopped


def test_a_read_along_that_fails_leaves_no_cache_behind(strong, proposer, monkeypatch):
    """A failure in the middle of reading the draft may leave the cache half-extended: it is
    dropped, and the check reads the prompt itself."""

    def broken(self, watch, cache, choice):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(HFChatModel, "_read_along", broken)
    strong.clear_prefix_cache()
    with pytest.raises(RuntimeError, match="out of memory"):
        strong.prefill(QUESTION, watch=DraftWatch())
    check = strong.continue_draft(QUESTION, proposer.invoke(QUESTION))
    assert check.usage_metadata["input_token_details"]["cache_read"] == 0
    assert check.content == ANSWER
