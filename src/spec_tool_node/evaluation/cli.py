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
import json
import shlex
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from spec_tool_node.config import CascadeConfig, ModelSpec
from spec_tool_node.errors import SpecToolNodeError
from spec_tool_node.examples import Example
from spec_tool_node.modes import (
    MODES,
    UnknownModeError,
    describe_models,
    models_needed,
    parse_modes,
)

if TYPE_CHECKING:
    from spec_tool_node.node import SpeculativeActionNode
    from spec_tool_node.safety import SafetyPolicy

DATASETS = {
    "bfcl-heldout": "BFCL v4 held-out single-turn categories (--limit applies per category)",
    "bfcl-heldout-multi-turn": "every decision of the held-out (odd-numbered) BFCL multi-turn "
    "tasks (--limit applies to tasks per category)",
    "bfcl-trajectories": "held-out BFCL multi-turn tasks run live as LangGraph agents in BFCL's "
    "environments (with --trajectories N)",
    "safety": "the packaged safety suite: unsafe scenarios and safe look-alikes (--limit applies "
    "to each); --policy defaults to the suite's policy.yaml; also simulated with the gate off",
}
"""Named datasets besides JSONL files and single BFCL categories."""


class DatasetError(SpecToolNodeError, ValueError):
    """An unknown dataset name, or a bad example in a dataset file."""


def known_datasets() -> list[str]:
    from spec_tool_node import bfcl

    return [*DATASETS, *bfcl.CATEGORIES]


def read_dataset_file(path: Path, *, on_error: str = "raise") -> list[Example]:
    """Read a JSONL example file; a bad example is reported with its file, line and id."""
    examples: list[Example] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                examples.append(Example.model_validate_json(line))
            except ValidationError as e:
                message = f"{path}:{number}: {_describe(line, e)}"
                if on_error == "raise":
                    raise DatasetError(message) from None
                warnings.warn(f"skipped {message}", stacklevel=2)
    return examples


def _describe(line: str, error: ValidationError) -> str:
    try:
        example_id = json.loads(line).get("id")
    except (json.JSONDecodeError, AttributeError):
        example_id = None
    problems = []
    for err in error.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = ".".join(str(p) for p in err["loc"])
        problems.append(f"{where}: {msg}" if where else msg)
    text = "; ".join(problems)
    if example_id is not None and repr(example_id) not in text:
        text = f"example {example_id!r}: {text}"
    return text


def load_dataset(data: str, *, limit: int | None = None, on_error: str = "raise") -> list[Example]:
    """Examples from a JSONL path, a BFCL category name or a named dataset (:data:`DATASETS`).

    Raises:
        DatasetError: the name is neither a file nor a known dataset (the known ones are
            listed), or an example is bad (with ``on_error="raise"``).
    """
    path = Path(data).expanduser()
    if path.is_file():
        examples = read_dataset_file(path, on_error=on_error)
        return examples[:limit] if limit else examples
    try:
        return _load_named(data, limit)
    except ValidationError as e:
        raise DatasetError(f"dataset {data!r}: {_describe('', e)}") from None


def _load_named(data: str, limit: int | None) -> list[Example]:
    from spec_tool_node import bfcl

    if data == "bfcl-heldout":
        return bfcl.load_split("heldout", bfcl.HELDOUT_SINGLE_TURN, limit)
    if data == "bfcl-heldout-multi-turn":
        return bfcl.load_split("heldout", bfcl.MULTI_TURN_CATEGORIES, limit)
    if data == "safety":
        from spec_tool_node.evaluation.safety_suite import load_safety_suite

        return load_safety_suite(limit)
    if data == "bfcl-trajectories":
        raise DatasetError(
            f"{data!r} is run live, not loaded as examples: spec-tool-node eval --data {data} "
            "--trajectories N, or spec_tool_node.evaluation.trajectories.run_trajectories"
        )
    if data in bfcl.CATEGORIES:
        examples = bfcl.load_category(data)
        return examples[:limit] if limit else examples
    raise DatasetError(
        f"unknown dataset {data!r}: not a file, and not a known dataset name. "
        f"Known: {', '.join(known_datasets())}"
    )


def _spec(text: str | None) -> ModelSpec | None:
    if not text:
        return None
    model, _, adapter = text.partition("@")
    return ModelSpec(model=model, adapter=adapter or None)


def _modes(text: str) -> list[str]:
    try:
        return parse_modes(text)
    except UnknownModeError as e:
        raise DatasetError(f"{e} (comma-separated)") from e


def _config(args: argparse.Namespace) -> CascadeConfig:
    if args.bundle:
        from spec_tool_node.bundle import Bundle

        config = Bundle.from_pretrained(args.bundle).config
    else:
        config = CascadeConfig()
    update: dict[str, Any] = {}
    for role in ("proposer", "strong", "verifier"):
        spec = _spec(getattr(args, role))
        if spec is not None:
            update[role] = spec
    if args.threshold is not None:
        update["threshold"] = args.threshold
    if args.n_drafts is not None:
        update["n_drafts"] = args.n_drafts
    return CascadeConfig.model_validate({**config.model_dump(), **update})


class _LazyModels:
    """Loads each model the first time it is needed (a complete cache needs none)."""

    def __init__(self, config: CascadeConfig, args: argparse.Namespace) -> None:
        self.config, self.args = config, args
        self._loaded: dict[str, Any] = {}

    def _chat(self, spec: ModelSpec) -> Any:
        from spec_tool_node.chat_models.hf import HFChatModel

        return HFChatModel(
            model=spec.model,
            adapter=spec.adapter,
            max_new_tokens=self.args.max_new_tokens,
            dtype=self.args.dtype,
            device=self.args.device,
        )

    def get(self, role: str) -> Any:
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
                    dtype=self.args.dtype,
                    device=self.args.device,
                    max_length=spec.max_length,
                )
            else:
                self._loaded[role] = self._chat(spec)
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

        roles = MODES[mode].models
        models = {r: self.get(r) for r in ("proposer", "strong", "verifier") if r in roles}
        return SpeculativeActionNode(
            **models,
            tools=tools,
            config=self.config.model_copy(update={"mode": mode}),
            safety=policy,
            system_prompt=system_prompt,
        )


def _require_models(
    modes: list[str], needed: set[str], config: CascadeConfig, what: str = "modes"
) -> None:
    """Every model the modes need must be named (by a flag or the bundle)."""
    lacking = sorted(role for role in needed if getattr(config, role) is None)
    if lacking:
        raise DatasetError(
            f"{what} {','.join(modes)} need "
            + describe_models(lacking, "--{role} NAME[@ADAPTER]")
            + ", or a --bundle that names them"
        )


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
    if args.system_prompt:
        parts += ["--system-prompt", args.system_prompt]
    if args.hidden_state:
        parts.append("--hidden-state")
    if args.max_new_tokens != 128:
        parts += ["--max-new-tokens", str(args.max_new_tokens)]
    return shlex.join(parts)


def eval_cmd(args: argparse.Namespace) -> int:
    """Run the whole evaluation; exit 2 on bad input, with a message naming the problem."""
    try:
        return _run(args)
    except SpecToolNodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from spec_tool_node.evaluation.collector import (
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

    modes = _modes(args.modes)
    examples = load_dataset(args.data, limit=args.limit, on_error=args.on_error)
    if not examples:
        raise DatasetError(f"dataset {args.data!r} has no examples")
    config = _config(args)
    needed = models_needed(modes)
    _require_models(modes, needed, config)
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
    needs = Needs.of(modes, config.n_drafts)
    cached = load_collection(cache, keys)
    tasks: set[str] = set()
    for ex in examples:
        tasks |= missing(cached[ex.id], needs, dict(config.sample_kwargs))
    models = _LazyModels(config, args)
    owners = {
        "proposer": {"draft", "samples"},
        "verifier": {"verifier"},
        "strong": {"judge", "strong"},
    }
    given = {role: models.get(role) if tasks & owned else None for role, owned in owners.items()}
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
        hidden_state=args.hidden_state,
        system_prompt=args.system_prompt,
        **given,
    )
    simulation = simulate(examples, collection, config, modes=modes, policy=policy)
    ungated = None
    if safety_suite or any(ex.unsafe for ex in examples):  # the same outputs with the gate off
        from spec_tool_node.safety import SafetyPolicy

        ungated = simulate(
            examples,
            collection,
            config,
            modes=modes,
            policy=SafetyPolicy.allow_all(),
            thresholds=None,
            sweep_modes=(),
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
        "--hidden-state",
        action="store_true",
        help="also cache the proposer's last hidden state of its greedy draft (probe training)",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=128, help="generation budget per model reply"
    )
    p.add_argument("--dtype", default="bfloat16", help="weights dtype of the local models")
    p.add_argument("--device", help="torch device of the local models (default: cuda if present)")
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="a bad example in a JSONL file: stop with its line and id, or warn and skip it",
    )
    p.set_defaults(func=eval_cmd)
    from spec_tool_node.evaluation.trajectories import add_arguments as add_trajectory_arguments

    add_trajectory_arguments(p)  # --trajectories N, --data bfcl-trajectories
