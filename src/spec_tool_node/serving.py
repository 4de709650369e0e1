"""Serving a bundle at scale with vLLM: the launch commands and the config that points at them.

Nothing here runs a server. :func:`serve_plan` reads a bundle and writes out what an operator
runs on GPU hosts:

- the proposer, with its LoRA adapter loaded by vLLM (``--enable-lora --lora-modules``);
- the strong model, with the proposer's base model as its server-side speculative draft model
  (``--speculative-config``, method ``draft_model``): token-level speculative decoding inside the
  server, lossless for greedy decoding, on top of the action-level cascade the node runs;
- the verifier, its LoRA adapter served the same way; the node reads p(ACCEPT) from the label
  tokens' log-probs (:class:`~spec_tool_node.verifiers.served.ServedVerifier`). A probe verifier
  reads hidden states, which these servers do not return, so it stays in the agent's process;

and the :class:`CascadeConfig` whose model specs carry those endpoints (``base_url``), so
``SpeculativeActionNode.from_pretrained`` on a folder holding it calls the servers instead of
loading weights. Qwen2.5 models get vLLM's ``hermes`` tool parser; replies it leaves as text are
parsed by :class:`~spec_tool_node.chat_models.parsed.ParsedToolCalls`.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from spec_tool_node import assets
from spec_tool_node.bundle import Bundle
from spec_tool_node.config import CascadeConfig, ModelSpec

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The ``--max-lora-rank`` values vLLM accepts."""
PORTS = {"proposer": 8001, "strong": 8002, "verifier": 8003}


@dataclass(frozen=True)
class ServerCommand:
    """One server to launch: its role, the shell command, and what the client calls it."""

    role: str
    command: str
    served_name: str
    base_url: str
    note: str = ""


@dataclass(frozen=True)
class ServePlan:
    """The servers of a bundle and the config that points the node at them."""

    servers: list[ServerCommand]
    config: CascadeConfig
    local: list[str] = field(default_factory=list)
    """Why a role stays in the agent's process (a verifier no server can run)."""

    def render(self) -> str:
        """Shell comments and commands, then the config JSON, as ``serve-config`` prints them."""
        lines = [f"# {note}" for note in self.local]
        for server in self.servers:
            lines.append(
                f"# {server.role}: clients call model {server.served_name!r} at {server.base_url}"
            )
            if server.note:
                lines.append(f"# {server.note}")
            lines += [server.command, ""]
        lines += [
            "# CascadeConfig pointing the node at these servers: save it as cascade.json in a",
            "# folder and load it with SpeculativeActionNode.from_pretrained(folder, tools=...)",
            self.config.model_dump_json(indent=2, exclude_none=True),
        ]
        return "\n".join(lines)


def weights(model: str) -> str:
    """What vLLM loads for a model name: an asset's converted folder, else the name as given.

    The adapters of a bundle were trained on the converted weights of the packaged models, so the
    servers load exactly those (``spec-tool-node models prepare NAME`` writes the folder).
    """
    return str(assets.cache_root() / model) if model in assets.ASSETS else model


def lora_rank(adapter: str) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds the adapter's rank."""
    rank = int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])
    return next((r for r in LORA_RANKS if r >= rank), rank)


def _command(spec: ModelSpec, role: str, host: str, port: int, extra: list[str]) -> tuple[str, str]:
    """The ``vllm serve`` command for a role and the model name its clients use."""
    args = ["vllm", "serve", weights(spec.model), "--host", host, "--port", str(port)]
    if spec.adapter:
        args += ["--served-model-name", f"{role}-base", "--enable-lora"]
        args += ["--lora-modules", f"{role}={spec.adapter}"]
        args += ["--max-lora-rank", str(lora_rank(spec.adapter))]
    else:
        args += ["--served-model-name", role]
    return shlex.join(args + extra), role


def serve_plan(
    bundle: str | Path,
    *,
    host: str = "localhost",
    bind: str = "0.0.0.0",
    draft_tokens: int = 5,
    ports: dict[str, int] | None = None,
) -> ServePlan:
    """The vLLM servers for a bundle's models and the matching config.

    Args:
        bundle: a bundle folder (``cascade.json`` plus adapters).
        host: the host name clients reach the servers at (written into the config).
        bind: the address the servers listen on.
        draft_tokens: tokens the strong server's draft model proposes per step.
        ports: port per role (default :data:`PORTS`).

    Raises:
        ValueError: the bundle has no strong model, or ``draft_tokens`` is not positive.
    """
    if draft_tokens < 1:
        raise ValueError(f"draft_tokens must be positive, got {draft_tokens}")
    config = Bundle.from_pretrained(bundle).config
    ports = {**PORTS, **(ports or {})}
    if config.strong is None:
        raise ValueError(f"bundle {bundle} has no strong model to serve")
    tools = ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    servers: list[ServerCommand] = []
    served: dict[str, ModelSpec] = {}
    local: list[str] = []
    for role in ("proposer", "strong", "verifier"):
        spec: ModelSpec | None = getattr(config, role)
        if spec is None:
            continue
        if spec.adapter and not (Path(spec.adapter) / "adapter_config.json").is_file():
            local.append(
                f"{role}: {spec.adapter} is not a LoRA adapter (a probe head reads hidden states, "
                "which OpenAI-compatible servers do not return): it stays in the agent's process"
            )
            continue
        extra, note = (tools if role != "verifier" else []), ""
        if role == "strong" and config.proposer is not None:
            draft = {
                "method": "draft_model",
                "model": weights(config.proposer.model),
                "num_speculative_tokens": draft_tokens,
            }
            extra = [*extra, "--speculative-config", json.dumps(draft)]
            note = (
                "the proposer's base model drafts tokens inside this server (token-level "
                "speculative decoding; its LoRA is not applied to the draft)"
            )
        if role == "verifier":
            note = "the node reads p(ACCEPT) from the top log-probs of one generated token"
        command, name = _command(spec, role, bind, ports[role], extra)
        base_url = f"http://{host}:{ports[role]}/v1"
        servers.append(ServerCommand(role, command, name, base_url, note))
        served[role] = ModelSpec(model=name, base_url=base_url)
    # mode E's extra drafts: OpenAI-style sampling options instead of transformers' do_sample
    sampling = {"temperature": config.sample_kwargs.get("temperature", 0.8)}
    remote = config.model_copy(update={**served, "sample_kwargs": sampling}, deep=True)
    return ServePlan(servers=servers, config=remote, local=local)
