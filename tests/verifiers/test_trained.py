"""TrainedVerifier on a tiny random-initialised model built (and taught) inside the test."""

from __future__ import annotations

import asyncio

import pytest
import torch
from langchain_core.messages import HumanMessage

from spec_tool_node.actions import BlockedAction, RespondAction, ToolCall, ToolCallsAction
from spec_tool_node.verifiers import TrainedVerifier, label_token_ids, render_verifier_prompt
from tests.conftest import make_model, make_tokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CONTEXT = [HumanMessage("What's the weather in Paris?")]
GOOD = ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})])
BAD = RespondAction(content="I do not know.")
DRAFTS = [GOOD, BAD, BlockedAction(reason="refused by the model")]


def teach_labels(model, tokenizer, examples: list[tuple[str, int]], steps: int = 50) -> None:
    """Overfit the model so each prompt's next token is its label token (all prompts jointly)."""
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        loss = 0
        for prompt, label in examples:
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False).input_ids])
            logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1]
            loss = loss + torch.nn.functional.cross_entropy(logits[None], torch.tensor([label]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def verifier() -> TrainedVerifier:
    tokenizer = make_tokenizer()
    return TrainedVerifier(loaded=(make_model(tokenizer), tokenizer), name="tiny-verifier")


def test_probabilities_and_record(verifier):
    verdicts = verifier.score_batch(CONTEXT, TOOLS, DRAFTS)
    assert len(verdicts) == len(DRAFTS)
    assert all(0.0 <= v.p_accept <= 1.0 for v in verdicts)
    record = verdicts[0].record
    assert record is not None and all(v.record is None for v in verdicts[1:])
    assert (record.role, record.purpose, record.model) == ("verifier", "verify", "tiny-verifier")
    lengths = [
        len(
            verifier.tokenizer(
                render_verifier_prompt(verifier.tokenizer, CONTEXT, TOOLS, d)
            ).input_ids
        )
        for d in DRAFTS
    ]
    assert record.input_tokens == sum(lengths) > 0
    assert record.output_tokens == 0 and record.wall_s > 0
    assert verifier.score_batch(CONTEXT, TOOLS, []) == []


def test_batch_equals_each_draft_alone(verifier):
    batch = [v.p_accept for v in verifier.score_batch(CONTEXT, TOOLS, DRAFTS)]
    alone = [verifier.score(CONTEXT, TOOLS, d).p_accept for d in DRAFTS]
    assert batch == pytest.approx(alone, abs=1e-4)


def test_p_accept_is_softmax_of_label_logits(verifier):
    prompt = render_verifier_prompt(verifier.tokenizer, CONTEXT, TOOLS, GOOD)
    ids = torch.tensor([verifier.tokenizer(prompt, add_special_tokens=False).input_ids])
    with torch.no_grad():
        logits = verifier.model(ids).logits[0, -1]
    accept, reject = label_token_ids(verifier.tokenizer)
    expected = torch.sigmoid(logits[accept] - logits[reject]).item()
    assert verifier.score(CONTEXT, TOOLS, GOOD).p_accept == pytest.approx(expected, abs=1e-5)


def test_taught_verifier_separates_drafts():
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=1)
    accept, reject = label_token_ids(tokenizer)
    teach_labels(
        model,
        tokenizer,
        [
            (render_verifier_prompt(tokenizer, CONTEXT, TOOLS, GOOD), accept),
            (render_verifier_prompt(tokenizer, CONTEXT, TOOLS, BAD), reject),
        ],
    )
    verifier = TrainedVerifier(loaded=(model, tokenizer))
    good, bad = verifier.score_batch(CONTEXT, TOOLS, [GOOD, BAD])
    assert good.p_accept > 0.9
    assert bad.p_accept < 0.1
    assert asyncio.run(verifier.ascore_batch(CONTEXT, TOOLS, [BAD]))[0].p_accept < 0.1


def test_max_length_keeps_the_end(verifier):
    short = TrainedVerifier(loaded=(verifier.model, verifier.tokenizer), max_length=16)
    (verdict,) = short.score_batch(CONTEXT, TOOLS, [GOOD])
    assert verdict.record.input_tokens == 16 and 0.0 <= verdict.p_accept <= 1.0


def test_needs_a_model():
    with pytest.raises(ValueError, match="model=NAME"):
        TrainedVerifier()


def test_loads_from_saved_folder(tmp_path):
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    folder = tmp_path / "verifier"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    loaded = TrainedVerifier(model=str(folder), dtype="float32")
    assert loaded.name == str(folder)
    in_memory = TrainedVerifier(loaded=(model, tokenizer))
    got = [v.p_accept for v in loaded.score_batch(CONTEXT, TOOLS, DRAFTS)]
    want = [v.p_accept for v in in_memory.score_batch(CONTEXT, TOOLS, DRAFTS)]
    assert got == pytest.approx(want, abs=1e-4)
