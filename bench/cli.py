"""What every router's own command line shares (`python -m baselines.<router>`, `python -m algos.<router>`).

The options (`EvalArgs`, a tyro dataclass a router's `Args` extends), the checks made before any model is
trained or any run logged, and `run_cli`: evaluate the router on a task for each seed, then print the table.

The flat layout's `bench.evaluate` is this module now (bench/__init__.py: MOVED), so it also re-exports that old
module's other names (`evaluate`, `train_router`, `summary_metrics`, `git_commit`, ...).
"""

from __future__ import annotations

import dataclasses
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from bench.common.errors import user_errors
from bench.common.provenance import (
    cache_dir,
    default_results_dir,
    git_commit,  # noqa: F401  (re-exported, see the docstring)
)
from bench.common.tracking import DEFAULT_EXPERIMENT, check_tracking
from bench.envs.tasks import TaskSpec, get_task
from bench.models.cache import check_models_available, ensure_models, load_pair
from bench.models.lm import RANDOM_POLICY
from bench.models.pair import ModelPair
from bench.models.profiles import get_profile
from bench.reporting.report import ABLATION, print_sweep
from bench.running.calibrate import price_books
from bench.running.cell import train_and_evaluate
from bench.running.evaluate import SUMMARY_METRICS, evaluate, summary_metrics, train_router  # noqa: F401
from bench.running.router import Router, router_options


@dataclass
class EvalArgs:
    """Options shared by every router's command line."""

    task: str = "babyai/Mixed"
    """task name from the registry (e.g. babyai/GoToLocal, babyai/Mixed)"""
    seeds: tuple[int, ...] = (0,)
    """run seeds: each seed is one MLflow run over its own block of evaluation episodes"""
    episodes: int | None = None
    """evaluation episodes per seed; unset: the profile's"""
    profile: str = "cpu"
    """smoke, cpu or paper: sets the default models, episodes and batch size"""
    quick: str | None = None
    """QUICK checkpoint, a Hugging Face name or local path, or `random` (a uniformly random policy: the
    paper's ablation); unset: the profile's offline model"""
    deepthink: str | None = None
    """DEEPTHINK checkpoint, a Hugging Face name or local path; unset: the profile's offline model"""
    device: str = "auto"
    """torch device for the models; auto picks cuda when available"""
    batch_size: int | None = None
    """environments run in lockstep, model calls batched over them; unset: the profile's"""
    tracking_uri: str | None = None
    """MLflow tracking URI; unset: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here"""
    experiment: str = DEFAULT_EXPERIMENT
    """MLflow experiment name"""
    sweep: str | None = None
    """tag that groups the runs of one comparison; unset: a fresh id"""
    exp_name: str = ""
    """run name part after the task; empty: the setting as bench.reproduce names it, the router's name and the router
    options given here (londi_b[budget=2])"""
    progress: bool = True
    """show a progress bar"""


def check_run_options(tasks: list[TaskSpec], seeds: tuple[int, ...], episodes: int, batch_size: int) -> None:
    """Refuse options that make no sense before any model is trained or any run is logged."""
    if episodes <= 0:
        raise ValueError(f"--episodes must be a positive number of episodes per seed, got {episodes}")
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be a positive number of environments, got {batch_size}")
    if not seeds:
        raise ValueError("--seeds is empty: give at least one run seed, e.g. --seeds 0 1 2")
    for task in tasks:
        for seed in seeds:
            task.eval_episode_seeds(seed, episodes)
    if any(task.suite == "scienceworld" for task in tasks):
        from bench.envs.scienceworld_text import require_java

        require_java()  # ScienceWorld's simulator is a JVM: say so now, not after the models are trained


def resolve_device(device: str) -> str:
    """The torch device to run the models on: `auto` is cuda where torch sees a GPU, else cpu. A device this machine
    does not have is refused here, before any sweep is started or any run is logged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a torch device: use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValueError(f"--device {device}: torch sees no CUDA device on this machine (torch "
                             f"{torch.__version__}, {built}); use --device cpu, or --device auto to take a GPU where "
                             f"there is one")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    elif chosen.type != "cpu":
        raise ValueError(f"--device {device}: the harness runs its models on cpu or cuda; use --device cpu or cuda")
    return device


def setting_label(cls: type[Router], args: object, argv: Sequence[str]) -> str:
    """A router CLI's setting, named as bench.reproduce names a spec: the router's name and, in brackets, the router
    options given on the command line (in the router's own order), so `python -m algos.londi_b --budget 2` and
    `bench.reproduce --learned 'londi_b[budget=2]'` are the same setting in MLflow and the report."""
    given = {}
    for name in router_options(cls):
        flag = "--" + name.replace("_", "-")
        negated = "--no-" + name.replace("_", "-")
        if any(token in (flag, negated) or token.startswith(flag + "=") for token in argv) and hasattr(args, name):
            given[name] = getattr(args, name)
    return cls.name + (f"[{','.join(f'{k}={v}' for k, v in given.items())}]" if given else "")


def run_cli(make_router: Callable[[], Router], args: EvalArgs, argv: Sequence[str] | None = None) -> None:
    """What `python -m baselines.<router>` does: evaluate the router on args.task for each seed. `argv` (default: this
    process's command line) says which router options were given, for the setting's name."""
    with user_errors():
        _run_cli(make_router, args, sys.argv[1:] if argv is None else argv)


def _run_cli(make_router: Callable[[], Router], args: EvalArgs, argv: Sequence[str]) -> None:
    profile = get_profile(args.profile)
    task = get_task(args.task)
    device = resolve_device(args.device)
    episodes = profile.episodes_for(task) if args.episodes is None else args.episodes
    batch_size = profile.batch_size if args.batch_size is None else args.batch_size
    check_run_options([task], args.seeds, episodes, batch_size)
    check_tracking(args.tracking_uri)
    if args.quick is None or args.deepthink is None:
        check_models_available(profile, task.suite)
        quick_path, deepthink_path = ensure_models(profile, tracking_uri=args.tracking_uri, suite=task.suite,
                                                   progress=args.progress)
    quick, deepthink = load_pair(args.quick or quick_path, args.deepthink or deepthink_path, device=device)
    models = ModelPair(quick, deepthink)
    if args.quick != RANDOM_POLICY:
        # Priced like a sweep: the profile's calibration for its own pair; another pair's in the cache, so that it
        # never replaces the committed one.
        own = args.quick is None and args.deepthink is None
        where = default_results_dir(profile.name) if own else cache_dir() / "results"
        models = dataclasses.replace(models, prices=price_books(profile.name, task.suite, models, where,
                                                                progress=args.progress))
    sweep = args.sweep or f"cli-{uuid.uuid4().hex[:8]}"
    ablation = ABLATION if args.quick == RANDOM_POLICY else ""  # named as bench.reproduce names the ablation
    for seed in args.seeds:
        router = make_router()
        train_and_evaluate(router, task, models, seed, episodes, batch_size, profile.name, sweep,
                           args.exp_name or setting_label(type(router), args, argv) + ablation,
                           tracking_uri=args.tracking_uri,
                           experiment=args.experiment, progress=args.progress)
    print_sweep(sweep, tracking_uri=args.tracking_uri, experiment=args.experiment)
