"""The data/train/bundle commands: help texts, bad input, a tiny end-to-end bundle."""

from __future__ import annotations

import json

import pytest

from spec_tool_node.cli import build_parser, main


@pytest.mark.parametrize(
    "command",
    [
        ["train", "sft"],
        ["train", "verifier"],
        ["train", "mine"],
        ["train", "calibrate"],
        ["data", "bfcl"],
        ["data", "chat-logs"],
        ["bundle"],
    ],
)
def test_every_option_has_help(command, capsys):
    import argparse

    parser = build_parser()
    for name in command:  # walk down to the subcommand's parser
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    options = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert options and all(a.help for a in options), [a.dest for a in options if not a.help]
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0 and all(
        a.help.split()[0] in capsys.readouterr().out for a in options[:1]
    )


def test_bad_jsonl_line_is_reported_with_file_and_line(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    good = {"id": "a", "messages": [{"role": "user", "content": "hi"}], "gold": "respond"}
    data.write_text(json.dumps(good) + "\n" + json.dumps({"id": "b", "messages": []}) + "\n")
    code = main(
        ["train", "sft", "--base", "x", "--data", str(data), "--out", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"{data}:2 (id 'b'): " in err and "messages" in err and "gold" in err


def test_gold_naming_an_unknown_tool_is_reported_with_its_id(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    bad = {
        "id": "ex7",
        "tools": [],
        "messages": [{"role": "user", "content": "hi"}],
        "gold": [{"get_weather": {"city": ["Paris"]}}],
    }
    data.write_text(json.dumps(bad) + "\n")
    assert (
        main(["train", "sft", "--base", "x", "--data", str(data), "--out", str(tmp_path / "r")])
        == 2
    )
    assert (
        "example 'ex7': gold[0] names tool 'get_weather', which is not in its tool list"
        in capsys.readouterr().err
    )


def test_bundle_command_writes_a_loadable_bundle(tmp_path):
    from spec_tool_node.bundle import Bundle

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"metrics": {"auroc": 0.8}}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    code = main(
        [
            "bundle",
            "--out",
            str(tmp_path / "b"),
            "--mode",
            "D",
            "--threshold",
            "0.7",
            "--proposer",
            "qwen2.5-coder-0.5b-instruct",
            "--verifier",
            f"smollm2-135m-instruct@{adapter}",
            "--verifier-max-length",
            "768",
            "--card",
            str(card),
        ]
    )
    assert code == 0
    bundle = Bundle.from_pretrained(tmp_path / "b")
    assert (
        bundle.config.threshold == 0.7 and bundle.config.verifier.model == "smollm2-135m-instruct"
    )
    assert bundle.config.verifier.max_length == 768
    assert bundle.card == {"metrics": {"auroc": 0.8}}


def test_bundle_command_rejects_a_verifier_length_without_a_verifier(tmp_path):
    with pytest.raises(SystemExit, match="--verifier-max-length needs --verifier"):
        main(["bundle", "--out", str(tmp_path / "b"), "--verifier-max-length", "512"])
