"""A sweep as a list of independent cells, and how one cell runs wherever it is sent.

A cell is one router setting's one run seed on one task (`CellJob`): trained first if it learns, evaluated on the
validation episodes where the task has them, then on the test episodes (bench.running.cell). Cells share nothing
but what `SweepContext` carries (the sweep id, the MLflow store, the sweep state, the model pairs' sources and price
books), so a cell runs the same in the driver's process (the serial executor) or on any Ray worker
(bench.running.executors): its router, environments and models' generators are seeded from the cell alone.

A worker loads each suite's pair once (`pair_for`, kept per process) and serves every cell it is given from it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common.tracking import DEFAULT_EXPERIMENT
from bench.envs.tasks import get_task
from bench.running.cell import train_and_evaluate
from bench.running.resume import SweepState
from bench.running.routers import RouterSpec
from bench.running.runner import EpisodeResult, ModelPair

RANDOM_QUICK = "random_quick"
"""Variant of a cell whose QUICK is a uniformly random policy (the paper's ablation)."""
SAMPLED_PREFIX = "sampled:"
"""Variant `sampled:T`: both models act by sampling at temperature T."""


@dataclass(frozen=True)
class PairSource:
    """Where a suite's pair comes from: what bench.models.cache.load_pair reads, and its price books."""

    quick: str
    deepthink: str
    prices: Any = None
    """bench.running.pricing.PriceBooks measured on the driver (None: unpriced)"""


@dataclass(frozen=True)
class SweepContext:
    """What every cell of one sweep shares."""

    profile: str
    sweep: str
    batch_size: int
    pairs: dict[str, PairSource]
    """suite -> its pair"""
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    progress: bool = False
    state_dir: Path | None = None
    """the sweep state's folder (state_dir / sweep), None: a sweep that cannot be resumed"""
    checkpoint_s: float = 30.0
    device: str = "cpu"

    def state(self) -> SweepState | None:
        return None if self.state_dir is None else SweepState(self.state_dir, every_s=self.checkpoint_s)


@dataclass(frozen=True)
class CellJob:
    """One cell: `spec`'s run seed `seed` on `task`, logged under `label`."""

    task: str
    spec: RouterSpec
    label: str
    seed: int
    episodes: int
    valid_episodes: int = 0
    train_episodes: int | None = None
    """a learned router's training episodes where its spec does not set them"""
    variant: str = ""
    """"" (the pair), RANDOM_QUICK or SAMPLED_PREFIX + temperature"""

    @property
    def name(self) -> str:
        return f"{self.task} {self.label} seed {self.seed}"

    @property
    def suite(self) -> str:
        return self.task.split("/", 1)[0]


@dataclass
class CellOutcome:
    """What a cell returns: its test episodes and its validation episodes, with where and how long it ran."""

    job: CellJob
    test: list[EpisodeResult]
    valid: list[EpisodeResult] = field(default_factory=list)
    seconds: float = 0.0
    worker: str = "driver"
    """where it ran: the driver, or a Ray node and process"""
    started: float = float("nan")
    """when it began (epoch seconds on the machine that ran it)"""
    load_s: float = 0.0
    """seconds of `seconds` spent loading its pair (a worker's first cell; 0 where the pair was loaded before)"""


_PAIRS: dict[tuple[str, str, str], ModelPair] = {}
"""This process's loaded pairs, by (quick, deepthink, device): a worker loads a pair once for all its cells."""


def pair_for(ctx: SweepContext, suite: str) -> ModelPair:
    """The suite's pair with its price books, loaded in this process the first time a cell needs it."""
    from bench.models.cache import load_pair

    source = ctx.pairs[suite]
    key = (source.quick, source.deepthink, ctx.device)
    if key not in _PAIRS:
        _PAIRS[key] = ModelPair(*load_pair(source.quick, source.deepthink, device=ctx.device))
    return dataclasses.replace(_PAIRS[key], prices=source.prices)


def loaded_pairs() -> int:
    """How many pairs this process has loaded (what the executors report per worker)."""
    return len(_PAIRS)


def variant_of(models: ModelPair, variant: str) -> ModelPair:
    """The pair a cell of `variant` acts with."""
    from bench.models.lm import RandomPolicy, SampledPolicy

    if not variant:
        return models
    if variant == RANDOM_QUICK:
        return dataclasses.replace(models, quick=RandomPolicy(context=models.quick.context))
    if variant.startswith(SAMPLED_PREFIX):
        t = float(variant.removeprefix(SAMPLED_PREFIX))
        return dataclasses.replace(models, quick=SampledPolicy(models.quick, t, "quick"),
                                   deepthink=SampledPolicy(models.deepthink, t, "deepthink"))
    raise ValueError(f"unknown cell variant {variant!r}")


def finished_before(ctx: SweepContext, job: CellJob) -> CellOutcome | None:
    """The cell's outcome where the sweep state says it finished (a resumed sweep, wherever it ran), else None:
    the driver skips it without sending it anywhere."""
    state = ctx.state()
    if state is None:
        return None
    test = state.done(job.task, job.label, job.seed, "eval")
    valid = state.done(job.task, job.label, job.seed, "valid") if job.valid_episodes > 0 else []
    if test is None or valid is None:
        return None
    return CellOutcome(job, test, valid, seconds=0.0, worker="finished before")


def run_cell(ctx: SweepContext, job: CellJob, models: ModelPair | None = None) -> CellOutcome:
    """Run one cell (skipping what the sweep state says is finished, continuing a stopped part from its
    checkpoint) and return its episodes."""
    began, started = time.perf_counter(), time.time()
    task = get_task(job.task)
    if models is None:
        models = pair_for(ctx, job.suite)
    load_s = time.perf_counter() - began
    pair = variant_of(models, job.variant)
    router = job.spec.make()
    if hasattr(router, "train_episodes") and "train_episodes" not in job.spec.options \
            and job.train_episodes is not None:
        router.train_episodes = job.train_episodes
    valid: list[EpisodeResult] = []
    test = train_and_evaluate(router, task, pair, job.seed, job.episodes, ctx.batch_size, ctx.profile, ctx.sweep,
                              job.label, tracking_uri=ctx.tracking_uri, experiment=ctx.experiment,
                              progress=ctx.progress, state=ctx.state(), valid_episodes=job.valid_episodes,
                              valid_out=valid)
    return CellOutcome(job, test, valid, seconds=time.perf_counter() - began, started=started, load_s=load_s)


def write_timeline(rows: list[dict[str, Any]], path: Path) -> Path:
    """Every cell of a sweep as one CSV row (reproduce --timeline): the cell, its batch (the matched controls' batch
    starts when the first has finished), where it ran, when it started and how long it took (seconds from the
    sweep's start), the part of that spent loading its pair, when the driver had its outcome, and the outcome's size
    as the driver receives it (pickled). A cell the sweep finished before it was resumed has no start."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["cell", "batch", "worker", "start_s", "seconds", "load_s", "received_s", "result_kb"]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path
