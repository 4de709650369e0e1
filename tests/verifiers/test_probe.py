"""The probe verifier: rendering, pooling, the head's maths and files, scoring through the protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from langchain_core.messages import HumanMessage

from spec_tool_node.actions import RespondAction, ToolCall, ToolCallsAction
from spec_tool_node.chat_models.templates import render_reply
from spec_tool_node.verifiers.probe import (
    ProbeHead,
    ProbeVerifier,
    is_probe,
    pooled_hidden_states,
    render_draft,
    wrapped_tools,
)

TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CONTEXT = [HumanMessage("What's the weather in Paris?")]
RIGHT = ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})])
WRONG = ToolCallsAction(calls=[ToolCall(name="get_weather", arguments={"city": "Rome"})])


def _head(hidden: int, layers: list[int], pooling: str = "mean", seed: int = 0) -> ProbeHead:
    rng = np.random.default_rng(seed)
    dim = hidden * len(layers)
    return ProbeHead(
        base_model="tiny",
        layers=layers,
        pooling=pooling,
        mean=rng.normal(size=dim),
        scale=rng.uniform(0.5, 2.0, size=dim),
        weights=[rng.normal(size=(dim, 8)), rng.normal(size=(8, 1))],
        biases=[rng.normal(size=8), rng.normal(size=1)],
    )


def test_render_draft_is_the_proposers_prompt_then_the_templates_reply(tiny_tokenizer):
    rendered = render_draft(tiny_tokenizer, CONTEXT, [TOOL], RIGHT)
    prompt, completion = render_reply(
        tiny_tokenizer,
        CONTEXT,
        wrapped_tools([TOOL]),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
    )
    assert tiny_tokenizer.decode(rendered.input_ids[: rendered.reply_start]) == prompt
    assert tiny_tokenizer.decode(rendered.input_ids[rendered.reply_start :]) == completion
    # the value positions cover the tool name and the argument value, nothing of the wrapper
    values = tiny_tokenizer.decode([rendered.input_ids[i] for i in rendered.values])
    assert "get_weather" in values and "Paris" in values and "tool_call" not in values
    assert all(i >= rendered.reply_start for i in rendered.values)


def test_render_draft_cuts_the_prompt_from_the_left(tiny_tokenizer):
    full = render_draft(tiny_tokenizer, CONTEXT, [TOOL], RIGHT)
    cut = render_draft(tiny_tokenizer, CONTEXT, [TOOL], RIGHT, max_length=len(full.input_ids) - 5)
    assert cut.input_ids == full.input_ids[5:] and cut.reply_start == full.reply_start - 5
    assert [i - 5 for i in full.values] == cut.values


def test_a_text_reply_has_no_value_tokens(tiny_tokenizer):
    rendered = render_draft(tiny_tokenizer, CONTEXT, [TOOL], RespondAction(content="No tool fits."))
    assert rendered.values == [] and rendered.reply_start < len(rendered.input_ids)


def test_batched_features_equal_one_at_a_time(tiny_model, tiny_tokenizer):
    """Right padding with an attention mask: a row's features do not depend on its batch."""
    short = render_draft(tiny_tokenizer, CONTEXT, [TOOL], RIGHT)
    long = render_draft(
        tiny_tokenizer, [HumanMessage("Weather? " * 30)], [TOOL], RespondAction(content="Sunny.")
    )
    both = pooled_hidden_states(tiny_model, tiny_tokenizer, [short, long], [0, 1, 2], batch_size=2)
    alone = pooled_hidden_states(tiny_model, tiny_tokenizer, [short], [0, 1, 2], batch_size=1)
    assert both.shape == (2, 3, 3, tiny_model.config.hidden_size)
    np.testing.assert_allclose(both[0], alone[0], atol=1e-4)
    assert not np.allclose(both[0], both[1])


def test_head_predict_is_the_mlp_it_describes():
    head = _head(4, [1])
    x = np.random.default_rng(1).normal(size=(5, 4))
    z = (x - head.mean) / head.scale
    expected = 1 / (
        1
        + np.exp(
            -(
                np.maximum(z @ head.weights[0] + head.biases[0], 0) @ head.weights[1]
                + head.biases[1]
            )[:, 0]
        )
    )
    np.testing.assert_allclose(head.predict(x), expected)
    assert head.kind == "mlp2"


def test_head_round_trips_through_its_files(tmp_path):
    head = _head(4, [1, 2], pooling="values")
    head.threshold, head.card = 0.42, {"data": "test"}
    head.save(tmp_path / "probe")
    assert is_probe(tmp_path / "probe") and not is_probe(tmp_path) and not is_probe(None)
    loaded = ProbeHead.load(tmp_path / "probe")
    x = np.random.default_rng(2).normal(size=(6, 8))
    assert np.array_equal(loaded.predict(x), head.predict(x))
    assert (loaded.layers, loaded.pooling, loaded.threshold, loaded.card) == (
        [1, 2],
        "values",
        0.42,
        {"data": "test"},
    )
    assert not list((tmp_path / "probe").glob("*.pkl"))


def test_unknown_pooling_and_missing_folder_are_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown pooling"):
        _head(4, [1], pooling="max")
    with pytest.raises(FileNotFoundError, match="not a probe"):
        ProbeHead.load(tmp_path)


@pytest.mark.parametrize("pooling", ["mean", "last", "values"])
def test_verifier_scores_and_round_trips_to_identical_scores(
    tiny_model, tiny_tokenizer, tmp_path, pooling
):
    verifier = ProbeVerifier(
        _head(tiny_model.config.hidden_size, [1, 2], pooling), loaded=(tiny_model, tiny_tokenizer)
    )
    verdicts = verifier.score_batch(CONTEXT, [TOOL], [RIGHT, WRONG])
    assert len(verdicts) == 2 and all(0.0 <= v.p_accept <= 1.0 for v in verdicts)
    assert verdicts[0].p_accept != verdicts[1].p_accept
    assert verdicts[0].record.role == "verifier" and verdicts[1].record is None
    assert verdicts[0].record.input_tokens > 0
    verifier.save_pretrained(tmp_path / "probe")
    again = ProbeVerifier.from_pretrained(tmp_path / "probe", loaded=(tiny_model, tiny_tokenizer))
    assert [v.p_accept for v in again.score_batch(CONTEXT, [TOOL], [RIGHT, WRONG])] == [
        v.p_accept for v in verdicts
    ]
    assert verifier.score(CONTEXT, [TOOL], WRONG).p_accept == pytest.approx(verdicts[1].p_accept)


@pytest.mark.parametrize("pooling", ["mean", "last", "values"])
def test_predict_hidden_scores_a_drafting_pass_like_the_verifier(
    tiny_model, tiny_tokenizer, pooling
):
    """Mode G: the head applied to hidden states the caller already has gives the same p."""
    head = _head(tiny_model.config.hidden_size, [2], pooling)
    verifier = ProbeVerifier(head, loaded=(tiny_model, tiny_tokenizer))
    rendered = render_draft(tiny_tokenizer, CONTEXT, [TOOL], RIGHT)
    ids = torch.tensor([rendered.input_ids])
    with torch.inference_mode():
        hidden = tiny_model(input_ids=ids, output_hidden_states=True).hidden_states
    reply = torch.zeros_like(ids)
    reply[0, rendered.reply_start :] = 1
    values = torch.zeros_like(ids)
    values[0, rendered.values] = 1
    p = head.predict_hidden(hidden, reply, values)
    assert p[0] == pytest.approx(verifier.score(CONTEXT, [TOOL], RIGHT).p_accept, abs=1e-5)


def test_empty_batch_and_bad_max_length(tiny_model, tiny_tokenizer):
    verifier = ProbeVerifier(_head(64, [1]), loaded=(tiny_model, tiny_tokenizer))
    assert verifier.score_batch(CONTEXT, [TOOL], []) == []
    with pytest.raises(ValueError, match="max_length"):
        ProbeVerifier(_head(64, [1]), loaded=(tiny_model, tiny_tokenizer), max_length=0)


def test_a_bundle_with_a_probe_builds_a_node_with_the_probe_verifier(
    tiny_model, tiny_tokenizer, tmp_path
):
    from spec_tool_node.bundle import Bundle
    from spec_tool_node.config import CascadeConfig, ModelSpec
    from spec_tool_node.node import SpeculativeActionNode
    from spec_tool_node.verifiers import load_verifier

    base = tmp_path / "tiny"
    tiny_model.save_pretrained(base)
    tiny_tokenizer.save_pretrained(base)
    head = _head(tiny_model.config.hidden_size, [1], "values")
    head.save(tmp_path / "probe")
    config = CascadeConfig(
        mode="D",
        proposer=ModelSpec(model=str(base)),
        strong=ModelSpec(model=str(base)),
        verifier=ModelSpec(model=str(base), adapter=str(tmp_path / "probe")),
    )
    Bundle(config=config).save_pretrained(tmp_path / "bundle")
    assert (tmp_path / "bundle" / "adapters" / "verifier" / "head.safetensors").is_file()
    node = SpeculativeActionNode.from_pretrained(tmp_path / "bundle", tools=[TOOL])
    assert isinstance(node.verifier, ProbeVerifier)
    direct = ProbeVerifier(head, loaded=(tiny_model, tiny_tokenizer))
    assert node.verifier.score(CONTEXT, [TOOL], RIGHT).p_accept == pytest.approx(
        direct.score(CONTEXT, [TOOL], RIGHT).p_accept, abs=1e-6
    )
    # a folder that is not a probe is a LoRA adapter: the trained verifier is built for it
    with pytest.raises(ValueError, match="adapter"):
        load_verifier(str(base), str(tmp_path / "missing"))
