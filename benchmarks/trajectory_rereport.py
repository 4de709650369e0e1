"""Re-write committed trajectory reports with the current report code, from their own results.

    .venv/bin/python benchmarks/trajectory_rereport.py benchmarks/results/bfcl/trajectories_a_vs_d

Reads OUT/trajectories.jsonl, fills in what results written by older code lack (per-turn checks,
recomputed from the executed calls in BFCL's environments), and writes OUT/trajectories.{md,json,
jsonl} again with the command and step limit recorded there. No model runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spec_tool_node.bfcl.tasks import load_task
from spec_tool_node.bfcl.trajectories import (
    TrajectoryResult,
    summary_lines,
    trajectory_report,
    turn_checks,
    write_trajectory_report,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="+", type=Path, help="report folders to re-write")
    for out in parser.parse_args().out:
        previous = json.loads((out / "trajectories.json").read_text())
        lines = (out / "trajectories.jsonl").read_text().splitlines()
        results = [TrajectoryResult.model_validate_json(line) for line in lines]
        for result in results:
            if result.turn_checks is None:
                result.turn_checks = turn_checks(load_task(result.task_id), result.calls)
        write_trajectory_report(
            out,
            results,
            max_steps_per_turn=previous.get("max_steps_per_turn"),
            command=previous.get("command"),
        )
        print(out, *summary_lines(trajectory_report(results)), sep="\n  ")


if __name__ == "__main__":
    main()
