"""Bundles: a folder with a cascade config, its adapters and a card, loadable in one call.

    bundle/
      cascade.json          CascadeConfig; adapter paths relative to the folder
      adapters/proposer/    peft adapters (any of proposer, strong, verifier)
      adapters/verifier/    (or a probe: probe.json + head.safetensors, read by ProbeVerifier;
                            one on the proposer's ``drafting`` pooling is also mode G's gate)
      card.json, README.md  base models, data, split, steps and measured metrics

``Bundle.from_pretrained(dir)`` resolves the adapter paths, so ``SpeculativeActionNode
.from_pretrained(dir, tools=...)`` and the evaluation runner can build the models directly.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spec_tool_node.config import CascadeConfig, ModelSpec, accepts_nothing

ROLES = ("proposer", "strong", "verifier")


@dataclass
class Bundle:
    """A cascade config plus everything it needs, and the card that says how it was made."""

    config: CascadeConfig
    card: dict[str, Any] = field(default_factory=dict)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the bundle (copying adapters in); the folder appears complete or not at all."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            config = self.config.model_copy(deep=True)
            for role in ROLES:
                spec: ModelSpec | None = getattr(config, role)
                if spec is not None and spec.adapter:
                    shutil.copytree(
                        spec.adapter,
                        work / "adapters" / role,
                        ignore=shutil.ignore_patterns("checkpoint-*"),
                    )
                    spec.adapter = f"adapters/{role}"
            config.save(work / "cascade.json")
            (work / "card.json").write_text(json.dumps(self.card, indent=2, default=str) + "\n")
            (work / "README.md").write_text(render_card(config, self.card))
            if directory.exists():
                shutil.rmtree(directory)
            work.rename(directory)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Bundle:
        """Load a bundle; adapter paths become absolute, missing ones are an error."""
        directory = Path(directory)
        if not (directory / "cascade.json").is_file():
            raise FileNotFoundError(f"{directory} is not a bundle: no cascade.json in it")
        config = CascadeConfig.load(directory / "cascade.json")
        for role in ROLES:
            spec: ModelSpec | None = getattr(config, role)
            if spec is not None and spec.adapter:
                path = (directory / spec.adapter).resolve()
                if not path.is_dir():
                    raise FileNotFoundError(
                        f"bundle {directory}: {role} adapter {spec.adapter} is missing"
                    )
                spec.adapter = str(path)
        card_path = directory / "card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        return cls(config=config, card=card)


def _shown(threshold: float) -> str:
    return f"{threshold} (accepts nothing)" if accepts_nothing(threshold) else str(threshold)


def render_card(config: CascadeConfig, card: dict[str, Any]) -> str:
    """A README for the bundle: what it is, how it was made, what it measured."""
    lines = [
        "# spec-tool-node bundle",
        "",
        f"Mode {config.mode}, threshold {_shown(config.threshold)}"
        + (
            f" (later in a conversation: {_shown(config.multi_turn_threshold)})."
            if config.multi_turn_threshold is not None
            else "."
        )
        + ("" if config.accept_calls else " Tool-call drafts go to the strong model unscored."),
        "",
    ]
    for role in ROLES:
        spec = getattr(config, role)
        if spec is not None:
            lines.append(
                f"- {role}: `{spec.model}`"
                + (f" + adapter `{spec.adapter}`" if spec.adapter else "")
            )
    for key, value in card.items():
        lines += ["", f"## {key}", ""]
        lines += _items(value, 0) if isinstance(value, dict) else [str(value)]
    return "\n".join(lines) + "\n"


def _items(card: dict[str, Any], depth: int) -> list[str]:
    """A card's nested sections as a nested Markdown list."""
    lines = []
    for key, value in card.items():
        if isinstance(value, dict):
            lines += [f"{'  ' * depth}- {key}:", *_items(value, depth + 1)]
        else:
            lines.append(f"{'  ' * depth}- {key}: {value}")
    return lines
