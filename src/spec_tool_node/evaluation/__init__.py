"""Evaluation: collect each model's outputs once, simulate every mode, report.

    collection = collect(examples, "runs/cache", proposer=cheap, strong=strong, verifier=v)
    simulation = simulate(examples, collection, CascadeConfig(threshold=0.5))
    metrics = compute_metrics(simulation, collection)
    write_report("runs/eval", simulation, metrics)

The command line is ``spec-tool-node eval`` (:mod:`spec_tool_node.evaluation.cli`).
"""

from spec_tool_node.evaluation.collect import (
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
from spec_tool_node.evaluation.simulate import (
    LiveCheck,
    SampleResult,
    Simulation,
    live_check,
    oracle,
    replay,
    simulate,
)

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
