"""Training data and LoRA SFT on a tiny random-initialised model built inside the test."""

from __future__ import annotations

import json

import pytest
import torch
from langchain_core.messages import convert_to_messages

from spec_tool_node.actions import action_from_canonical, canonical_text
from spec_tool_node.chat_models.hf import HFChatModel
from spec_tool_node.example_files import Example, ExampleError
from spec_tool_node.training.data import (
    TemplateError,
    build_pairs,
    gold_action,
    mine_drafts,
    read_chat_logs,
    render_pair,
    render_sft,
)
from spec_tool_node.training.sft import lora_config, train_lora, train_sft, training_arguments
from spec_tool_node.verifiers import label_token_ids
from tests.conftest import make_model, teach

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


def example(i: int = 0, city: str = "Paris") -> Example:
    return Example(
        id=f"ex{i}",
        tools=[WEATHER_TOOL, TIME_TOOL],
        messages=[{"role": "user", "content": f"What's the weather in {city}?"}],
        gold=[{"get_weather": {"city": [city], "unit": ["", "celsius"]}}],
    )


def test_labels_cover_only_the_action_tokens(tiny_tokenizer):
    features = render_sft(tiny_tokenizer, example())
    labelled = [
        t for t, lab in zip(features.input_ids, features.labels, strict=True) if lab != -100
    ]
    assert features.labels[: features.prompt_length] == [-100] * features.prompt_length
    assert tiny_tokenizer.decode(labelled) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
        "\n</tool_call><|im_end|>"
    )


def test_training_prompt_equals_inference_prompt_token_for_token(tiny_tokenizer):
    chat = HFChatModel(model="tiny", loaded=(make_model(tiny_tokenizer), tiny_tokenizer))
    ex = example()
    features = render_sft(tiny_tokenizer, ex)
    inference = chat._prompt(
        convert_to_messages(ex.messages), chat.bind_tools(ex.tools).kwargs["tools"], None
    )
    assert (
        features.input_ids[: features.prompt_length]
        == tiny_tokenizer(inference, add_special_tokens=False).input_ids
    )


def test_respond_and_blocked_targets(tiny_tokenizer):
    respond = Example(
        id="r",
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Tell me a joke"}],
        gold="respond",
    )
    blocked = Example(
        id="b",
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Wipe the disk"}],
        gold="blocked",
    )
    for ex, start in ((respond, "None of the available tools"), (blocked, "BLOCKED: ")):
        f = render_sft(tiny_tokenizer, ex)
        assert tiny_tokenizer.decode([t for t in f.labels if t != -100]).startswith(start)


def test_template_that_cannot_render_tools_fails_before_training(tmp_path, tiny_tokenizer):
    # Like Gemma's templates: no tool support and no system role, so neither the native path nor
    # the system-prompt fallback can render tools.
    tiny_tokenizer.chat_template = (
        "{% if tools %}{{ raise_exception('tools not supported') }}{% endif %}"
        "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
    )
    folder = tmp_path / "base"
    make_model(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    with pytest.raises(
        TemplateError,
        match="example 'ex0': the chat template cannot render it: System role not supported",
    ):
        train_sft(str(folder), [example()], tmp_path / "run", training_arguments("x", max_steps=1))
    assert not (tmp_path / "run").exists()


def test_chat_log_reader_and_bad_lines(tmp_path):
    log = {
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
        ],
    }
    path = tmp_path / "logs.jsonl"
    path.write_text(
        json.dumps(log)
        + "\n{not json\n"
        + json.dumps(
            {
                "messages": [
                    {"role": "user"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "nope", "arguments": "{}"}}],
                    },
                ],
                "tools": [],
            }
        )
        + "\n"
    )
    with pytest.raises(ExampleError, match=r"logs.jsonl:2: "):
        read_chat_logs(path)
    with pytest.warns(UserWarning) as caught:
        examples = read_chat_logs(path, on_error="skip")
    assert [str(w.message).split(": ")[0].rsplit(":", 1)[1] for w in caught] == ["2", "3"]
    assert [e.gold for e in examples] == [[{"get_weather": {"city": ["Paris"]}}], "respond"]
    assert len(examples[1].messages) == 3

    path.write_text(json.dumps({"tools": []}) + "\n")
    with pytest.raises(ExampleError, match=r"logs\.jsonl:1: missing field 'messages'"):
        read_chat_logs(path)


def test_pairs_are_balanced_with_the_mix_reported():
    examples = [example(i, city) for i, city in enumerate(["Paris", "Lyon", "Nice", "Rome"])]
    drafts = {
        "ex0": [canonical_text(gold_action(examples[0]))],
        "ex1": ['{"tool_calls": [{"arguments": {"city": "Berlin"}, "name": "get_weather"}]}'],
    }
    pairs, mix = build_pairs(examples, drafts, seed=0)
    assert sum(p.accept for p in pairs) == sum(not p.accept for p in pairs) > 0
    assert mix["proposer_wrong"] == 1 and sum(mix.values()) == len(pairs)
    assert all(
        k in {"gold", "proposer_right", "proposer_wrong"} or k.startswith("corrupt_") for k in mix
    )
    for p in pairs:  # every negative really is wrong, every positive right
        from spec_tool_node.bfcl.matching import matches

        ex = next(e for e in examples if e.id == p.example_id)
        assert matches(action_from_canonical(p.draft), ex.gold) == p.accept


def test_hard_negatives_come_from_running_the_proposer(tmp_path, tiny_tokenizer):
    model = make_model(tiny_tokenizer)
    proposer = HFChatModel(model="tiny", loaded=(model, tiny_tokenizer), max_new_tokens=40)
    ex = example()
    wrong = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>'
    prompt = proposer._prompt(
        convert_to_messages(ex.messages), proposer.bind_tools(ex.tools).kwargs["tools"], None
    )
    teach(model, tiny_tokenizer, prompt, wrong)
    drafts = mine_drafts(proposer, [ex], tmp_path / "drafts.jsonl", progress=False)
    assert drafts == {
        "ex0": ['{"tool_calls": [{"arguments": {"city": "Lyon"}, "name": "get_weather"}]}']
    }
    _, mix = build_pairs([ex], drafts)
    assert mix["proposer_wrong"] == 1
    assert (
        mine_drafts(proposer, [ex], tmp_path / "drafts.jsonl", progress=False) == drafts
    )  # cached
    assert len((tmp_path / "drafts.jsonl").read_text().splitlines()) == 1


def test_mining_batches_through_the_collector_and_resumes(tmp_path, tiny_tokenizer):
    """Drafts written in one left-padded batch are the ones written one at a time; the
    collector's records sit beside the draft file; an id already in the file is not mined."""
    proposer = HFChatModel(
        model="tiny", loaded=(make_model(tiny_tokenizer), tiny_tokenizer), max_new_tokens=12
    )
    examples = [example(i, city) for i, city in enumerate(["Paris", "Oslo", "Lyon", "Rome"])]
    batched = tmp_path / "batched.jsonl"
    single = tmp_path / "single.jsonl"
    mine_drafts(proposer, examples, batched, signals=True, progress=False, batch_size=4)
    mine_drafts(proposer, examples, single, signals=True, progress=False, batch_size=1)
    lines = [[json.loads(x) for x in f.read_text().splitlines()] for f in (batched, single)]
    keep = ("id", "text", "draft", "valid", "right", "error", "output_tokens")
    assert [{k: r.get(k) for k in keep} for r in lines[0]] == [
        {k: r.get(k) for k in keep} for r in lines[1]
    ]
    assert all(r["mean_logprob"] < 0 for r in lines[0])
    assert (tmp_path / "batched.records").is_dir()
    # an older draft file: its ids are kept as they are, only the new example is mined
    older = tmp_path / "older.jsonl"
    older.write_text(json.dumps({"id": "ex0", "draft": None, "valid": False}) + "\n")
    mine_drafts(proposer, examples[:2], older, progress=False)
    ids = [json.loads(x)["id"] for x in older.read_text().splitlines()]
    assert ids == ["ex0", "ex1"]


def test_verifier_pair_features_end_in_one_label_token(tiny_tokenizer):
    ex = example()
    pairs, _ = build_pairs([ex], {})
    accept_id, reject_id = label_token_ids(tiny_tokenizer)
    for p in pairs:
        f = render_pair(tiny_tokenizer, ex, p)
        assert [t for t in f.labels if t != -100] == [accept_id if p.accept else reject_id]
        assert f.labels[-1] == f.input_ids[-1]


def test_lora_sft_learns_saves_loads_and_resumes(tmp_path, tiny_tokenizer):
    base = tmp_path / "base"
    make_model(tiny_tokenizer).save_pretrained(base)
    tiny_tokenizer.save_pretrained(base)
    examples = [example(i, c) for i, c in enumerate(["Paris", "Lyon"])]
    options = {
        "save_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 5e-3,
        "logging_steps": 1,
    }
    args = training_arguments("unused", max_steps=4, **options)  # the run's folder wins
    lora = lora_config(r=4, lora_alpha=8)
    adapter = train_sft(
        str(base), examples, tmp_path / "run", args, lora, eval_examples=examples[:1]
    )
    assert adapter == tmp_path / "run" / "adapter"
    history = json.loads((adapter / "training.json").read_text())
    losses = [h["loss"] for h in history["log_history"] if "loss" in h]
    assert history["global_step"] == 4 and losses[-1] < losses[0]

    # resume: a longer run in the same folder continues from the last checkpoint (step 4)
    args = training_arguments(tmp_path / "run", max_steps=6, **options)
    adapter = train_sft(str(base), examples, tmp_path / "run", args, lora)
    resumed = json.loads((adapter / "training.json").read_text())
    assert resumed["global_step"] == 6 and resumed["resumed_from_step"] == 4
    first = [h["loss"] for h in resumed["log_history"] if "loss" in h][:4]
    assert first == losses  # steps 1-4 come from the checkpoint, not from training again

    # save/load round trip: the adapter loaded by HFChatModel scores exactly like a fresh load
    a = HFChatModel(model=str(base), adapter=str(adapter), dtype="float32")
    b = HFChatModel(model=str(base), adapter=str(adapter), dtype="float32")
    base_model = HFChatModel(model=str(base), dtype="float32")
    msgs = convert_to_messages(examples[0].messages)
    target = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
        "\n</tool_call>"
    )
    sa, sb, s0 = (
        m.score_continuation(msgs, target, tools=examples[0].tools) for m in (a, b, base_model)
    )
    assert torch.allclose(torch.tensor(sa.logprobs), torch.tensor(sb.logprobs))
    assert sa.mean_logprob > s0.mean_logprob  # training changed the weights toward the target


def test_train_lora_changes_the_adapter_weights(tmp_path, tiny_tokenizer):
    from safetensors.torch import load_file

    features = [render_sft(tiny_tokenizer, example())]
    args = training_arguments(
        tmp_path / "r", max_steps=2, per_device_train_batch_size=1, learning_rate=1e-2
    )
    lora = lora_config(r=2, lora_alpha=4)
    adapter = train_lora(make_model(tiny_tokenizer), tiny_tokenizer, features, args, lora)
    assert adapter == tmp_path / "r" / "adapter"
    saved = json.loads((adapter / "training.json").read_text())
    assert saved["lora"]["r"] == 2 and saved["training_args"]["max_steps"] == 2
    weights = load_file(adapter / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # LoRA B starts at zero


def test_gold_action_is_the_plain_call_and_resolves_nested_possible_answers():
    from spec_tool_node.bfcl.matching import matches

    tool = {
        "type": "function",
        "function": {
            "name": "set_ac",
            "parameters": {
                "type": "object",
                "properties": {
                    "body": {
                        "type": "object",
                        "properties": {
                            "mode": {"type": "string"},
                            "target": {"type": "integer"},
                        },
                    },
                    "room": {"type": "string"},
                },
                "required": ["body"],
            },
        },
    }
    ex = Example(
        id="nested",
        tools=[tool],
        messages=[{"role": "user", "content": "Cool mode please."}],
        gold=[{"set_ac": {"body": [{"mode": ["COOL"], "target": ["", 22]}], "room": ["", "hall"]}}],
    )
    action = gold_action(ex)
    assert action.calls[0].arguments == {"body": {"mode": "COOL"}}  # optional ones left out
    assert matches(action, ex.gold)
    assert gold_action(example()).calls[0].arguments == {"city": "Paris"}
