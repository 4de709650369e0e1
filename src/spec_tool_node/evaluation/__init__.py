"""Evaluation: collect each model's outputs once, simulate every mode, report.

    collection = collect(examples, "runs/cache", proposer=cheap, strong=strong, verifier=v)
    simulation = simulate(examples, collection, CascadeConfig(threshold=0.5))
    metrics = compute_metrics(simulation, collection)
    write_report("runs/eval", simulation, metrics)

The command line is ``spec-tool-node eval`` (:mod:`spec_tool_node.evaluation.cli`). Names are
imported on first use, so the command line starts without loading the model stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spec_tool_node.evaluation.collector import (
        CacheMissingError,
        Collected,
        Collection,
        ModelKeys,
        collect,
        key_of,
        load_collection,
        message_record,
        model_key,
    )
    from spec_tool_node.evaluation.metrics import compute_metrics, mode_metrics
    from spec_tool_node.evaluation.report import write_report
    from spec_tool_node.evaluation.simulator import (
        LiveCheck,
        SampleResult,
        Simulation,
        live_check,
        oracle,
        replay,
        simulate,
    )

_HOMES = {
    "collector": [
        "CacheMissingError",
        "Collected",
        "Collection",
        "ModelKeys",
        "collect",
        "key_of",
        "load_collection",
        "message_record",
        "model_key",
    ],
    "metrics": ["compute_metrics", "mode_metrics"],
    "report": ["write_report"],
    "simulator": [
        "LiveCheck",
        "SampleResult",
        "Simulation",
        "live_check",
        "oracle",
        "replay",
        "simulate",
    ],
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "CacheMissingError",
    "Collected",
    "Collection",
    "LiveCheck",
    "ModelKeys",
    "SampleResult",
    "Simulation",
    "collect",
    "compute_metrics",
    "key_of",
    "live_check",
    "load_collection",
    "message_record",
    "mode_metrics",
    "model_key",
    "oracle",
    "replay",
    "simulate",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value
