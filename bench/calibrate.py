"""`make calibrate`: measure what each model's decision costs on this machine, for pricing every run's calls.

Writes `<results_dir>/<profile>/calibration.json` and calibration.md (bench.running.calibrate): per suite, each
model's seconds per call by batch size and prompt length (and output length where it generates), the router's
price, and the machine it describes. A suite whose calibration still describes this machine and its checkpoints
is kept unless `--force`; `bench.reproduce` measures a missing or stale one before a sweep.

    python -m bench.calibrate --profile cpu
    python -m bench.calibrate --profile smoke --suites babyai --force
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from bench.cli import resolve_device
from bench.common.errors import user_errors
from bench.common.provenance import default_results_dir
from bench.models.cache import SUITES, check_models_available, ensure_models, load_pair
from bench.models.pair import ModelPair
from bench.models.profiles import get_profile
from bench.running.calibrate import calibration_path, load_or_calibrate


@dataclass
class Args:
    """Measure each model's decision cost on this machine (per batch size and prompt length) for priced costs."""

    profile: str = "cpu"
    """smoke, cpu or paper: whose model pairs, and up to which batch size"""
    suites: tuple[str, ...] = SUITES
    """babyai, scienceworld or both"""
    results_dir: Path | None = None
    """where calibration.json goes (a subfolder per profile); unset: results/ for cpu and paper, and results/ in the
    cache ($LONDI_CACHE, else .cache/londi) for smoke"""
    force: bool = False
    """measure again even where the file still describes this machine and these checkpoints"""
    device: str = "auto"
    """torch device of the models; auto picks cuda when available"""
    tracking_uri: str | None = None
    """MLflow tracking URI, for a pair that has to be trained first"""
    progress: bool = True
    """show progress bars"""


def main(args: Args) -> Path:
    profile = get_profile(args.profile)
    unknown = [suite for suite in args.suites if suite not in SUITES]
    if unknown or not args.suites:
        raise ValueError(f"--suites {' '.join(args.suites) or '(none)'}: give one or more of {', '.join(SUITES)}")
    device = resolve_device(args.device)
    results_dir = default_results_dir(profile.name) if args.results_dir is None else args.results_dir
    for suite in args.suites:
        check_models_available(profile, suite)
    for suite in args.suites:
        started = time.perf_counter()
        paths = ensure_models(profile, tracking_uri=args.tracking_uri, suite=suite, progress=args.progress)
        pair = ModelPair(*load_pair(*paths, device=device))
        load_or_calibrate(profile.name, suite, pair, results_dir, force=args.force, progress=args.progress)
        print(f"{suite}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    path = calibration_path(results_dir, profile.name)
    print(f"calibration: {path} (readable: {path.with_suffix('.md')})")
    return path


if __name__ == "__main__":
    with user_errors():
        main(tyro.cli(Args))
