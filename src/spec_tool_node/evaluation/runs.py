"""What an evaluation run is made of: its settings, the cascade config they build, the models.

:class:`RunSettings` holds what the command line (or a script) chose and builds the
:class:`~spec_tool_node.config.CascadeConfig` from a bundle and overrides; :class:`ModelPool`
loads each model on first use (a complete cache needs none) and builds the node for a mode, so
the evaluation's live check and the trajectory runs share one node factory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spec_tool_node.config import CascadeConfig, ModelSpec
from spec_tool_node.errors import ConfigError
from spec_tool_node.modes import MODES, describe_models, models_needed

if TYPE_CHECKING:
    from spec_tool_node.node import SpeculativeActionNode
    from spec_tool_node.safety import SafetyPolicy


def model_spec(text: str | None) -> ModelSpec | None:
    """``NAME`` or ``NAME@ADAPTER_DIR`` as a :class:`ModelSpec` (``None`` for no text)."""
    if not text:
        return None
    model, _, adapter = text.partition("@")
    return ModelSpec(model=model, adapter=adapter or None)


class RunSettings(BaseModel):
    """The choices of one run: a bundle and overrides of its models and thresholds, and how to
    load local models."""

    model_config = ConfigDict(extra="ignore")  # built from the CLI's whole namespace

    bundle: Path | None = None
    proposer: str | None = None
    strong: str | None = None
    verifier: str | None = None
    threshold: float | None = None
    n_drafts: int | None = None
    overrides: list[str] = Field(default_factory=list)
    """``FIELD=VALUE`` overrides of the cascade config, applied last (:func:`config_overrides`)."""
    max_new_tokens: int = Field(default=128, gt=0)
    dtype: str = "bfloat16"
    device: str | None = None
    float32_logits: bool = False

    def cascade_config(self) -> CascadeConfig:
        """The bundle's config (or the default) with the given models and thresholds."""
        if self.bundle:
            from spec_tool_node.bundle import Bundle

            config = Bundle.from_pretrained(self.bundle).config
        else:
            config = CascadeConfig()
        update: dict[str, Any] = {}
        for role in ("proposer", "strong", "verifier"):
            spec = model_spec(getattr(self, role))
            if spec is not None:
                update[role] = spec
        if self.threshold is not None:
            update["threshold"] = self.threshold
        if self.n_drafts is not None:
            update["n_drafts"] = self.n_drafts
        update |= config_overrides(self.overrides)
        try:
            return CascadeConfig.model_validate({**config.model_dump(), **update})
        except ValidationError as e:
            given = f" (--set: {', '.join(self.overrides)})" if self.overrides else ""
            raise ConfigError(f"invalid cascade config{given}:\n{e}") from e


def config_overrides(items: list[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` items as a dict; a VALUE that parses as JSON is taken as JSON (``true``,
    ``null``, ``0.9``, ``{...}``), any other as text.

    Raises:
        ConfigError: an item without ``=`` or with no field name, or a field named twice.
    """
    out: dict[str, Any] = {}
    for item in items:
        field, sep, text = item.partition("=")
        field = field.strip()
        if not sep or not field:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set threshold=0.7")
        if field in out:
            raise ConfigError(f"--set {item!r}: {field} is set twice")
        try:
            out[field] = json.loads(text)
        except json.JSONDecodeError:
            out[field] = text
    return out


def require_models(modes: list[str], config: CascadeConfig, what: str = "modes") -> None:
    """Every model the modes need must be named (by a flag or the bundle).

    Raises:
        ConfigError: naming the missing models and the flags that give them.
    """
    lacking = sorted(role for role in models_needed(modes) if getattr(config, role) is None)
    if lacking:
        raise ConfigError(
            f"{what} {','.join(modes)} need "
            + describe_models(lacking, "--{role} NAME[@ADAPTER]")
            + ", or a --bundle that names them"
        )


class ModelPool:
    """Loads each model the first time it is needed (a complete cache needs none)."""

    def __init__(self, config: CascadeConfig, settings: RunSettings) -> None:
        self.config, self.settings = config, settings
        self._loaded: dict[str, Any] = {}

    def _chat(self, spec: ModelSpec, role: str) -> Any:
        from spec_tool_node.chat_models.hf import HFChatModel

        return HFChatModel(
            model=spec.model,
            adapter=spec.adapter,
            max_new_tokens=self.settings.max_new_tokens,
            dtype=self.settings.dtype,
            device=self.settings.device,
            float32_logits=self.settings.float32_logits and role == "strong",
        )

    def get(self, role: str) -> Any:
        """The model for ``role`` (``proposer``, ``strong``, ``verifier``), or ``None``."""
        if role not in self._loaded:
            spec: ModelSpec | None = getattr(self.config, role)
            if spec is None:
                return None
            print(f"loading {role}: {spec.model}" + (f" + {spec.adapter}" if spec.adapter else ""))
            if role == "verifier":  # a probe folder or a LoRA adapter
                from spec_tool_node.verifiers.probe import load_verifier

                self._loaded[role] = load_verifier(
                    spec.model,
                    spec.adapter,
                    dtype=self.settings.dtype,
                    device=self.settings.device,
                    max_length=spec.max_length,
                )
            else:
                self._loaded[role] = self._chat(spec, role)
        return self._loaded[role]

    def node(
        self,
        mode: str,
        tools: Any,
        *,
        policy: SafetyPolicy,
        system_prompt: str | None,
    ) -> SpeculativeActionNode:
        """The node for ``mode`` with the models that mode requires (loaded on first use)."""
        from spec_tool_node.node import SpeculativeActionNode

        spec = MODES[mode]
        models = {r: self.get(r) for r in ("proposer", "strong", "verifier") if r in spec.models}
        for role in spec.optional:  # mode G's verifier, when it reads the drafting pass
            model = self.get(role) if getattr(self.config, role) is not None else None
            if getattr(model, "reads_drafting_pass", False):
                models[role] = model
        return SpeculativeActionNode(
            **models,
            tools=tools,
            config=self.config.model_copy(update={"mode": mode}),
            safety=policy,
            system_prompt=system_prompt,
        )
