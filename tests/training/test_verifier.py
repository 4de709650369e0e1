"""Verifier training, the hidden-state probe, calibration, metrics and bundles (tiny models)."""

from __future__ import annotations

import json

import pytest
import torch
from langchain_core.messages import HumanMessage
from peft import LoraConfig, get_peft_model

from spec_tool_node.actions import action_from_canonical
from spec_tool_node.bundle import Bundle
from spec_tool_node.config import ACCEPTS_NOTHING, CascadeConfig, ModelSpec
from spec_tool_node.node import SpeculativeActionNode
from spec_tool_node.training.sft import lora_config, training_arguments
from spec_tool_node.training.verifier import (
    LabelPairLoss,
    auroc,
    calibrate,
    precision_recall,
    train_verifier,
)
from spec_tool_node.verifiers import TrainedVerifier
from tests.conftest import make_model
from tests.training.test_data_sft import WEATHER_TOOL, example


def test_calibrate_to_accept_rate_and_precision():
    scores, labels = [0.9, 0.8, 0.7, 0.1], [True, True, False, True]
    assert calibrate(scores, labels, accept_rate=0.5) == 0.8
    assert calibrate(scores, labels, accept_rate=0.0) == ACCEPTS_NOTHING
    assert calibrate(scores, labels, precision=1.0) == 0.8
    assert calibrate(scores, labels, precision=0.75) == 0.1
    # unreachable: fail closed, above every score (it used to return the most precise, 0.5)
    assert calibrate([0.5, 0.4], [False, True], precision=0.9) == ACCEPTS_NOTHING > 1.0
    with pytest.raises(ValueError, match="exactly one"):
        calibrate(scores, labels)
    with pytest.raises(ValueError, match="accept_rate must be in"):
        calibrate(scores, labels, accept_rate=1.5)


def test_auroc_and_precision_recall():
    assert auroc([0.9, 0.8, 0.2], [True, True, False]) == 1.0
    assert auroc([0.1, 0.9], [True, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert precision_recall([0.9, 0.6, 0.4], [True, False, True], 0.5) == (0.5, 0.5)


@pytest.fixture
def base_folder(tmp_path, tiny_tokenizer):
    folder = tmp_path / "base"
    make_model(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_label_pair_loss_reads_only_the_two_label_logits_at_the_label_position():
    accept, reject = 3, 5
    loss = LabelPairLoss(accept, reject)
    logits = torch.randn(2, 4, 8)
    labels = torch.full((2, 4), -100)
    labels[0, 3], labels[1, 2] = accept, reject  # the label token ends each prompt
    out = type("Out", (), {"logits": logits})()
    expected = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 2, [accept, reject]], logits[1, 1, [accept, reject]]]),
        torch.tensor([0, 1]),
    )
    assert loss(out, labels) == pytest.approx(expected.item(), abs=1e-6)
    # other vocabulary entries and other positions do not matter
    changed = logits.clone()
    changed[:, :, [0, 1, 2, 4, 6, 7]] += 10.0
    changed[0, 0] += 3.0
    assert loss(type("Out", (), {"logits": changed})(), labels) == pytest.approx(
        expected.item(), abs=1e-6
    )
    # normalised by the items of the whole accumulated batch when the Trainer gives it
    assert loss(out, labels, num_items_in_batch=4) == pytest.approx(expected.item() / 2, abs=1e-6)


def test_trained_verifier_separates_its_training_pairs(tmp_path, base_folder):
    examples = [example(i, c) for i, c in enumerate(["Paris", "Lyon", "Nice"])]
    args = training_arguments(
        tmp_path / "verifier",
        max_steps=40,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        logging_steps=10,
    )
    lora = lora_config(r=8, lora_alpha=16)
    adapter, mix = train_verifier(
        str(base_folder), examples, {}, tmp_path / "verifier", args, lora, eval_fraction=0.0
    )
    pairs = [
        json.loads(line)
        for line in (tmp_path / "verifier" / "pairs.jsonl").read_text().splitlines()
    ]
    assert sum(p["accept"] for p in pairs) == len(pairs) / 2 and sum(mix.values()) == len(pairs)
    verifier = TrainedVerifier(model=str(base_folder), adapter=str(adapter), dtype="float32")
    by_id = {e.id: e for e in examples}
    scores = {True: [], False: []}
    for p in pairs:
        ex = by_id[p["example_id"]]
        context = [HumanMessage(ex.messages[0]["content"])]
        scores[p["accept"]].append(
            verifier.score(context, ex.tools, action_from_canonical(p["draft"])).p_accept
        )
    assert (
        auroc(
            scores[True] + scores[False], [True] * len(scores[True]) + [False] * len(scores[False])
        )
        > 0.9
    )


def test_bundle_round_trip_and_node_from_pretrained(tmp_path, base_folder, tiny_tokenizer):
    adapter = tmp_path / "adapter"
    get_peft_model(
        make_model(tiny_tokenizer), LoraConfig(r=2, target_modules="all-linear")
    ).save_pretrained(adapter)
    config = CascadeConfig(
        mode="D",
        threshold=0.6,
        proposer=ModelSpec(model=str(base_folder), adapter=str(adapter)),
        strong=ModelSpec(model=str(base_folder)),
        verifier=ModelSpec(model=str(base_folder), adapter=str(adapter), max_length=64),
    )
    card = {"metrics": {"auroc": 0.91}, "data": "bfcl train split"}
    saved = Bundle(config=config, card=card).save_pretrained(tmp_path / "bundle")
    Bundle(config=config, card=card).save_pretrained(saved)  # saving over an existing bundle works
    assert (saved / "adapters" / "verifier" / "adapter_config.json").is_file()
    assert "auroc: 0.91" in (saved / "README.md").read_text()
    assert (
        json.loads((saved / "cascade.json").read_text())["verifier"]["adapter"]
        == "adapters/verifier"
    )

    loaded = Bundle.from_pretrained(saved)
    assert loaded.config.threshold == 0.6 and loaded.card == card
    assert loaded.config.verifier.adapter == str((saved / "adapters" / "verifier").resolve())

    node = SpeculativeActionNode.from_pretrained(saved, tools=[WEATHER_TOOL])
    update = node.invoke({"messages": [HumanMessage("What's the weather in Paris?")]})
    (turn,) = update["spec_ledger"]
    assert turn.mode == "D" and turn.calls[0].role == "cheap"
    assert node.verifier.max_length == 64

    (saved / "adapters" / "verifier" / "adapter_config.json").unlink()
    import shutil

    shutil.rmtree(saved / "adapters" / "verifier")
    with pytest.raises(FileNotFoundError, match=r"verifier adapter adapters/verifier is missing"):
        Bundle.from_pretrained(saved)
    with pytest.raises(FileNotFoundError, match=r"no cascade\.json"):
        Bundle.from_pretrained(tmp_path)


def test_left_padded_batches_keep_only_the_label_logits_and_lose_nothing(base_folder):
    from spec_tool_node.chat_models.loading import load_pretrained
    from spec_tool_node.training.sft import Collator

    model, tokenizer = load_pretrained(str(base_folder), dtype="float32")
    rows = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, -100, -100, 9]},
        {"input_ids": [5, 6, 4], "labels": [-100, -100, 4]},
    ]
    loss = LabelPairLoss(4, 9)
    full = Collator(tokenizer)(rows)
    tokenizer.padding_side = "left"
    kept = Collator(tokenizer, logits_to_keep=2)(rows)
    assert kept["input_ids"][1].tolist()[:2] == [tokenizer.pad_token_id] * 2
    assert kept["position_ids"][1].tolist() == [0, 0, 0, 1, 2]
    with torch.no_grad():
        out_full = model(**{k: v for k, v in full.items() if k != "labels"})
        out_kept = model(**{k: v for k, v in kept.items() if k != "labels"})
    assert out_kept.logits.shape[1] == 2
    assert loss(out_kept, kept["labels"]) == pytest.approx(
        loss(out_full, full["labels"]).item(), abs=1e-4
    )
