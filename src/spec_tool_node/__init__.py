"""Speculative action selection for LangGraph agents.

    from spec_tool_node import SpeculativeActionNode, SpeculativeActionMiddleware, CascadeConfig

Every public name is imported on first use, so ``import spec_tool_node`` is cheap and the node,
the middleware and the configs never load torch: only the local-model names (``HFChatModel``,
``TrainedVerifier``) do, and they need the ``local`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spec_tool_node.cascade import CascadeError
    from spec_tool_node.chat_models.hf import HFChatModel
    from spec_tool_node.config import CascadeConfig, ModelSpec
    from spec_tool_node.costs import CostModel, TurnRecord
    from spec_tool_node.errors import ConfigError, SpecToolNodeError
    from spec_tool_node.middleware import SafetyGateMiddleware, SpeculativeActionMiddleware
    from spec_tool_node.modes import MODES, ModeSpec
    from spec_tool_node.node import SpecAgentState, SpeculativeActionNode
    from spec_tool_node.safety import SafetyPolicy
    from spec_tool_node.verifiers.base import Verdict, Verifier
    from spec_tool_node.verifiers.judge import ChatModelVerifier
    from spec_tool_node.verifiers.trained import TrainedVerifier

_WHERE = {
    "SpeculativeActionNode": "node",
    "SpecAgentState": "node",
    "SpeculativeActionMiddleware": "middleware",
    "SafetyGateMiddleware": "middleware",
    "CascadeConfig": "config",
    "ModelSpec": "config",
    "MODES": "modes",
    "ModeSpec": "modes",
    "SafetyPolicy": "safety",
    "CostModel": "costs",
    "TurnRecord": "costs",
    "Verifier": "verifiers.base",
    "Verdict": "verifiers.base",
    "ChatModelVerifier": "verifiers.judge",
    "SpecToolNodeError": "errors",
    "ConfigError": "errors",
    "CascadeError": "cascade",
    # local models: these need the `local` extra (torch, transformers)
    "HFChatModel": "chat_models.hf",
    "TrainedVerifier": "verifiers.trained",
}
"""Each public name and the submodule that defines it."""

__all__ = [
    "MODES",
    "CascadeConfig",
    "CascadeError",
    "ChatModelVerifier",
    "ConfigError",
    "CostModel",
    "HFChatModel",
    "ModeSpec",
    "ModelSpec",
    "SafetyGateMiddleware",
    "SafetyPolicy",
    "SpecAgentState",
    "SpecToolNodeError",
    "SpeculativeActionMiddleware",
    "SpeculativeActionNode",
    "TrainedVerifier",
    "TurnRecord",
    "Verdict",
    "Verifier",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
    except ModuleNotFoundError as e:
        raise ImportError(
            f"{name} needs {e.name!r}, which is not installed: "
            "pip install 'spec-tool-node[local]' for local models"
        ) from e
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
