"""The probe verifier: rendering, pooling, the head's maths and files, scoring through the protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage

from spec_tool_node.actions import RespondAction, ToolCall, ToolCallsAction
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.chat_models.templates import render_reply
from spec_tool_node.verifiers.probe import (
    LOGPROB_STATS,
    POOLINGS,
    ProbeHead,
    ProbeVerifier,
    RenderedDraft,
    is_probe,
    read_drafts,
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
    both = read_drafts(tiny_model, tiny_tokenizer, [short, long], [0, 1, 2], batch_size=2)
    alone = read_drafts(tiny_model, tiny_tokenizer, [short], [0, 1, 2], batch_size=1)
    assert both.pooled.shape == (2, len(POOLINGS), 3, tiny_model.config.hidden_size)
    assert both.logprobs.shape == (2, len(LOGPROB_STATS))
    np.testing.assert_allclose(both.pooled[0], alone.pooled[0], atol=1e-4)
    np.testing.assert_allclose(both.logprobs[0], alone.logprobs[0], atol=1e-4)
    assert not np.allclose(both.pooled[0], both.pooled[1])


def test_logprob_stats_are_the_models_own_log_probs_of_the_reply(tiny_model, tiny_tokenizer):
    """The statistics equal a full pass's logits at the reply's tokens: the mean and minimum over
    the value tokens (the whole reply for a text answer) and the mean over the reply."""
    call = render_draft(tiny_tokenizer, CONTEXT, [TOOL], RIGHT)
    text = render_draft(tiny_tokenizer, CONTEXT, [TOOL], RespondAction(content="Sunny."))
    reading = read_drafts(tiny_model, tiny_tokenizer, [call, text], [1], ["mean"], batch_size=2)
    for row, r in enumerate([call, text]):
        with torch.inference_mode():
            logits = tiny_model(input_ids=torch.tensor([r.input_ids])).logits[0].float()
        token = torch.log_softmax(logits, -1)[torch.arange(len(r.input_ids) - 1), r.input_ids[1:]]
        reply = token[r.reply_start - 1 :].numpy()
        values = token[[p - 1 for p in r.values]].numpy() if r.values else reply
        expected = [values.mean(), values.min(), reply.mean()]
        np.testing.assert_allclose(reading.logprobs[row], expected, atol=1e-4)
    assert call.values and reading.logprobs[0, 0] != reading.logprobs[0, 2]


def test_a_head_with_logprob_stats_reads_them_after_the_hidden_states(
    tiny_model, tiny_tokenizer, tmp_path
):
    hidden = tiny_model.config.hidden_size
    head = _head(hidden + 1, [1])  # one layer plus one statistic
    head.layers, head.logprob_stats = [1], ["values_min"]
    verifier = ProbeVerifier(head, loaded=(tiny_model, tiny_tokenizer))
    reading = read_drafts(
        tiny_model,
        tiny_tokenizer,
        [render_draft(tiny_tokenizer, CONTEXT, [TOOL], WRONG)],
        [1],
        ["mean"],
    )
    expected = head.predict(
        np.concatenate([reading.pooled[:, 0, 0], reading.logprobs[:, [1]]], axis=1)
    )
    assert verifier.score(CONTEXT, [TOOL], WRONG).p_accept == pytest.approx(expected[0], abs=1e-5)
    head.save(tmp_path / "probe")
    again = ProbeVerifier.from_pretrained(tmp_path / "probe", loaded=(tiny_model, tiny_tokenizer))
    assert again.head.logprob_stats == ["values_min"]
    assert again.score(CONTEXT, [TOOL], WRONG).p_accept == pytest.approx(expected[0], abs=1e-5)
    with pytest.raises(ValueError, match="unknown log-prob statistics"):
        ProbeHead(
            "tiny",
            [1],
            "mean",
            head.mean,
            head.scale,
            head.weights,
            head.biases,
            logprob_stats=["entropy"],
        )
    with pytest.raises(ValueError, match="at least one layer"):
        ProbeHead("tiny", [], "mean", head.mean, head.scale, head.weights, head.biases)


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
    # a key this release does not read (a newer head) is refused, not silently ignored
    config = json.loads((tmp_path / "probe" / "probe.json").read_text())
    (tmp_path / "probe" / "probe.json").write_text(json.dumps({**config, "calibration": "x"}))
    with pytest.raises(ValueError, match=r"unknown keys \['calibration'\]"):
        ProbeHead.load(tmp_path / "probe")


def test_a_head_per_kind_scores_each_draft_with_the_head_of_its_kind(
    tiny_model, tiny_tokenizer, tmp_path
):
    """Tool-call drafts go to the head, text drafts to its text head; both survive the files."""
    hidden = tiny_model.config.hidden_size
    calls, text = _head(hidden, [1], seed=1), _head(hidden, [1], seed=2)
    head = ProbeHead(**{**calls.__dict__, "text_head": text})
    x = np.random.default_rng(3).normal(size=(4, hidden))
    kinds = [True, False, True, False]
    expected = np.where(kinds, calls.predict(x), text.predict(x))
    np.testing.assert_allclose(head.predict(x, kinds), expected)
    with pytest.raises(ValueError, match="which drafts call tools"):
        head.predict(x)
    head.save(tmp_path / "probe")
    loaded = ProbeHead.load(tmp_path / "probe")
    assert loaded.text_head is not None and (tmp_path / "probe" / "text" / "probe.json").is_file()
    np.testing.assert_array_equal(loaded.predict(x, kinds), head.predict(x, kinds))
    verifier = ProbeVerifier(head, loaded=(tiny_model, tiny_tokenizer))
    answer = RespondAction(content="Sunny in Paris.")
    got = verifier.score_batch(CONTEXT, [TOOL], [RIGHT, answer])
    features, _ = verifier.features(CONTEXT, [TOOL], [RIGHT, answer])
    assert got[0].p_accept == pytest.approx(calls.predict(features)[0])
    assert got[1].p_accept == pytest.approx(text.predict(features)[1])
    other = _head(hidden, [2])
    with pytest.raises(ValueError, match="same base model, layers"):
        ProbeHead(**{**calls.__dict__, "text_head": other})


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


def _drafting_features(model, tokenizer, prompt_ids, reply_ids, layers):
    """The ``drafting`` pooling of one forward pass over the prompt and the reply's tokens."""
    rendered = RenderedDraft(prompt_ids + reply_ids, len(prompt_ids))
    return read_drafts(model, tokenizer, [rendered], layers, ["drafting"]).pooled[0, 0]


def test_the_drafting_pass_returns_the_drafting_pooling_of_its_own_tokens(
    tiny_model, tiny_tokenizer
):
    """Mode G's features: what generation computed equals one teacher-forced pass over the same
    tokens, pooled over the positions that wrote the reply; batched rows too."""
    chat = HFChatModel(
        model="tiny", loaded=(tiny_model, tiny_tokenizer), max_new_tokens=10, prefix_cache=0
    )
    other = [HumanMessage("And in Oslo, please, tomorrow morning?")]
    single = [chat.invoke(c, hidden_layers=(1, 2)) for c in (CONTEXT, other)]
    batched = chat.invoke_many([CONTEXT, other], hidden_layers=(1, 2))
    for context, reply, row in zip((CONTEXT, other), single, batched, strict=True):
        prompt_ids = tiny_tokenizer(chat._prompt(context, None, None), add_special_tokens=False)
        prompt_ids = prompt_ids.input_ids
        length = reply.usage_metadata["output_tokens"]
        with torch.inference_mode():
            ids = tiny_model.generate(
                torch.tensor([prompt_ids]), max_new_tokens=length, do_sample=False
            )[0, len(prompt_ids) :].tolist()
        expected = _drafting_features(tiny_model, tiny_tokenizer, prompt_ids, ids, [1, 2])
        for got in (reply, row):
            states = got.response_metadata["hidden_states"]
            assert got.usage_metadata["output_tokens"] == length
            for j, layer in enumerate((1, 2)):
                np.testing.assert_allclose(states[str(layer)], expected[j], atol=1e-4)


def test_a_drafting_probe_scores_the_drafting_pass_without_loading_a_model(
    tiny_model, tiny_tokenizer
):
    head = _head(tiny_model.config.hidden_size, [1, 2], "drafting")
    verifier = ProbeVerifier(head, model="tiny")  # "tiny" is no model: loading it would fail
    chat = HFChatModel(model="tiny", loaded=(tiny_model, tiny_tokenizer), max_new_tokens=6)
    assert verifier.reads_drafting_pass
    options = verifier.drafting_options(chat)
    assert options == {"hidden_layers": (1, 2)}
    reply = chat.invoke(CONTEXT, **options)
    states = reply.response_metadata["hidden_states"]
    features = np.concatenate([states["1"], states["2"]])[None, :]
    assert verifier.score_drafted(reply) == pytest.approx(head.predict(features)[0])
    assert verifier.score_drafted(AIMessage("no states")) is None
    assert head.predict_drafted({"1": states["1"]}, calls=True) is None  # a layer missing
    assert verifier._loaded is None


def test_mode_g_refuses_a_probe_that_cannot_read_this_proposer(tiny_model, tiny_tokenizer):
    from spec_tool_node.errors import ConfigError

    chat = HFChatModel(model="tiny", loaded=(tiny_model, tiny_tokenizer), max_new_tokens=6)
    mean = ProbeVerifier(_head(tiny_model.config.hidden_size, [1], "mean"), model="tiny")
    assert not mean.reads_drafting_pass
    with pytest.raises(ConfigError, match="drafting"):
        mean.drafting_options(chat)
    drafting = ProbeVerifier(_head(tiny_model.config.hidden_size, [1], "drafting"), model="x")
    with pytest.raises(ConfigError, match="hidden states of 'x'"):
        drafting.drafting_options(chat)
    with pytest.raises(ConfigError, match="local proposer"):
        drafting.drafting_options(object())
    with_stats = ProbeVerifier(_head(tiny_model.config.hidden_size + 1, [1], "drafting"))
    with_stats.head.logprob_stats = ["values_mean"]
    assert not with_stats.reads_drafting_pass
    with pytest.raises(ConfigError, match="log-prob statistics"):
        with_stats.drafting_options(chat)


def test_mode_g_with_a_drafting_probe_gates_on_its_score(tiny_model, tiny_tokenizer):
    """The node binds the probe's options to the proposer and accepts exactly when the probe's
    p(ACCEPT) of the drafting pass reaches the gate threshold; a head that needs a pass of its
    own is refused at construction."""
    from spec_tool_node.config import CascadeConfig
    from spec_tool_node.errors import ConfigError
    from spec_tool_node.node import SpeculativeActionNode

    def chat(name: str) -> HFChatModel:
        return HFChatModel(model=name, loaded=(tiny_model, tiny_tokenizer), max_new_tokens=6)

    head = _head(tiny_model.config.hidden_size, [2], "drafting")
    head.weights = [w * 0.01 for w in head.weights]  # a p away from 0 and 1
    verifier = ProbeVerifier(head, model="tiny")
    proposer = chat("tiny")
    p = verifier.score_drafted(proposer.invoke(CONTEXT, hidden_layers=(2,)))
    assert 0.01 < p < 0.99
    for threshold, path in ((p - 1e-6, "accepted"), (min(p + 1e-3, 1.0), "fallback")):
        node = SpeculativeActionNode(
            proposer=proposer,
            strong=chat("tiny-strong"),
            verifier=verifier,
            config=CascadeConfig(mode="gate", gate_threshold=threshold),
        )
        (turn,) = node.invoke({"messages": CONTEXT})["spec_ledger"]
        assert turn.p_accept == pytest.approx(p) and turn.path == path, turn
    with pytest.raises(ConfigError, match="drafting"):
        SpeculativeActionNode(
            proposer=proposer,
            strong=chat("tiny-strong"),
            verifier=ProbeVerifier(_head(tiny_model.config.hidden_size, [2], "mean"), model="tiny"),
            config=CascadeConfig(mode="G"),
        )


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


def test_eval_simulates_mode_g_with_a_drafting_probe_bundle(
    tiny_model, tiny_tokenizer, tmp_path, capsys
):
    """``spec-tool-node eval --bundle`` collects the drafts with the probe's layers and replays
    mode G on the probe's scores; a cache whose drafts lack the states is refused by name."""
    from spec_tool_node.bundle import Bundle
    from spec_tool_node.cli import main
    from spec_tool_node.config import CascadeConfig, ModelSpec
    from spec_tool_node.evaluation.collector import rebuild_message
    from spec_tool_node.example_files import write_examples
    from tests.evaluation import toy

    base = tmp_path / "tiny"
    tiny_model.save_pretrained(base)
    tiny_tokenizer.save_pretrained(base)
    head = _head(tiny_model.config.hidden_size, [2], "drafting")
    head.weights = [w * 0.01 for w in head.weights]
    head.save(tmp_path / "probe")
    model = ModelSpec(model=str(base))
    config = CascadeConfig(
        mode="G",
        gate_threshold=0.5,
        proposer=model,
        strong=model,
        verifier=ModelSpec(model=str(base), adapter=str(tmp_path / "probe")),
    )
    Bundle(config=config).save_pretrained(tmp_path / "bundle")
    data = tmp_path / "toy.jsonl"
    write_examples(data, toy.examples()[:3])
    common = ["--data", str(data), "--max-new-tokens", "6", "--batch-size", "1"]
    out = tmp_path / "out"
    code = main(["eval", *common, "--bundle", str(tmp_path / "bundle"), "--modes", "A,G",
                 "--cache", str(tmp_path / "cache"), "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    verifier = ProbeVerifier(head, model=str(base))
    drafts = {
        json.loads(line)["id"]: json.loads(line)["draft"]
        for f in (tmp_path / "cache").glob("proposer--*.jsonl")
        for line in f.read_text().splitlines()
    }
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    gated = [r for r in rows if r["mode"] == "G" and drafts[r["id"]]["valid"]]
    assert gated
    for row in gated:
        expected = verifier.score_drafted(rebuild_message(drafts[row["id"]]))
        assert row["p_accept"] == pytest.approx(expected)
    # drafts collected without the probe carry no states: mode G refuses them
    plain = tmp_path / "plain"
    assert main(["eval", *common, "--proposer", str(base), "--strong", str(base), "--modes",
                 "A,B", "--cache", str(plain), "--out", str(tmp_path / "o2")]) == 0  # fmt: skip
    code = main(["eval", *common, "--bundle", str(tmp_path / "bundle"), "--modes", "G",
                 "--cache", str(plain), "--out", str(tmp_path / "o3")])  # fmt: skip
    assert code == 2
    assert "lack them" in capsys.readouterr().err


def test_a_base_model_that_cannot_load_shows_as_a_rejected_draft_with_its_error(tmp_path):
    """The base model loads on first use: in mode D a name that cannot be loaded makes the
    first score fail, which rejects the draft (the strong model acts) and names the error."""
    from spec_tool_node.config import CascadeConfig
    from spec_tool_node.node import SpeculativeActionNode
    from tests.scripted import ScriptedChatModel, call, say

    verifier = ProbeVerifier(_head(8, [1]), model=str(tmp_path / "no-such-model"))
    node = SpeculativeActionNode(
        proposer=ScriptedChatModel(name="cheap", script=[call("get_weather", city="Paris")]),
        strong=ScriptedChatModel(name="strong", script=[say("Sunny.")]),
        verifier=verifier,
        tools=[TOOL],
        config=CascadeConfig(mode="D"),
    )
    (turn,) = node.invoke({"messages": CONTEXT})["spec_ledger"]
    assert turn.path == "fallback" and turn.winner == "strong"
    assert "could not load model" in turn.reject_reason


def test_mode_g_middleware_reads_the_drafting_pass_through_create_agent(tiny_model, tiny_tokenizer):
    """The middleware binds the probe's layers into the draft request's model settings: the
    decision's p(ACCEPT) is the probe's reading of the drafting pass, with no verifier call."""
    from langchain.agents import create_agent

    from spec_tool_node.config import CascadeConfig
    from spec_tool_node.middleware import SpeculativeActionMiddleware

    def chat(name: str) -> HFChatModel:
        return HFChatModel(model=name, loaded=(tiny_model, tiny_tokenizer), max_new_tokens=6)

    head = _head(tiny_model.config.hidden_size, [2], "drafting")
    head.weights = [w * 0.01 for w in head.weights]
    verifier = ProbeVerifier(head, model="tiny")
    middleware = SpeculativeActionMiddleware(
        proposer=chat("tiny"), verifier=verifier, config=CascadeConfig(mode="G", gate_threshold=0.0)
    )
    assert middleware.draft_kwargs == {"hidden_layers": (2,)}
    agent = create_agent(model=chat("tiny-strong"), tools=[], middleware=[middleware])
    out = agent.invoke({"messages": CONTEXT})
    (turn,) = out["spec_ledger"]
    assert turn.path == "accepted" and 0.0 < turn.p_accept < 1.0
    assert [c.role for c in turn.calls] == ["cheap"]
