"""`make regress`: rerun the smoke profile and compare every (task, router) with the reference in results/.

The reference, `results/smoke/reference.json`, holds per task and router the metrics a change must not
move by accident: mean reward, success, DEEPTHINK fraction and FLOPs per episode (compute seconds are
not compared: they are the machine's, not the code's). On the same machine the same seed gives the same
values, so the tolerances only absorb float noise; a value outside its tolerance fails the check with a
line naming the task, router and metric. A change that is meant to move the numbers updates the
reference with one explicit command, and `git diff results/smoke/reference.json` shows what moved:

    python -m bench.regress             # check (make regress)
    python -m bench.regress --update    # rewrite the reference from this run (make regress ARGS=--update)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import tyro

from bench.common.errors import user_errors
from bench.common.provenance import git_commit
from bench.models.profiles import LONDI_SWEEP
from bench.reporting.report import Cell

REFERENCE = Path("results") / "smoke" / "reference.json"
REGRESS_TASKS = ("babyai/GoToLocal", "babyai/Mixed", "scienceworld/power-component")
"""The smoke profile's tasks and one ScienceWorld task, so that both suites' code paths are guarded."""
METRICS = ("reward", "success", "deepthink_fraction", "flops")
TOLERANCES = {  # |new - reference| <= abs + rel * |reference|
    "reward": {"abs": 1e-6, "rel": 1e-6},
    "success": {"abs": 1e-6, "rel": 0.0},
    "deepthink_fraction": {"abs": 1e-6, "rel": 1e-6},
    "flops": {"abs": 0.0, "rel": 1e-6},
}


@dataclass
class Args:
    """Rerun the smoke profile and check its metrics against results/smoke/reference.json."""

    update: bool = False
    """write this run's metrics as the new reference instead of checking them"""
    reference: Path = REFERENCE
    """the reference file"""
    tasks: tuple[str, ...] = REGRESS_TASKS
    """tasks of the smoke run"""
    results_dir: Path | None = None
    """where the smoke run's report goes; unset: a temporary directory (results/ keeps only the reference)"""
    tracking_uri: str | None = None
    """MLflow tracking URI of the smoke run; unset: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here"""
    progress: bool = False
    """show progress bars"""


@dataclass
class Finding:
    task: str
    router: str
    metric: str
    reference: float | None
    value: float | None
    tolerance: float = field(default=0.0)

    def __str__(self) -> str:
        if self.metric == "(all)":
            return f"{self.task} {self.router}: not in the reference (a new cell)"

        def show(x: float | None) -> str:
            return "missing" if x is None else f"{x:.6g}"

        return (f"{self.task} {self.router} {self.metric}: reference {show(self.reference)}, now {show(self.value)} "
                f"(tolerance {self.tolerance:.3g})")


def measured(cells: list[Cell]) -> dict[str, dict[str, dict[str, float]]]:
    """task -> router -> metric -> mean, rounded to 9 significant digits (a stable, readable diff)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for cell in cells:
        table.setdefault(cell.task, {})[cell.router] = {m: float(f"{cell.values[m].mean:.9g}") for m in METRICS}
    return table


def compare(reference: dict, now: dict[str, dict[str, dict[str, float]]]) -> list[Finding]:
    """Every value outside its tolerance, every cell the reference has and this run lacks, and the reverse."""
    tolerances = reference.get("tolerances", TOLERANCES)
    findings: list[Finding] = []
    for task, routers in reference["metrics"].items():
        for router, metrics in routers.items():
            got = now.get(task, {}).get(router)
            for metric, expected in metrics.items():
                value = None if got is None else got.get(metric)
                tol = tolerances[metric]["abs"] + tolerances[metric]["rel"] * abs(expected)
                if value is None or not abs(value - expected) <= tol:
                    findings.append(Finding(task, router, metric, expected, value, tol))
    for task, routers in now.items():
        for router in routers:
            if router not in reference["metrics"].get(task, {}):
                findings.append(Finding(task, router, "(all)", None, None))
    return findings


def smoke_run(args: Args, results_dir: Path) -> list[Cell]:
    from bench.reproduce import Args as ReproduceArgs
    from bench.reproduce import main as reproduce

    return reproduce(ReproduceArgs(profile="smoke", tasks=args.tasks, learned=LONDI_SWEEP, results_dir=results_dir,
                                   tracking_uri=args.tracking_uri, progress=args.progress))


def main(args: Args) -> int:
    if not args.update and not args.reference.exists():
        raise FileNotFoundError(f"no reference at {args.reference}: write one with python -m bench.regress --update")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cells = smoke_run(args, args.results_dir or Path(tmp))
    wall_s = time.perf_counter() - started
    now = measured(cells)
    if args.update:
        previous = json.loads(args.reference.read_text()) if args.reference.exists() else {"metrics": {}}
        moved = compare(previous, now) if previous["metrics"] else []
        args.reference.parent.mkdir(parents=True, exist_ok=True)
        args.reference.write_text(json.dumps({
            "about": "make regress compares the smoke profile's metrics with these; python -m bench.regress --update "
                     "rewrites them",
            "command": "python -m bench.regress", "tasks": list(args.tasks), "git commit": git_commit(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"), "wall_s": round(wall_s),
            "tolerances": TOLERANCES, "metrics": now}, indent=1, sort_keys=False) + "\n")
        print(f"wrote {args.reference}: {sum(len(r) for r in now.values())} (task, router) cells, {wall_s:.0f} s; "
              f"{len(moved)} values moved from the previous reference")
        for finding in moved:
            print(f"  moved: {finding}")
        return 0
    findings = compare(json.loads(args.reference.read_text()), now)
    checked = sum(len(r) for r in now.values())
    if findings:
        for finding in findings:
            print(f"REGRESSION {finding}", file=sys.stderr)
        print(f"make regress: {len(findings)} values left their tolerance ({checked} cells, {wall_s:.0f} s). If the "
              f"change is meant, update the reference: python -m bench.regress --update", file=sys.stderr)
        return 1
    print(f"make regress: all {checked * len(METRICS)} values of {checked} (task, router) cells within tolerance "
          f"of {args.reference} ({wall_s:.0f} s)")
    return 0


if __name__ == "__main__":
    with user_errors():
        sys.exit(main(tyro.cli(Args)))
