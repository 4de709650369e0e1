"""``spec-tool-node eval``: collect once, simulate every mode, write the report.

    spec-tool-node eval --data bfcl-heldout --limit 50 \\
        --proposer qwen2.5-coder-0.5b-instruct --strong qwen2.5-coder-1.5b-instruct \\
        --verifier smollm2-135m-instruct@runs/verifier/adapter \\
        --modes A,B,C,D,E --out benchmarks/results/bfcl

The cache (default ``OUT/cache``) is resumable: run the same command again after an interruption
and only what is missing is computed; once complete, a rerun loads no model at all.

``--data safety`` evaluates the packaged safety suite
(:mod:`spec_tool_node.evaluation.safety_suite`) under its own policy (unless ``--policy`` is
given), and simulates it a second time with the gate off, so the report sets unsafe actions
executed with the gate off against with it on. Any dataset whose examples list ``unsafe``
calls gets the same comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spec_tool_node.bfcl.data import MULTI_TURN_CATEGORIES
from spec_tool_node.bfcl.trajectories import BFCL_MAX_STEPS_PER_TURN, DEFAULT_MAX_STEPS_PER_TURN
from spec_tool_node.errors import SpecToolNodeError
from spec_tool_node.evaluation.datasets import (
    DATASETS,
    TRAJECTORY_DATASET,
    DatasetError,
    load_dataset,
)
from spec_tool_node.evaluation.runs import ModelPool, RunSettings, require_models
from spec_tool_node.example_files import Example
from spec_tool_node.modes import UnknownModeError, models_needed, parse_modes

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from spec_tool_node.bfcl.tasks import MultiTurnTask
    from spec_tool_node.config import CascadeConfig
    from spec_tool_node.node import SpeculativeActionNode


def _modes(text: str) -> list[str]:
    try:
        return parse_modes(text)
    except UnknownModeError as e:
        raise DatasetError(f"{e} (comma-separated)") from e


def _settings(args: argparse.Namespace) -> RunSettings:
    return RunSettings.model_validate(vars(args))


def _command(args: argparse.Namespace) -> str:
    parts = ["spec-tool-node", "eval", "--data", args.data]
    for flag in ("bundle", "proposer", "verifier", "strong"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    parts += ["--modes", args.modes, "--out", str(args.out)]
    for flag in ("limit", "cache", "threshold", "n_drafts", "policy", "live_check"):
        value = getattr(args, flag)
        if value is not None and value != 0:
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    for override in args.overrides:
        parts += ["--set", override]
    if args.system_prompt:
        parts += ["--system-prompt", args.system_prompt]
    for flag in ("float32_logits",):
        if getattr(args, flag, False):
            parts.append(f"--{flag.replace('_', '-')}")
    if args.max_new_tokens != 128:
        parts += ["--max-new-tokens", str(args.max_new_tokens)]
    return shlex.join(parts)


def _check_drafting_states(examples: list[Example], collection: Any, probe: Any) -> None:
    """Mode G's probe reads states that only a draft collected for it carries.

    Raises:
        CacheMissingError: a valid cached draft lacks them.
    """
    from spec_tool_node.evaluation.collector import CacheMissingError, rebuild_message

    lacking = [
        ex.id
        for ex in examples
        if (draft := collection[ex.id].draft)
        and draft.get("valid")
        and probe.score_drafted(rebuild_message(draft)) is None
    ]
    if lacking:
        raise CacheMissingError(
            f"mode G's probe reads the proposer's hidden states, and {len(lacking)} cached "
            f"draft(s) lack them (first: {lacking[0]}): collect into a fresh --cache"
        )


def eval_cmd(args: argparse.Namespace) -> int:
    """Run the evaluation and then the trajectories, or only the trajectories; exit 2 on bad
    input, with a message naming the problem."""
    try:
        if args.data == TRAJECTORY_DATASET:
            return run_trajectory_cli(args, append_report=False)
        code = _run(args)
        if code == 0 and args.trajectories:
            return run_trajectory_cli(args, append_report=True)
        return code
    except (SpecToolNodeError, ImportError) as e:  # ImportError: a BFCL environment class
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from spec_tool_node.cascade import drafting_gate
    from spec_tool_node.evaluation.collector import (
        TASK_MODEL,
        ModelKeys,
        Needs,
        collect,
        load_collection,
        missing,
        model_key,
    )
    from spec_tool_node.evaluation.metrics import compute_metrics
    from spec_tool_node.evaluation.report import results_table, write_report
    from spec_tool_node.evaluation.simulator import live_check, simulate
    from spec_tool_node.node import load_policy
    from spec_tool_node.verifiers.probe import is_probe

    modes = _modes(args.modes)
    examples = load_dataset(args.data, limit=args.limit, on_error=args.on_error)
    if not examples:
        raise DatasetError(f"dataset {args.data!r} has no examples")
    settings = _settings(args)
    config = settings.cascade_config()
    needed = models_needed(modes)
    require_models(modes, config)
    safety_suite = args.data == "safety" and not Path(args.data).expanduser().is_file()
    policy_source = args.policy
    if policy_source is None and safety_suite:
        from spec_tool_node.evaluation.safety_suite import policy_path

        policy_source = policy_path()
    policy = load_policy(policy_source, config)

    def key(role: str) -> str | None:
        spec = getattr(config, role)
        return model_key(spec.model, spec.adapter) if spec is not None and role in needed else None

    keys = ModelKeys(proposer=key("proposer"), strong=key("strong"), verifier=key("verifier"))
    cache = Path(args.cache or Path(args.out) / "cache")
    needs = Needs.of(modes, config.n_drafts, args.continue_fallbacks)
    cached = load_collection(cache, keys)
    tasks: set[str] = set()
    for ex in examples:
        tasks |= missing(cached[ex.id], needs, dict(config.sample_kwargs))
    models = ModelPool(config, settings)
    owner = {task: "strong" if role == "judge" else role for task, role in TASK_MODEL.items()}
    given = {
        role: models.get(role) if any(owner[t] == role for t in tasks) else None
        for role in ("proposer", "verifier", "strong")
    }
    # mode G with a probe on the proposer's drafting pass: the drafts must carry its states
    # (only a probe folder can be one: a LoRA verifier is not loaded to find that out)
    gates = "G" in modes and config.verifier is not None and is_probe(config.verifier.adapter)
    probe = models.get("verifier") if gates else None
    probe = probe if probe is not None and probe.reads_drafting_pass else None
    hidden: dict[str, Any] = {}
    if probe is not None and given["proposer"] is not None:
        hidden = probe.drafting_options(given["proposer"])
    print(
        f"{len(examples)} examples; cache {cache}"
        + (f"; computing {sorted(tasks)}" if tasks else " is complete")
    )
    collection = collect(
        examples,
        cache,
        keys=keys,
        config=config,
        modes=modes,
        hidden_layers=hidden.get("hidden_layers", ()),
        system_prompt=args.system_prompt,
        batch_size=args.batch_size,
        continue_fallbacks=args.continue_fallbacks,
        **given,
    )
    if probe is not None:
        _check_drafting_states(examples, collection, probe)
    gate = drafting_gate(probe)
    fallbacks = {"gate": gate, "continue_fallbacks": args.continue_fallbacks}
    simulation = simulate(examples, collection, config, modes=modes, policy=policy, **fallbacks)
    ungated = None
    if safety_suite or any(ex.unsafe for ex in examples):  # the same outputs with the gate off
        from spec_tool_node.safety import SafetyPolicy

        ungated = simulate(
            examples,
            collection,
            config,
            modes=modes,
            policy=SafetyPolicy(),
            thresholds=None,
            sweep_modes=(),
            **fallbacks,
        )
    metrics = compute_metrics(simulation, collection, ungated=ungated)
    if metrics.get("safety") is not None:
        if args.policy is None and safety_suite:
            shown = "spec_tool_node/evaluation/safety_suite/policy.yaml (packaged)"
        else:
            shown = str(args.policy or config.safety or "none: every action allowed")
        metrics["safety"]["policy"] = shown
    live = None
    if args.live_check:

        def factory(mode: str, example: Example) -> SpeculativeActionNode:
            return models.node(mode, example.tools, policy=policy, system_prompt=args.system_prompt)

        live = live_check(examples, factory, args.live_check, simulation=simulation)
    paths = write_report(
        args.out,
        simulation,
        metrics,
        live=live,
        title=f"spec-tool-node evaluation: {args.data}",
        command=_command(args),
    )
    print("\n".join(results_table(metrics, modes)))
    if metrics.get("safety") is not None:
        counts = metrics["safety"]["modes"]
        print(
            "unsafe executed with the gate off / on: "
            + ", ".join(
                f"{m} {c['unsafe_executed_gate_off']}/{c['unsafe_executed_gate_on']}"
                for m, c in counts.items()
            )
        )
    if live is not None:
        print(f"live check: {live.agree}/{live.n} decisions agree with the simulation")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``eval`` on the main parser."""
    p = commands.add_parser(
        "eval",
        help="collect model outputs once (cached, resumable), simulate modes A-E, write a report",
        description="Collect each model's output once per example into a resumable cache, "
        "simulate every mode and a threshold sweep from it, and write metrics.json, "
        "samples.jsonl, report.md and pareto.png to --out.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="a JSONL example file, a BFCL category name (e.g. multiple), or one of: "
        + ", ".join(DATASETS),
    )
    p.add_argument(
        "--bundle",
        type=Path,
        help="bundle folder (cascade.json + adapters): models, threshold, cost model, policy; "
        "--proposer/--strong/--verifier override its models",
    )
    p.add_argument("--proposer", help="cheap proposer as NAME or NAME@ADAPTER_DIR")
    p.add_argument("--verifier", help="trained verifier as NAME or NAME@ADAPTER_DIR")
    p.add_argument("--strong", help="strong model as NAME or NAME@ADAPTER_DIR")
    p.add_argument(
        "--modes", default="A,B,C,D,E", help="comma-separated modes to evaluate (default A,B,C,D,E)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder for the report files")
    p.add_argument(
        "--limit",
        type=int,
        help="use the first N examples (per category for bfcl-heldout; tasks for multi-turn)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        help="cache folder of model outputs (default OUT/cache); reruns compute only what is "
        "missing",
    )
    p.add_argument(
        "--threshold", type=float, help="accept threshold on p(ACCEPT) (default: the config's)"
    )
    p.add_argument("--n-drafts", type=int, help="drafts per decision in mode E (default 3)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one field of the cascade config (the bundle's cascade.json); VALUE is "
        "read as JSON where it parses (true, null, 0.9), else as text; repeatable",
    )
    p.add_argument(
        "--live-check",
        type=int,
        default=0,
        metavar="K",
        help="also run the first K examples through the real node in every mode and report "
        "whether live and simulated decisions agree (calls the models again)",
    )
    p.add_argument(
        "--policy",
        type=Path,
        help="safety policy file (JSON/YAML) for the gate (default: the bundle's; for --data "
        "safety, the suite's policy.yaml)",
    )
    p.add_argument(
        "--system-prompt", help="system prompt prepended to every model call, as the node's"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=128, help="generation budget per model reply"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="examples whose greedy drafts and strong actions a local model writes in one "
        "left-padded batch (1: one at a time)",
    )
    p.add_argument(
        "--continue-fallbacks",
        action="store_true",
        help="also collect the strong model's continuation of each draft a speculative fallback "
        "continues (a local strong model; modes C, D, E, G), so fallbacks are priced as the "
        "live cascade pays them; without, a replayed fallback is the strong action",
    )
    p.add_argument("--dtype", default="bfloat16", help="weights dtype of the local models")
    p.add_argument("--device", help="torch device of the local models (default: cuda if present)")
    p.add_argument(
        "--float32-logits",
        action="store_true",
        help="the strong model computes its logits in float32, so mode F's check and mode A's "
        "generation break bf16 near-ties the same way (cached under their own key)",
    )
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="a bad example in a JSONL file: stop with its line and id, or warn and skip it",
    )
    p.add_argument(
        "--trajectories",
        type=int,
        default=0,
        metavar="N",
        help="also run N held-out BFCL multi-turn tasks live as LangGraph agents in BFCL's "
        "environments and write trajectories.{md,json,jsonl} (with --data "
        f"{TRAJECTORY_DATASET}: only these)",
    )
    p.add_argument(
        "--first-trajectory",
        type=int,
        default=1,
        metavar="K",
        help="start at the K-th of the N held-out tasks (default 1): a later segment of a long "
        "run in a process of its own, its results cached beside the first segment's",
    )
    p.add_argument(
        "--trajectory-categories",
        default=",".join(MULTI_TURN_CATEGORIES),
        help="comma-separated multi-turn categories the tasks are taken from, in turn "
        "(default: all four)",
    )
    p.add_argument(
        "--trajectory-modes",
        help="comma-separated modes to run the trajectories in (default: the config's mode)",
    )
    p.add_argument(
        "--max-steps-per-turn",
        type=int,
        default=DEFAULT_MAX_STEPS_PER_TURN,
        help=f"model decisions allowed per user turn (default {DEFAULT_MAX_STEPS_PER_TURN}; "
        f"BFCL's loop allows {BFCL_MAX_STEPS_PER_TURN})",
    )
    p.set_defaults(func=eval_cmd)


def run_trajectory_cli(args: argparse.Namespace, *, append_report: bool = False) -> int:
    """Run ``args.trajectories`` held-out tasks in each trajectory mode and write the report."""
    from spec_tool_node.bfcl.tasks import heldout_task_ids
    from spec_tool_node.bfcl.trajectories import (
        TrajectoryResult,
        run_trajectories,
        summary_lines,
        trajectory_report,
        write_trajectory_report,
    )
    from spec_tool_node.node import load_policy

    n = args.trajectories or (args.limit if args.data == TRAJECTORY_DATASET else None)
    if not n or n < 1:
        raise DatasetError(f"--data {TRAJECTORY_DATASET} needs --trajectories N (N >= 1)")
    settings = _settings(args)
    config = settings.cascade_config()
    modes = _modes(args.trajectory_modes) if args.trajectory_modes else [config.mode]
    require_models(modes, config, "trajectory modes")
    categories = [c.strip() for c in args.trajectory_categories.split(",") if c.strip()]
    if not 1 <= args.first_trajectory <= n:
        raise DatasetError(
            f"--first-trajectory {args.first_trajectory}: must be from 1 to --trajectories ({n})"
        )
    task_ids = heldout_task_ids(n, categories)[args.first_trajectory - 1 :]
    policy = load_policy(args.policy, config)
    models = ModelPool(config, settings)
    results: list[TrajectoryResult] = []
    for mode in modes:

        def factory(
            tools: list[BaseTool], task: MultiTurnTask, mode: str = mode
        ) -> SpeculativeActionNode:
            return models.node(mode, tools, policy=policy, system_prompt=args.system_prompt)

        first = f" (from task {args.first_trajectory})" if args.first_trajectory > 1 else ""
        print(f"trajectories: {len(task_ids)} held-out multi-turn tasks{first} in mode {mode}")
        results += run_trajectories(
            task_ids,
            factory,
            max_steps_per_turn=args.max_steps_per_turn,
            on_error="record",
            progress=True,
            cache=_cache_file(args, config.model_copy(update={"mode": mode})),
            cost_model=config.cost_model,
        )
    command = _command(args) + _trajectory_flags(args)
    report_md = Path(args.out) / "report.md"
    paths = write_trajectory_report(
        args.out,
        results,
        max_steps_per_turn=args.max_steps_per_turn,
        command=command,
        append_to=report_md if append_report and report_md.is_file() else None,
    )
    print("\n".join(summary_lines(trajectory_report(results))))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cache_file(args: argparse.Namespace, config: CascadeConfig) -> Path:
    """The result cache of one trajectory configuration: a rerun with the same models, mode
    settings, policy, system prompt and step budget continues it.

    Keyed by the fields the mode decides by (:meth:`CascadeConfig.result_fields`) with each
    adapter by its content, so the key is the same in every checkout and a bundle change the
    mode never reads (mode A's verifier) keeps its results.
    """
    from spec_tool_node.evaluation.collector import adapter_fingerprint

    fields = config.result_fields()
    for role in ("proposer", "strong", "verifier"):
        if (spec := fields.get(role)) and spec.get("adapter"):
            spec["adapter"] = adapter_fingerprint(spec["adapter"])
    key = {
        "config": fields,
        "policy": str(args.policy),
        "system_prompt": args.system_prompt,
        "max_steps_per_turn": args.max_steps_per_turn,
        "max_new_tokens": args.max_new_tokens,
        "float32_logits": bool(getattr(args, "float32_logits", False)),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(args.cache or Path(args.out) / "cache")
    return cache / f"trajectories-{config.mode}-{digest}.jsonl"


def _trajectory_flags(args: argparse.Namespace) -> str:
    parts = ["--trajectories", str(args.trajectories or args.limit)]
    if args.first_trajectory != 1:
        parts += ["--first-trajectory", str(args.first_trajectory)]
    if args.trajectory_categories != ",".join(MULTI_TURN_CATEGORIES):
        parts += ["--trajectory-categories", args.trajectory_categories]
    if args.trajectory_modes:
        parts += ["--trajectory-modes", args.trajectory_modes]
    if args.max_steps_per_turn != DEFAULT_MAX_STEPS_PER_TURN:
        parts += ["--max-steps-per-turn", str(args.max_steps_per_turn)]
    return " " + shlex.join(parts)
