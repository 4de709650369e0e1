"""serve-config: vLLM launch commands for a bundle and the config that points the node at them."""

from __future__ import annotations

import json
import shlex

import pytest

from spec_tool_node import assets
from spec_tool_node.bundle import Bundle
from spec_tool_node.cli import main as cli_main
from spec_tool_node.config import CascadeConfig, ModelSpec
from spec_tool_node.serving import lora_rank, serve_plan


@pytest.fixture
def bundle(tmp_path):
    """A bundle with a proposer and a verifier adapter (rank 12) and a plain strong model."""
    adapters = {}
    for role in ("proposer", "verifier"):
        folder = tmp_path / "train" / role
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"r": 12, "lora_alpha": 24}))
        adapters[role] = str(folder)
    config = CascadeConfig(
        mode="D",
        threshold=0.42,
        proposer=ModelSpec(model="qwen2.5-coder-0.5b-instruct", adapter=adapters["proposer"]),
        strong=ModelSpec(model="Qwen/Qwen2.5-Coder-7B-Instruct"),
        verifier=ModelSpec(
            model="smollm2-135m-instruct", adapter=adapters["verifier"], max_length=768
        ),
    )
    return Bundle(config=config).save_pretrained(tmp_path / "bundle")


def _args(command: str) -> list[str]:
    return shlex.split(command)


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_proposer_is_served_with_its_lora_adapter(bundle):
    plan = serve_plan(bundle, host="gpu-a")
    proposer = next(s for s in plan.servers if s.role == "proposer")
    args = _args(proposer.command)
    assert args[:3] == ["vllm", "serve", str(assets.cache_root() / "qwen2.5-coder-0.5b-instruct")]
    assert "--enable-lora" in args
    assert _flag(args, "--lora-modules") == f"proposer={bundle / 'adapters' / 'proposer'}"
    assert _flag(args, "--max-lora-rank") == "16"  # rank 12 rounded up to a rank vLLM accepts
    assert _flag(args, "--port") == "8001"
    assert proposer.served_name == "proposer"
    assert proposer.base_url == "http://gpu-a:8001/v1"


def test_strong_model_drafts_with_the_proposer_inside_the_server(bundle):
    plan = serve_plan(bundle, draft_tokens=7, ports={"strong": 9000})
    strong = next(s for s in plan.servers if s.role == "strong")
    args = _args(strong.command)
    assert args[2] == "Qwen/Qwen2.5-Coder-7B-Instruct"  # a hub id passes through
    assert "--enable-lora" not in args
    assert _flag(args, "--served-model-name") == "strong"
    draft = json.loads(_flag(args, "--speculative-config"))
    assert draft == {
        "method": "draft_model",
        "model": str(assets.cache_root() / "qwen2.5-coder-0.5b-instruct"),
        "num_speculative_tokens": 7,
    }
    assert _flag(args, "--tool-call-parser") == "hermes"
    assert _flag(args, "--port") == "9000"


def test_config_points_every_role_at_its_server(bundle):
    plan = serve_plan(bundle, host="gpu-a")
    config = plan.config
    assert (config.mode, config.threshold) == ("D", 0.42)
    assert config.proposer == ModelSpec(model="proposer", base_url="http://gpu-a:8001/v1")
    assert config.strong == ModelSpec(model="strong", base_url="http://gpu-a:8002/v1")
    assert config.verifier == ModelSpec(model="verifier", base_url="http://gpu-a:8003/v1")
    assert config.sample_kwargs == {"temperature": 0.8}  # OpenAI options, not do_sample
    verifier = next(s for s in plan.servers if s.role == "verifier")
    assert "--tool-call-parser" not in _args(verifier.command)


def test_cli_prints_commands_and_a_loadable_config(bundle, capsys, tmp_path):
    assert cli_main(["serve-config", str(bundle), "--draft-tokens", "3"]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("vllm serve")]
    assert len(commands) == 3
    config_json = out[out.index("\n{") + 1 :]
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "cascade.json").write_text(config_json)
    loaded = Bundle.from_pretrained(tmp_path / "served").config
    assert loaded.strong.base_url == "http://localhost:8002/v1"
    assert '"num_speculative_tokens": 3' in out


def test_served_spec_takes_no_adapter():
    with pytest.raises(ValueError, match="takes no adapter"):
        ModelSpec(model="m", adapter="a", base_url="http://h/v1")


def test_lora_rank_reads_the_adapter_config(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 64}))
    assert lora_rank(str(tmp_path)) == 64


def test_bad_draft_token_count_is_refused(bundle):
    with pytest.raises(ValueError, match="draft_tokens"):
        serve_plan(bundle, draft_tokens=0)


def test_node_from_a_served_config_calls_the_servers(bundle, tmp_path):
    pytest.importorskip("langchain_openai", reason="langchain-openai is in the `remote` extra")
    from spec_tool_node import SpeculativeActionNode
    from spec_tool_node.chat_models.parsed import ParsedToolCalls
    from spec_tool_node.verifiers.served import ServedVerifier

    folder = tmp_path / "served"
    folder.mkdir()
    serve_plan(bundle, host="gpu-a").config.save(folder / "cascade.json")
    node = SpeculativeActionNode.from_pretrained(folder, tools=[])
    assert isinstance(node.proposer, ParsedToolCalls)
    assert node.proposer.chat_model.openai_api_base == "http://gpu-a:8001/v1"
    assert node.strong.model_name == "strong"
    assert isinstance(node.verifier, ServedVerifier)


def test_a_probe_verifier_stays_in_the_agents_process(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "probe.json").write_text("{}")
    config = CascadeConfig(
        proposer=ModelSpec(model="qwen2.5-coder-0.5b-instruct"),
        strong=ModelSpec(model="qwen2.5-coder-1.5b-instruct"),
        verifier=ModelSpec(model="qwen2.5-coder-0.5b-instruct", adapter=str(probe)),
    )
    bundle = Bundle(config=config).save_pretrained(tmp_path / "bundle")
    plan = serve_plan(bundle)
    assert [s.role for s in plan.servers] == ["proposer", "strong"]
    assert plan.config.verifier.base_url is None
    assert plan.config.verifier.adapter == str(bundle / "adapters" / "verifier")
    assert "not a LoRA adapter" in plan.render()
