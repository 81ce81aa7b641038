"""The renaming augmentation on its own, and the ScienceWorld pair's goals (issue 18).

The profile's ScienceWorld pair is cloned from the gold paths plus renamed copies of them (`Profile.sw_rename`,
bench.models.demos.renamed); the same recipes are cloned again without the copies. QUICK-only and DEEPTHINK-only of
both pairs play every test variation of every ScienceWorld task (greedy models on a deterministic simulator: one
episode per variation says all there is), each an MLflow run of one sweep. The report gives per task each model's
success and reward with and without renaming and the paired difference, DEEPTHINK's lead over QUICK, and the
pair's goals, met or missed with their margins:

    python -m bench.rename_effect --profile cpu      # results/cpu/scienceworld_rename.{md,json}

A pair not cached or committed is trained first (the profile's recipe, about half an hour on 2 CPU cores each).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from bench.common.errors import user_errors
from bench.common.provenance import default_results_dir, git_commit
from bench.common.stats import seed_diff_ci, seed_mean_ci
from bench.common.tracking import DEFAULT_EXPERIMENT, RunLogger, check_tracking
from bench.envs.tasks import get_task, task_names
from bench.models.cache import ensure_models, load_pair
from bench.models.pair import ModelPair
from bench.models.profiles import get_profile
from bench.reporting.rename import ROLES, VARIANTS, as_dict, goals, markdown
from bench.running.evaluate import evaluate
from bench.running.routers import router_spec


@dataclass
class Args:
    """Measure the renaming augmentation alone: the same ScienceWorld recipes cloned with and without it."""

    profile: str = "cpu"
    """a profile whose ScienceWorld pair renames (sw_rename)"""
    tasks: tuple[str, ...] | None = None
    """ScienceWorld tasks; unset: every registered one"""
    episodes: int | None = None
    """test variations per task, at most all of them; unset: all of them"""
    results_dir: Path | None = None
    """where <profile>/scienceworld_rename.{md,json} go; unset: results/"""
    tracking_uri: str | None = None
    """MLflow tracking URI; unset: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here"""
    experiment: str = DEFAULT_EXPERIMENT
    progress: bool = True


def main(args: Args) -> list[Path]:
    profile = get_profile(args.profile)
    if not profile.sw_rename:
        raise ValueError(f"profile {profile.name!r} does not rename its ScienceWorld gold paths (sw_rename): there is "
                         f"nothing to compare; use --profile cpu")
    tasks = list(args.tasks or task_names("scienceworld"))
    specs = [get_task(name) for name in tasks]
    if any(spec.suite != "scienceworld" for spec in specs):
        raise ValueError(f"--tasks: only ScienceWorld tasks have a renamed pair, got {tasks}")
    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {args.episodes}")
    check_tracking(args.tracking_uri)
    sweep = f"rename-{profile.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"
    pairs = {}
    for variant in VARIANTS:
        chosen = profile if variant == "with" else dataclasses.replace(profile, sw_rename=False)
        paths = ensure_models(chosen, tracking_uri=args.tracking_uri, suite="scienceworld", progress=args.progress)
        pairs[variant] = ModelPair(*load_pair(*paths, device=profile.device))
    rows: dict[str, dict[str, dict]] = {}
    for spec in specs:
        n = len(spec.eval_seeds) if args.episodes is None else min(args.episodes, len(spec.eval_seeds))
        row: dict[str, dict] = {}
        success: dict[str, np.ndarray] = {}
        for variant in VARIANTS:
            for role in ROLES:
                results = evaluate(router_spec(role).make(), spec, pairs[variant], 0, n, profile.batch_size,
                                   profile.name, sweep, exp_name=f"{role}@{variant}", tracking_uri=args.tracking_uri,
                                   experiment=args.experiment, progress=args.progress)
                results = sorted(results, key=lambda r: r.env_seed)
                won = np.array([float(r.success) for r in results])
                success[f"{variant}/{role}"] = won
                zeros = [0] * len(results)
                row[f"{variant}/{role}"] = {
                    "episodes": len(results), "solved": int(won.sum()),
                    "success": as_dict(seed_mean_ci(won, zeros, bounded=True)),
                    "reward": as_dict(seed_mean_ci([r.reward for r in results], zeros, bounded=True))}
        zeros = [0] * n
        for role in ROLES:
            row[f"{role}/difference"] = as_dict(seed_diff_ci(success[f"with/{role}"], success[f"without/{role}"],
                                                               zeros, bounded=True))
        for variant in VARIANTS:
            row[f"{variant}/lead"] = as_dict(seed_diff_ci(success[f"{variant}/deepthink_only"],
                                                            success[f"{variant}/quick_only"], zeros, bounded=True))
        rows[spec.name] = row
    goal_rows = goals(rows, tasks)
    context = {"profile": profile.name, "sweep (MLflow tag londi.sweep)": sweep, "git commit": git_commit()}
    for variant in VARIANTS:
        quick, deepthink = pairs[variant].quick, pairs[variant].deepthink
        context[f"{variant} renaming"] = (f"QUICK `{Path(str(quick.source)).name}`, "
                                          f"DEEPTHINK `{Path(str(deepthink.source)).name}`")
    out_dir = (args.results_dir or default_results_dir(profile.name)) / profile.name
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "scienceworld_rename.md", out_dir / "scienceworld_rename.json"]
    paths[0].write_text(markdown(rows, goal_rows, context))
    paths[1].write_text(json.dumps({"context": context, "rows": rows, "goals": goal_rows}, indent=1))
    with RunLogger(f"report__{sweep}__rename", {"profile": profile.name, "sweep": sweep},
                   tags={"londi.kind": "report", "londi.sweep": sweep, "londi.suite": "scienceworld"},
                   experiment=args.experiment, uri=args.tracking_uri) as run_log:
        for path in paths:
            run_log.log_file(path)
    print(paths[0].read_text())
    return paths


if __name__ == "__main__":
    with user_errors():
        main(tyro.cli(Args))
