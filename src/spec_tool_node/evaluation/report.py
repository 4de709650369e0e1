"""The outputs of an evaluation in ``--out DIR``.

- ``metrics.json``: one entry per mode (``accuracy``, ``relative_cost``, ``wall_cost_ratio``,
  ``accept_rate``, ``unsafe_executed``, ``n`` and more), ``oracle``, ``sweep``, ``verifiers``,
  ``summary`` (targets), ``config``, and ``live_check`` when one ran;
- ``samples.jsonl``: one line per example per mode (and the oracle router);
- ``report.md``: the results table in the seed study's format, then plain sentences: mode D
  against A and B, the gap to the oracle router, the savings share, and whether the targets were
  met (by how much a missed one is missed);
- ``pareto.png``: accuracy against relative cost, one labelled point per mode, the D and E
  threshold sweeps as curves, the oracle router as a marker.

When the metrics have a ``safety`` entry (the run was also simulated with the gate off, as
``--data safety`` does), ``report.md`` has a "Safety gate" section: per mode, unsafe actions
executed with the gate off and on, and safe requests wrongly blocked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spec_tool_node.evaluation.metrics import ACCURACY_TOLERANCE, SAVINGS_SHARE_TARGET
from spec_tool_node.evaluation.simulator import LiveCheck, Simulation

MODE_NAMES = {
    "A": "always strong",
    "B": "cheap only",
    "C": "cheap + strong judge",
    "D": "cheap + trained verifier",
    "E": "multi-proposal rerank",
    "F": "lossless: strong model continues the draft",
    "G": "cheap + gate on its drafting pass",
    "oracle": "oracle router (bound)",
}


def _clean(value: Any) -> Any:
    """JSON without NaN/inf (written as null), keys as strings."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _num(value: Any, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def _points(value: float) -> str:
    return f"{100 * abs(value):.1f} points"


def _versus(gap: float, other: str) -> str:
    """``gap`` = other's accuracy minus D's, in words."""
    if abs(gap) < 5e-4:
        return f"level with {other}"
    return f"{_points(gap)} {'below' if gap > 0 else 'above'} {other}"


def write_report(
    out_dir: str | Path,
    simulation: Simulation,
    metrics: dict[str, Any],
    *,
    live: LiveCheck | None = None,
    title: str = "Evaluation",
    command: str | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``samples.jsonl``, ``report.md`` and ``pareto.png``; return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / "metrics.json",
        "samples": out / "samples.jsonl",
        "report": out / "report.md",
    }
    data = dict(metrics)
    if live is not None:
        data["live_check"] = live.to_dict()
    if command:
        data["command"] = command
    paths["metrics"].write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")
    with paths["samples"].open("w", encoding="utf-8") as f:
        for row in simulation.samples():
            f.write(json.dumps(_clean(row), ensure_ascii=False) + "\n")
    plot_note = None
    if plot:
        try:
            paths["pareto"] = write_pareto(out / "pareto.png", metrics, simulation.modes)
        except ImportError:
            plot_note = (
                "pareto.png was not drawn: matplotlib is not installed (`pip install matplotlib`)."
            )
    paths["report"].write_text(
        render_markdown(
            metrics, simulation.modes, live=live, title=title, command=command, note=plot_note
        )
    )
    return paths


def results_table(metrics: dict[str, Any], modes: list[str]) -> list[str]:
    """The seed study's table: mode, accuracy, relative cost, wall-cost ratio, accept rate,
    unsafe executed, n (and the oracle router as the last row)."""
    lines = [
        "| mode | configuration | accuracy | relative cost | wall-cost ratio | accept rate "
        "| unsafe executed | n |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [m for m in modes if metrics.get(m)] + (["oracle"] if metrics.get("oracle") else [])
    for mode in rows:
        m = metrics[mode]
        accept = "-" if mode in ("A", "oracle") else _pct(m["accept_rate"], 0)
        lines.append(
            f"| {mode} | {MODE_NAMES.get(mode, mode)} | {_pct(m['accuracy'])} "
            f"| {_num(m['relative_cost'], '.2f')} | {_num(m['wall_cost_ratio'], '.2f')} "
            f"| {accept} | {m['unsafe_executed']} | {m['n']} |"
        )
    return lines


def findings(metrics: dict[str, Any]) -> list[str]:
    """Plain sentences: D against A and B, the oracle, the savings share, the targets."""
    a, b, d, o = (metrics.get(k) for k in ("A", "B", "D", "oracle"))
    s = metrics.get("summary") or {}
    out: list[str] = []
    if not d:
        out.append("Mode D was not evaluated, so the targets cannot be assessed.")
    else:
        text = (
            f"Mode D (threshold {d['threshold']}) is right on {_pct(d['accuracy'])} of "
            f"{d['n']} examples at {_num(d['relative_cost'], '.2f')} of always-strong's cost "
            f"(wall-cost ratio {_num(d['wall_cost_ratio'], '.2f')}), accepting "
            f"{_pct(d['accept_rate'], 0)} of drafts."
        )
        comparisons = []
        if a:
            comparisons.append(
                f"mode A is right on {_pct(a['accuracy'])} at cost 1.00 "
                f"(D is {_versus(s['accuracy_gap_to_A'], 'A')})"
            )
        if b:
            comparisons.append(
                f"mode B is right on {_pct(b['accuracy'])} at {_num(b['relative_cost'], '.2f')}"
            )
        if comparisons:
            text += " On the same examples, " + "; ".join(comparisons) + "."
        out.append(text)
        if o:
            gap = s.get("accuracy_gap_to_oracle", float("nan"))
            out.append(
                f"The oracle router (the greedy draft when it is right, else the strong model) "
                f"is right on {_pct(o['accuracy'])} at {_num(o['relative_cost'], '.2f')}: "
                f"D is {_versus(gap, 'it')} in accuracy, and its relative cost differs from the "
                f"oracle's by {_num(d['relative_cost'] - o['relative_cost'], '+.2f')}."
            )
            share = s.get("savings_share")
            if share is None or math.isnan(share):
                out.append(
                    "The oracle router saves nothing against always-strong here, so the savings "
                    "share is undefined."
                )
            else:
                out.append(
                    f"D saves {_pct(1 - d['relative_cost'], 0)} of A's cost where the oracle "
                    f"saves {_pct(1 - o['relative_cost'], 0)}: a savings share of "
                    f"{_num(share, '.2f')}."
                )
                if share > 1:
                    out.append(
                        f"D spends less than the oracle because it accepted "
                        f"{d['accepted_wrong']} wrong draft(s) that the oracle would have sent to "
                        "the strong model: the savings beyond the oracle's are paid in accuracy."
                    )
        out.extend(_targets(d, s))
    unsafe = {k: m["unsafe_executed"] for k, m in metrics.items() if k in MODE_NAMES and m}
    unsafe.pop("oracle", None)
    if unsafe:
        if all(v == 0 for v in unsafe.values()):
            out.append("No unsafe action was executed in any mode.")
        else:
            listed = ", ".join(f"{k}: {v}" for k, v in unsafe.items() if v)
            out.append(
                f"Unsafe actions executed (target zero with the gate on): {listed}. "
                "Each is a call listed in its example's `unsafe` that no safety rule blocked."
            )
    return out


def _targets(d: dict[str, Any], s: dict[str, Any]) -> list[str]:
    out = []
    tolerance = _points(ACCURACY_TOLERANCE)
    gap = s.get("accuracy_gap_to_A")
    if gap is None:
        out.append(
            f"Target (D within {tolerance} of A's accuracy): not assessed, mode A was not run."
        )
    elif s.get("target_accuracy_met"):
        out.append(f"Target met: D is within {tolerance} of A's accuracy ({_versus(gap, 'A')}).")
    else:
        out.append(
            f"Target missed: D is {_points(gap)} below A's accuracy, "
            f"{_points(gap - ACCURACY_TOLERANCE)} more than the {tolerance} allowed. "
            f"D accepted {d['accepted_wrong']} wrong draft(s), and the strong model was wrong on "
            f"{d['fallback_wrong']} of the drafts D rejected."
        )
    share = s.get("savings_share")
    target = _pct(SAVINGS_SHARE_TARGET, 0)
    if share is None:
        out.append(f"Target (keep {target} of the oracle's savings): not assessed.")
    elif math.isnan(share):
        out.append(f"Target (keep {target} of the oracle's savings): undefined here.")
    elif s.get("target_savings_met"):
        out.append(f"Target met: D keeps {_pct(share, 0)} of the oracle's savings (≥ {target}).")
    else:
        out.append(
            f"Target missed: D keeps {_pct(share, 0)} of the oracle's savings, "
            f"{_points(SAVINGS_SHARE_TARGET - share)} short of {target}: it fell back to the "
            f"strong model on {_pct(1 - d['accept_rate'], 0)} of examples."
        )
    return out


def render_markdown(
    metrics: dict[str, Any],
    modes: list[str],
    *,
    live: LiveCheck | None = None,
    title: str = "Evaluation",
    command: str | None = None,
    note: str | None = None,
) -> str:
    config = metrics.get("config") or {}
    cost = config.get("cost_model") or {}
    lines = [f"# {title}", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [
        f"Threshold {config.get('threshold')}"
        + (f" (mode G: {config.get('gate_threshold')})" if "G" in modes else "")
        + f", {config.get('n_drafts')} drafts in mode E, cost "
        f"basis `{cost.get('basis', 'calls')}`"
        + (
            f" (strong {cost.get('strong')}, cheap {cost.get('cheap')}, verifier "
            f"{cost.get('verifier')} per call)"
            if cost.get("basis", "calls") == "calls"
            else ""
        )
        + ". Relative cost and wall-cost ratio are against always-strong (mode A) on the same "
        "examples.",
        "",
        *results_table(metrics, modes),
        "",
        "## Findings",
        "",
        *(f"- {sentence}" for sentence in findings(metrics)),
        "",
    ]
    if note:
        lines += [note, ""]
    lines += _safety_section(metrics.get("safety"))
    lines += _signals_section(metrics.get("verifiers") or {})
    lines += _sweep_section(metrics.get("sweep") or {})
    lines += _latency_section(metrics, modes)
    lines += _category_section(metrics, modes)
    if live is not None:
        lines += _live_section(live)
    return "\n".join(lines).rstrip() + "\n"


def _safety_section(safety: dict[str, Any] | None) -> list[str]:
    """Unsafe actions executed with the gate off and on, and wrongly blocked safe requests."""
    if not safety or not safety.get("modes"):
        return []
    unsafe, allowed = safety["n_with_unsafe_calls"], safety["n_not_blocked_gold"]
    policy = f" Policy: `{safety['policy']}`." if safety.get("policy") else ""
    lines = [
        "## Safety gate",
        "",
        f"{safety['n']} examples: {unsafe} list calls that must never run, {allowed} have a gold "
        f"action other than BLOCKED (safe requests).{policy} The same cached outputs are "
        "simulated twice: with the gate off (every action allowed) and with it on.",
        "",
        "| mode | unsafe executed, gate off | unsafe executed, gate on | wrongly blocked, gate off "
        "| wrongly blocked, gate on | accuracy, gate off | accuracy, gate on |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, m in safety["modes"].items():
        lines.append(
            f"| {mode} | {m['unsafe_executed_gate_off']} / {unsafe} "
            f"| {m['unsafe_executed_gate_on']} / {unsafe} "
            f"| {m['wrongly_blocked_gate_off']} / {allowed} "
            f"({_pct(m['wrongly_blocked_rate_gate_off'])}) "
            f"| {m['wrongly_blocked_gate_on']} / {allowed} "
            f"({_pct(m['wrongly_blocked_rate_gate_on'])}) "
            f"| {_pct(m['accuracy_gate_off'])} | {_pct(m['accuracy_gate_on'])} |"
        )
    modes = {k: m for k, m in safety["modes"].items() if k != "oracle"}
    on = {k: m["unsafe_executed_gate_on"] for k, m in modes.items()}
    off = {k: m["unsafe_executed_gate_off"] for k, m in modes.items()}
    wrong = {k: m["wrongly_blocked_gate_on"] for k, m in modes.items()}
    lines.append("")
    listed_off = ", ".join(f"{k}: {v}" for k, v in off.items())
    if all(v == 0 for v in on.values()):
        lines.append(
            f"- Unsafe actions executed with the gate off / on: {listed_off} / none in any mode "
            "(target zero with the gate on: met)."
        )
    else:
        listed_on = ", ".join(f"{k}: {v}" for k, v in on.items() if v)
        lines.append(
            f"- Unsafe actions executed with the gate off / on: {listed_off} / {listed_on} "
            f"(target zero with the gate on: missed by {sum(on.values())})."
        )
    if all(v == 0 for v in wrong.values()):
        lines.append("- No safe request was wrongly blocked with the gate on.")
    else:
        listed = ", ".join(f"{k}: {v} of {allowed}" for k, v in wrong.items() if v)
        lines.append(
            f"- Safe requests wrongly blocked with the gate on: {listed} (by the gate or by "
            "the model's own refusal)."
        )
    return [*lines, ""]


def _signals_section(signals: dict[str, Any]) -> list[str]:
    if not signals:
        return []
    greedy = signals.get("greedy_draft", {})
    lines = [
        "## Verifier signals",
        "",
        f"Whether the greedy draft is right, on the {greedy.get('valid', 0)} valid greedy drafts "
        f"({greedy.get('right', 0)} right).",
        "",
        "| signal | AUROC | precision | recall | threshold | n |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "verifier": "trained verifier",
        "judge": "prompted strong judge",
        "proposer_logprob": "proposer mean log-prob",
    }
    for key, label in names.items():
        m = signals.get(key)
        if not m or not m["n"]:
            continue
        lines.append(
            f"| {label} | {_num(m['auroc'])} | {_num(m.get('precision'))} "
            f"| {_num(m.get('recall'))} | {_num(m.get('threshold'), '.2f')} | {m['n']} |"
        )
    return [*lines, ""]


def _sweep_section(sweep: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
    for mode, rows in sweep.items():
        if not rows:
            continue
        lines += [
            f"## Threshold sweep, mode {mode}",
            "",
            "| threshold | accuracy | relative cost | accept rate |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['threshold']:.2f} | {_pct(r['accuracy'])} | {_num(r['relative_cost'], '.2f')} "
            f"| {_pct(r['accept_rate'], 0)} |"
            for r in rows
        ]
        lines.append("")
    return lines


def _latency_section(metrics: dict[str, Any], modes: list[str]) -> list[str]:
    lines = [
        "## Latency and tokens",
        "",
        "| mode | p50 s | p95 s | input tokens | output tokens | tokens per example |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in [m for m in modes if metrics.get(m)]:
        m = metrics[mode]
        lines.append(
            f"| {mode} | {_num(m['latency_p50_s'])} | {_num(m['latency_p95_s'])} "
            f"| {m['input_tokens']} | {m['output_tokens']} "
            f"| {_num(m['tokens_per_example'], '.1f')} |"
        )
    return [*lines, ""]


def _category_section(metrics: dict[str, Any], modes: list[str]) -> list[str]:
    categories = sorted(
        {c for mode in modes if metrics.get(mode) for c in metrics[mode].get("by_category", {})}
    )
    if len(categories) < 2:
        return []
    shown = [m for m in modes if metrics.get(m)]
    lines = [
        "## By category (accuracy / relative cost)",
        "",
        "| category | n | " + " | ".join(shown) + " |",
        "|---|---:|" + "---:|" * len(shown),
    ]
    for category in categories:
        cells = []
        n = 0
        for mode in shown:
            c = metrics[mode].get("by_category", {}).get(category)
            n = c["n"] if c else n
            cells.append(
                f"{_pct(c['accuracy'], 0)} / {_num(c['relative_cost'], '.2f')}" if c else "-"
            )
        lines.append(f"| {category} | {n} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _live_section(live: LiveCheck) -> list[str]:
    if not live.n:
        return ["## Live check", "", "No example was run live.", ""]
    verdict = (
        "Live and simulated decisions agree on every checked decision."
        if live.agree == live.n
        else f"Live and simulated decisions disagree on {live.n - live.agree} of {live.n}."
    )
    lines = [
        "## Live check",
        "",
        f"{live.n} decisions run through the real `SpeculativeActionNode` and compared with the "
        f"simulation (path and final action): {live.agree} agree ({_pct(live.rate)}). {verdict}",
        "",
        "| mode | checked | agree |",
        "|---|---:|---:|",
        *(f"| {m} | {c['n']} | {c['agree']} |" for m, c in live.by_mode.items()),
        "",
    ]
    if "E" in live.by_mode and live.by_mode["E"]["agree"] < live.by_mode["E"]["n"]:
        lines += [
            "Mode E samples its extra drafts, so a live run draws other drafts than the cached "
            "ones; disagreements there are expected unless sampling is seeded.",
            "",
        ]
    for d in live.disagreements[:10]:
        lines.append(
            f"- `{d['id']}` mode {d['mode']}: live {d['live_path']} `{d['live_action']}`, "
            f"simulated {d['simulated_path']} `{d['simulated_action']}`"
        )
    return [*lines, ""]


def write_pareto(path: str | Path, metrics: dict[str, Any], modes: list[str]) -> Path:
    """Accuracy against relative cost: a labelled point per mode, D/E sweeps, the oracle."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = {"A": "C3", "B": "C0", "C": "C4", "D": "C2", "E": "C1"}
    for mode, rows in (metrics.get("sweep") or {}).items():
        pts = [
            (r["relative_cost"], r["accuracy"])
            for r in rows
            if not any(v is None or math.isnan(v) for v in (r["relative_cost"], r["accuracy"]))
        ]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(
                xs, ys, "-", marker=".", color=colors.get(mode, "C7"), alpha=0.6,
                label=f"{mode} threshold sweep",
            )  # fmt: skip
    for mode in modes:
        m = metrics.get(mode)
        if not m or any(v is None or math.isnan(v) for v in (m["relative_cost"], m["accuracy"])):
            continue
        ax.scatter([m["relative_cost"]], [m["accuracy"]], s=70, color=colors.get(mode, "C7"),
                   zorder=3, edgecolors="black")  # fmt: skip
        ax.annotate(
            f"{mode}: {MODE_NAMES.get(mode, mode)}",
            (m["relative_cost"], m["accuracy"]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=9,
        )
    o = metrics.get("oracle")
    if o and not any(v is None or math.isnan(v) for v in (o["relative_cost"], o["accuracy"])):
        ax.scatter([o["relative_cost"]], [o["accuracy"]], marker="*", s=220, color="gold",
                   edgecolors="black", zorder=4, label="oracle router")  # fmt: skip
    ax.set_xlabel("relative cost (1.0 = always strong)")
    ax.set_ylabel("action accuracy")
    ax.set_title("Accuracy against cost")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
