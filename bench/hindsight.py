"""The hindsight minimum: per evaluation episode, the fewest DEEPTHINK calls with which it could have succeeded and
the best reward reachable with k calls (bench.running.hindsight), summarised per task and level.

The episodes are those a sweep evaluates routers on (`--split test`, every sweep seed) or chooses settings on
(`--split valid`). Each searched episode is kept at once in the store (one JSON line per episode, keyed by the two
models' weights and the search setting), so a stopped search continues and a sweep reads it instead of searching
again; `checkpoints/<profile>/hindsight` holds the committed copy for the committed pair.

    python -m bench.hindsight --profile cpu --tasks babyai/Mixed
    python -m bench.hindsight --profile smoke --tasks "babyai/GoToLocal[max_steps=6]" --node-budget 500
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from bench.cli import resolve_device
from bench.common.errors import user_errors
from bench.common.provenance import cache_dir, default_results_dir
from bench.envs.tasks import get_task
from bench.models.cache import CHECKPOINTS, check_models_available, ensure_models, load_pair
from bench.models.pair import ModelPair
from bench.models.profiles import get_profile
from bench.reporting.hindsight import frontier_frame, summary, summary_markdown
from bench.running.calibrate import price_books
from bench.running.hindsight import BEYOND, MAX_CALLS, NODE_BUDGET, HindsightSearch, frontiers


@dataclass
class Args:
    """Search each evaluation episode for the fewest DEEPTHINK calls with success (BabyAI-Text tasks)."""

    profile: str = "cpu"
    """whose model pair, episodes and seeds"""
    tasks: tuple[str, ...] = ()
    """BabyAI tasks; unset: the profile's BabyAI sweep tasks"""
    split: str = "test"
    """test (the episodes routers are reported on), valid (where settings are chosen) or train (a router's training
    episodes, `train_episodes` per sweep seed: labels for a router that learns from the search)"""
    train_episodes: int = 40
    """training episodes per sweep seed with --split train"""
    node_budget: int = NODE_BUDGET
    """states decided per episode before the search gives bounds instead of the exact minimum"""
    max_calls: int = MAX_CALLS
    """levels (DEEPTHINK calls per episode) searched at most"""
    beyond: int = BEYOND
    """levels searched past the fewest calls with success (more calls can shorten the episode)"""
    store: Path | None = None
    """where searched episodes are kept; unset: hindsight/ in the cache ($LONDI_CACHE, else .cache/londi)"""
    price: bool = True
    """price the search's model decisions with the profile's calibration (results/<profile>/calibration.json, measured
    when missing or stale), as a run's calls are priced"""
    device: str = "auto"
    """torch device of the models"""
    progress: bool = True
    """show progress bars"""


def main(args: Args) -> dict[str, str]:
    profile = get_profile(args.profile)
    if args.split not in ("test", "valid", "train"):
        raise ValueError(f"--split {args.split}: give test, valid or train")
    if args.train_episodes < 1:
        raise ValueError(f"--train-episodes must be >= 1, got {args.train_episodes}")
    names = args.tasks or tuple(t for t in profile.sweep_tasks if get_task(t).suite == "babyai")
    tasks = [get_task(name) for name in names]
    not_babyai = [t.name for t in tasks if t.suite != "babyai"]
    if not_babyai:
        raise ValueError(f"--tasks {' '.join(not_babyai)}: the search copies environments, which only BabyAI-Text "
                         f"tasks can; give BabyAI tasks")
    check_models_available(profile, "babyai")
    paths = ensure_models(profile, suite="babyai", progress=args.progress)
    models = ModelPair(*load_pair(*paths, device=resolve_device(args.device)))
    if args.price:
        models = dataclasses.replace(models, prices=price_books(profile.name, "babyai", models,
                                                                default_results_dir(profile.name),
                                                                progress=args.progress))
    store = cache_dir() / "hindsight" if args.store is None else args.store
    written = {}
    for task in tasks:
        runs = profile.sweep_seeds_for(task)
        if args.split == "train":
            seeds = [s for run in runs for s in task.router_train_seeds(run, args.train_episodes)]
        else:
            per_seed = profile.valid_episodes if args.split == "valid" else profile.episodes_for(task)
            if per_seed < 1:
                raise ValueError(f"profile {profile.name!r} has no {args.split} episodes for {task.name}")
            seeds = [s for run in runs for s in task.eval_episode_seeds(run, per_seed, args.split)]
        search = HindsightSearch(task, models, node_budget=args.node_budget, max_calls=args.max_calls,
                                 beyond=args.beyond)
        found = frontiers(search, seeds, store=store, also=(CHECKPOINTS / profile.name / "hindsight",),
                          progress=args.progress)
        text = summary_markdown(summary(frontier_frame(found, task.max_steps)), f"{task.name} ({args.split})")
        print(text)
        written[task.name] = text
    print(f"store: {store}", file=sys.stderr)
    return written


if __name__ == "__main__":
    with user_errors():
        main(tyro.cli(Args))
