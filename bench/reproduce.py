"""`make reproduce`: train (or reuse) the profile's model pairs, run every router on every task and
seed, record all of it in MLflow, then print the comparison tables and write them to results/.

Tasks of both suites (BabyAI-Text, ScienceWorld) run in one sweep, each suite with its own pair of
models, and each suite gets its own report (results/<profile>/<suite>.md, csv, json and plots).

    python -m bench.reproduce --profile cpu
    python -m bench.reproduce --profile smoke --routers quick_only my_routers:AlwaysLeft
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import shlex
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import tyro

from bench.cli import check_run_options, resolve_device
from bench.common.errors import UserError, user_errors
from bench.common.provenance import REPO_ROOT, cache_dir, default_results_dir, git_commit
from bench.common.tracking import (
    DEFAULT_EXPERIMENT,
    RunLogger,
    artifact_progress,
    check_tracking,
    metric_key,
    tracking_uri,
)
from bench.envs.tasks import BABYAI_LEVELS, TaskSpec, get_task
from bench.models.cache import CHECKPOINTS, check_models_available, ensure_models, load_pair
from bench.models.lm import ActionLM
from bench.models.pair import ModelPair
from bench.models.profiles import Profile, get_profile, with_pair
from bench.models.served import ServedLM, is_served
from bench.reporting.hindsight import frontiers_path, write_frontiers
from bench.reporting.learning import curves_frame
from bench.reporting.pair import write_pair_report
from bench.reporting.report import (
    ABLATION,
    SAMPLED,
    Cell,
    episodes_frame,
    family,
    plot_where_deepthink,
    table_markdown,
    training_frame,
    write_results,
    write_where_table,
)
from bench.running.calibrate import price_books
from bench.running.executors import EXECUTORS, Executor, RayOptions, make_executor
from bench.running.hindsight import HindsightSearch, frontiers, pair_key
from bench.running.resume import SweepState, default_state_dir
from bench.running.routers import RouterSpec, router_spec
from bench.running.sweep import RANDOM_QUICK, SAMPLED_PREFIX, CellJob, PairSource, SweepContext, write_timeline

TRAINED_LEVELS = set(BABYAI_LEVELS.values())
"""The BabyAI levels every profile's pair is cloned from (bench.models.cache keys them)."""
SUITE_NAMES = {"babyai": "BabyAI", "scienceworld": "ScienceWorld"}
DOC_RESULTS = REPO_ROOT / "results"  # the results REPRODUCE.md is made from
CASCADE_CALIBRATION_EPISODES = 20
"""Training episodes on which a cascade matched to a learned setting's fraction calibrates its threshold."""


@dataclass
class Args:
    """Run the comparison of a profile and write its report to results/."""

    profile: str = "cpu"
    """smoke (seconds, for tests), cpu (default; 2 cores, no GPU, no hub) or paper (Flan-T5 on a GPU)"""
    routers: tuple[str, ...] | None = None
    """built-in router names or user routers as module:Class, each with options in brackets
    (random_switch[p=0.3]); give a router several times for a sweep of its options; unset: the profile's for each
    suite (Profile.routers: the two models, follow_deepthink_where_they_differ, swiftsage, random_switch at p = 0.25,
    0.5, 0.75 and confidence_cascade at thresholds 0.2, 0.5, 0.8; Profile.sw_routers)"""
    learned: tuple[str, ...] | None = None
    """learned routers and their sweeps (cost c, budgets): each trains online per task and seed, on `sweep_tasks`;
    unset: the profile's for each suite (Profile.learned, Profile.sw_learned); a bare --learned: none"""
    sweep_tasks: tuple[str, ...] | None = None
    """tasks of the learned routers, their matched random switching and the ablation; unset: the profile's"""
    match_random: bool = True
    """after each learned setting, random_switch with p = its DEEPTHINK fraction on the validation episodes (the test
    episodes where there are none), on the same episodes"""
    match_cascade: bool = True
    """after each learned setting, the confidence cascade calibrated to its DEEPTHINK fraction on the validation
    episodes (the threshold re-set after every step of 20 training episodes of its own to the quantile of QUICK's
    confidence that escalates that share), on the same episodes"""
    controls: tuple[str, ...] | None = None
    """controls of LONDI run on the BabyAI `sweep_tasks` after the learned settings (not matched); unset: the
    profile's (Profile.controls); a bare --controls: none"""
    sampled: tuple[float, ...] | None = None
    """temperatures at which quick_only and deepthink_only run again with sampled actions on the BabyAI `sweep_tasks`
    (settings `quick_only@sampled[t=T]`; each family's temperature chosen on validation); unset: the profile's"""
    hindsight: bool | None = None
    """search the BabyAI sweep tasks' test episodes for the fewest DEEPTHINK calls that succeed (kept per pair in the
    cache; the committed pair's in checkpoints/<profile>/hindsight) and judge every router against it; unset: the
    profile's"""
    ablation: tuple[str, ...] | None = None
    """routers run again on `sweep_tasks` with QUICK replaced by a random policy (the paper's ablation); unset:
    quick_only and the first londi_sac setting of the task's learned ones (on ScienceWorld where the profile's
    sw_ablation says so); a bare --ablation: none"""
    train_episodes: int | None = None
    """training episodes of learned routers whose spec does not set train_episodes; unset: the profile's per suite"""
    tasks: tuple[str, ...] | None = None
    """tasks from the registry; unset: the profile's"""
    seeds: tuple[int, ...] | None = None
    """run seeds; unset: the profile's per suite"""
    episodes: int | None = None
    """evaluation (test) episodes per task and seed; unset: the profile's per suite"""
    valid_episodes: int | None = None
    """validation episodes per sweep task and seed for every setting (where each router family's setting is chosen
    for the verdict; 0: none, no verdict); unset: the profile's per suite"""
    results_dir: Path | None = None
    """where tables and plots go (a subfolder per profile); unset: results/ for the cpu and paper profiles, and
    results/ in the cache ($LONDI_CACHE, else .cache/londi) for smoke, so that trying it leaves the tracked tree
    alone"""
    tracking_uri: str | None = None
    """MLflow tracking URI; unset: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here"""
    experiment: str = DEFAULT_EXPERIMENT
    """MLflow experiment name"""
    retrain: bool = False
    """train the offline models again even if cached"""
    device: str = "auto"
    """torch device for evaluation; auto picks cuda when available"""
    progress: bool = True
    """show progress bars"""
    resume: str | None = None
    """continue a stopped sweep where it stopped: its id (printed when it stopped) or `last`; the sweep's own
    options are used, finished runs are not run again, a stopped one continues from its checkpoint"""
    state_dir: Path | None = None
    """where a sweep keeps its finished runs and checkpoints until it completes; unset: sweeps/ in the cache
    ($LONDI_CACHE, else .cache/londi)"""
    checkpoint_s: float = 30.0
    """seconds at least between two checkpoints of a running setting (0: after every finished episode)"""
    pair: str = "t5"
    """the profile's model pair: t5 (its own), causal (its recipes as decoder-only models, trained on first use) or
    mixed (the T5 QUICK with a decoder-only DEEPTHINK); another than t5 is a side study, named with --report-as"""
    quick: str | None = None
    """any model as QUICK instead of the pair's: a checkpoint (hub name or path, seq2seq or decoder-only), a served
    model (http://HOST:PORT/v1#model=ID), instruct:NAME (an instruction model prompted through its chat template);
    a side study, named with --report-as"""
    deepthink: str | None = None
    """any model as DEEPTHINK instead of the pair's (as --quick)"""
    executor: str = "serial"
    """where the cells run: serial (this process, one after another) or ray (Ray tasks: a local Ray started here, or
    the cluster at --ray-address / RAY_ADDRESS)"""
    ray_address: str | None = None
    """a running Ray cluster's head (HOST:PORT); unset: RAY_ADDRESS, else a local Ray of --ray-workers CPUs"""
    ray_workers: int = 2
    """CPUs of the local Ray started for --executor ray (a cell takes one)"""
    ray_gpus_per_cell: float = 0.0
    """GPU fraction each cell asks of Ray where the models run on CUDA (0.25: four cells share a GPU)"""
    timeline: Path | None = None
    """write where and when every cell ran to this CSV (cell, its batch, worker, start and length in seconds from the
    sweep's start, seconds loading its pair, when the driver had it, its size): what scheduling and loading cost"""
    report_as: str | None = None
    """name the report's files (results/<profile>/<name>.md, .csv, .json, _cost_reward.png) instead of after the
    suite, and leave out the pair report: a side study beside the main report, e.g. heldout_levels"""


RERUN_SKIPS = ("resume", "state_dir", "progress", "executor", "ray_address", "ray_workers", "ray_gpus_per_cell",
               "timeline")
"""Options that say how a sweep ran, not what it ran: left out of the command a report prints to rerun it."""


def command_line(args: Args) -> str:
    """`python -m bench.reproduce` with every option that differs from its default: paste it to run the same sweep."""
    parts = ["python", "-m", "bench.reproduce"]
    for field in dataclasses.fields(Args):
        value, default = getattr(args, field.name), field.default
        if field.name in RERUN_SKIPS or value == default:
            continue
        if field.name == "results_dir" and value == default_results_dir(args.profile):
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + field.name.replace("_", "-"))
        elif isinstance(value, tuple):
            parts += [flag, *map(str, value)]  # an empty tuple: the bare flag, "none"
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def resumed_args(args: Args) -> tuple[Args, str]:
    """The options a stopped sweep was started with, and its id."""
    sweep = SweepState.latest(args.state_dir) if args.resume == "last" else str(args.resume)
    saved = SweepState(args.state_dir / sweep).load_args()
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in Args.__dataclass_fields__}
    values.update(results_dir=values["results_dir"] and Path(values["results_dir"]), state_dir=args.state_dir,
                  resume=sweep)
    # How it runs now (progress, the executor and its cluster) is this command's: a sweep stopped on one cluster
    # may go on serially, or on another.
    values.update({k: getattr(args, k) for k in RERUN_SKIPS if k not in ("resume", "state_dir")})
    return replace(args, **values), sweep


@dataclass
class Plan:
    """What a sweep runs, per task: the options given, else the profile's defaults for the task's suite."""

    args: Args
    profile: Profile
    sweep_tasks: tuple[str, ...] = ()
    """Names of the sweep tasks: every router there runs the sweep's seeds and the validation episodes."""

    def routers_for(self, task: TaskSpec) -> list[RouterSpec]:
        specs = self.profile.routers_for(task) if self.args.routers is None else self.args.routers
        return [router_spec(spec) for spec in specs]

    def learned_for(self, task: TaskSpec) -> list[RouterSpec]:
        specs = self.profile.learned_for(task) if self.args.learned is None else self.args.learned
        return [router_spec(spec) for spec in specs]

    def controls_for(self, task: TaskSpec) -> list[RouterSpec]:
        """The controls, on BabyAI sweep tasks only (the supervised router's search copies BabyAI environments)."""
        if task.suite != "babyai":
            return []
        specs = self.profile.controls if self.args.controls is None else self.args.controls
        return [router_spec(spec) for spec in specs]

    def sampled_for(self, task: TaskSpec) -> tuple[float, ...]:
        """The sampling temperatures, on BabyAI sweep tasks only (ScienceWorld's models generate: nothing to sample)."""
        if task.suite != "babyai":
            return ()
        return self.profile.sampled if self.args.sampled is None else self.args.sampled

    def ablation_for(self, task: TaskSpec) -> list[RouterSpec]:
        if self.args.ablation is not None:
            return [router_spec(spec) for spec in self.args.ablation]
        learned = self.learned_for(task)
        if task.suite == "scienceworld" and not self.profile.sw_ablation:
            return []
        if not learned:  # the ablation asks what the Switcher does with a random QUICK: nothing to ask without one
            return []
        first = next((spec for spec in learned if spec.cls.name == "londi_sac"), None)
        return [router_spec("quick_only")] + ([first] if first else [])

    def seeds_for(self, task: TaskSpec) -> tuple[int, ...]:
        if self.args.seeds is not None:
            return self.args.seeds
        if task.name in self.sweep_tasks:
            return self.profile.sweep_seeds_for(task)
        return self.profile.seeds_for(task)

    def valid_episodes_for(self, task: TaskSpec) -> int:
        """Validation episodes per seed of every setting on a sweep task (0 elsewhere: no setting is chosen there)."""
        if task.name not in self.sweep_tasks:
            return 0
        given = self.args.valid_episodes
        return self.profile.valid_episodes_for(task) if given is None else given

    def episodes_for(self, task: TaskSpec) -> int:
        return self.profile.episodes_for(task) if self.args.episodes is None else self.args.episodes

    def train_episodes_for(self, task: TaskSpec) -> int:
        given = self.args.train_episodes
        return self.profile.train_episodes_for(task) if given is None else given


def main(args: Args) -> list[Cell]:
    started = time.perf_counter()
    sweep = None
    if args.state_dir is None:
        args = replace(args, state_dir=default_state_dir())
    if args.resume is not None:
        args, sweep = resumed_args(args)
    profile = with_pair(get_profile(args.profile), args.pair)
    if (args.pair != "t5" or args.quick or args.deepthink) and args.report_as is None:
        raise ValueError("another pair or model than the profile's writes a side study beside the main report: name "
                         "it with --report-as NAME (e.g. --report-as plug_and_play_causal)")
    if args.results_dir is None:
        args = replace(args, results_dir=default_results_dir(profile.name))
    # Every name and option is checked before any model is trained or any run is logged.
    tasks = [get_task(name) for name in (profile.tasks if args.tasks is None else args.tasks)]
    sweep_tasks = [get_task(name) for name in (profile.sweep_tasks if args.sweep_tasks is None else args.sweep_tasks)]
    plan = Plan(args, profile, tuple(task.name for task in sweep_tasks))
    given = [("--routers", [router_spec(spec) for spec in args.routers])] if args.routers is not None else []
    given += [(f"--learned on {task.name}", plan.learned_for(task)) for task in sweep_tasks]
    given += [(f"--ablation on {task.name}", plan.ablation_for(task)) for task in sweep_tasks]
    given += [(f"--controls on {task.name}", plan.learned_for(task) + plan.controls_for(task)) for task in sweep_tasks]
    for option, specs in given:
        labels = [spec.label for spec in specs]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"{option} gives {', '.join(twice)} more than once: each setting runs once, give it once")
    for spec in [s for task in tasks for s in plan.routers_for(task)] + [s for task in sweep_tasks
                           for s in plan.learned_for(task) + plan.controls_for(task) + plan.ablation_for(task)]:
        spec.make()  # a cost, budget or saved-Switcher path that makes no sense fails here, before any run
    for task in sweep_tasks:
        for t in plan.sampled_for(task):
            if not t > 0:
                raise ValueError(f"--sampled {t}: a sampling temperature must be > 0 (argmax is the model itself)")
    for task in tasks + sweep_tasks:
        if plan.train_episodes_for(task) < 1:
            raise ValueError(f"--train-episodes must be >= 1, got {plan.train_episodes_for(task)}")
        check_run_options([task], plan.seeds_for(task), plan.episodes_for(task), profile.batch_size)
        if plan.valid_episodes_for(task) < 0:
            raise ValueError(f"--valid-episodes must be >= 0, got {plan.valid_episodes_for(task)}")
        if plan.valid_episodes_for(task):
            for seed in plan.seeds_for(task):
                task.eval_episode_seeds(seed, plan.valid_episodes_for(task), "valid")
    for task in sweep_tasks:  # every learned setting must have its own training seeds on every sweep task
        for seed in plan.seeds_for(task):
            task.router_train_seeds(seed, plan.train_episodes_for(task))
    if args.report_as is not None and not re.fullmatch(r"[\w.-]+", args.report_as):
        raise ValueError(f"--report-as {args.report_as!r}: give a file name (letters, digits, _ . -), "
                         f"e.g. heldout_levels")
    if args.executor not in EXECUTORS:
        raise ValueError(f"--executor {args.executor!r}: choose one of {', '.join(EXECUTORS)}")
    if args.ray_workers < 1 or args.ray_gpus_per_cell < 0:
        raise ValueError(f"--ray-workers must be >= 1 and --ray-gpus-per-cell >= 0, got {args.ray_workers} and "
                         f"{args.ray_gpus_per_cell}")
    if args.checkpoint_s < 0:
        raise ValueError(f"--checkpoint-s must be >= 0 seconds, got {args.checkpoint_s}")
    # Where the cells run: a cluster that cannot be joined, or one whose nodes would not reach the tracking store,
    # fails here, before the store is touched or a sweep exists.
    executor = make_executor(args.executor, args.tracking_uri or tracking_uri(),
                             RayOptions(address=args.ray_address, workers=args.ray_workers,
                                        gpus_per_cell=args.ray_gpus_per_cell))
    try:
        check_tracking(args.tracking_uri)
        device = resolve_device(args.device)
        for spec in (args.quick, args.deepthink):
            if is_served(spec):
                ServedLM(spec)  # a wrong URL or model id: one error now, before a sweep exists
        for suite in dict.fromkeys(task.suite for task in tasks + sweep_tasks):
            if not (args.quick and args.deepthink):
                check_models_available(profile, suite, retrain=args.retrain)
        return _sweep(args, plan, profile, tasks, sweep_tasks, device, started, sweep, executor)
    finally:
        executor.close()


def _sweep(args: Args, plan: Plan, profile: Profile, tasks: list[TaskSpec], sweep_tasks: list[TaskSpec], device: str,
           started: float, sweep: str | None, executor: Executor) -> list[Cell]:
    """Start (or resume) the sweep's state, run it, and say how to continue it when it stops."""
    if sweep is None:
        sweep = f"reproduce-{profile.name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:4]}"
        SweepState(args.state_dir / sweep).save_args({**asdict(args), "resume": None})
    state = SweepState(args.state_dir / sweep, every_s=args.checkpoint_s)
    print(f"sweep {sweep}: if it stops, `python -m bench.reproduce --resume {sweep}` continues it", file=sys.stderr)
    try:
        with artifact_progress(args.progress):
            cells = _run(plan, sweep, state, tasks, sweep_tasks, device, started, executor)
    except KeyboardInterrupt:
        print(f"\nstopped: `python -m bench.reproduce --resume {sweep}` continues where it stopped", file=sys.stderr)
        raise
    except UserError as error:  # a served model gone, say: one error line, with the way back
        raise UserError(f"{error} (sweep {sweep}: `python -m bench.reproduce --resume {sweep}` continues it, "
                        f"finished runs are not run again)") from None
    except Exception as error:  # a bug (ours, or a user router's): its traceback follows, the finished runs are kept
        print(f"\nfailed: {type(error).__name__}: {error}\nonce the cause is fixed, `python -m bench.reproduce "
              f"--resume {sweep}` continues where it stopped (finished runs are not run again)", file=sys.stderr)
        raise
    state.clear()  # everything is in MLflow and results/ now
    return cells


def _run(plan: Plan, sweep: str, state: SweepState, tasks: list[TaskSpec], sweep_tasks: list[TaskSpec],
         device: str, started: float, executor: Executor) -> list[Cell]:
    """Train or load the pairs, run every setting (skipping what the sweep finished before), write the reports."""
    args, profile = plan.args, plan.profile
    suites = list(dict.fromkeys(task.suite for task in tasks + sweep_tasks))
    pairs: dict[str, ModelPair] = {}
    pair_sources: dict[str, tuple[str, str]] = {}
    suite_s: dict[str, float] = dict.fromkeys(suites, 0.0)  # seconds spent on each suite's pair and cells
    executor_info: dict[str, object] = {}
    timeline: list[dict[str, object]] = []  # every cell: where, when, how long (--timeline)
    batch_no = 0  # execute() calls so far: the matched controls' batch waits for the first one to finish
    epoch = time.time() - (time.perf_counter() - started)  # the sweep's start, in epoch seconds
    for suite in suites:
        began = time.perf_counter()
        quick_path = deepthink_path = None
        if not (args.quick and args.deepthink):
            quick_path, deepthink_path = ensure_models(profile, retrain=args.retrain, tracking_uri=args.tracking_uri,
                                                       suite=suite, progress=args.progress)
        pair_sources[suite] = (str(args.quick or quick_path), str(args.deepthink or deepthink_path))
        pair = ModelPair(*load_pair(*pair_sources[suite], device=device))
        # Every call is priced from the calibration in results/<profile>/ (measured now if missing or stale); a side
        # study's other models have their own part of it.
        part = suite if args.report_as is None else f"{suite}@{args.report_as}"
        pairs[suite] = dataclasses.replace(pair, prices=price_books(profile.name, suite, pair, args.results_dir,
                                                                    progress=args.progress, part_name=part))
        suite_s[suite] += time.perf_counter() - began
    learned_results: dict[tuple[str, str], list] = {}
    ctx = SweepContext(
        profile=profile.name, sweep=sweep, batch_size=profile.batch_size, tracking_uri=args.tracking_uri,
        experiment=args.experiment, progress=args.progress, state_dir=state.root, checkpoint_s=state.every_s,
        device=device, pairs={suite: PairSource(pair_sources[suite][0], pair_sources[suite][1], pairs[suite].prices)
                              for suite in suites})
    executor.use_pairs(pairs)
    executor_info.update(executor.describe())
    executor.check_shared([state.root] + [Path(source) for pair in pair_sources.values() for source in pair
                                          if Path(source).exists()])

    def jobs(spec: RouterSpec, task: TaskSpec, label: str | None = None, variant: str = "") -> list[CellJob]:
        """Every run seed of one setting on one task."""
        return [CellJob(task.name, spec, label or spec.label, seed, plan.episodes_for(task),
                        valid_episodes=plan.valid_episodes_for(task), train_episodes=plan.train_episodes_for(task),
                        variant=variant) for seed in plan.seeds_for(task)]

    def execute(batch: list[CellJob]) -> dict[tuple[str, str], tuple[list, list]]:
        """Run the cells; each setting's (test, validation) episodes in run-seed order, whatever order they end in.
        A cell given twice (a router both fixed and learned on a task) runs once."""
        unique: dict[tuple[str, str, int], CellJob] = {}
        for job in batch:
            unique.setdefault((job.task, job.label, job.seed), job)
        batch = list(unique.values())
        outcomes = {}
        nonlocal batch_no
        batch_no += 1
        for outcome in executor.run(ctx, batch):
            outcomes[(outcome.job.task, outcome.job.label, outcome.job.seed)] = outcome
            suite_s[outcome.job.suite] += outcome.seconds
            if args.timeline is not None:
                timeline.append({"cell": outcome.job.name, "batch": batch_no, "worker": outcome.worker,
                                 "start_s": round(outcome.started - epoch, 3),
                                 "seconds": round(outcome.seconds, 3), "load_s": round(outcome.load_s, 3),
                                 "received_s": round(time.time() - epoch, 3),
                                 "result_kb": round(len(pickle.dumps(outcome)) / 1024, 1)})
        settings: dict[tuple[str, str], tuple[list, list]] = {}
        for job in batch:  # the order the serial sweep always had
            outcome = outcomes[(job.task, job.label, job.seed)]
            test, valid = settings.setdefault((job.task, job.label), ([], []))
            test += outcome.test
            valid += outcome.valid
        return settings

    # First every cell whose options are known: the fixed routers, the learned settings, the controls, the sampled
    # models and the ablation; then the controls matched to each learned setting's fraction on its validation
    # episodes (a sweep without them matches on the test episodes, and its report has no verdict).
    first: list[CellJob] = []
    for task in tasks:
        for spec in plan.routers_for(task):
            first += jobs(spec, task)
    for task in sweep_tasks:
        for spec in plan.learned_for(task):
            first += jobs(spec, task)
        for spec in plan.controls_for(task):
            first += jobs(spec, task)
        for temperature in plan.sampled_for(task):
            for name in ("quick_only", "deepthink_only"):
                first += jobs(router_spec(name), task, f"{name}{SAMPLED}[t={temperature:g}]",
                              f"{SAMPLED_PREFIX}{temperature:g}")
        for spec in plan.ablation_for(task):
            first += jobs(spec, task, spec.label + ABLATION, RANDOM_QUICK)
    finished = execute(first)
    matched_jobs: list[CellJob] = []
    for task in sweep_tasks:
        matched: set[str] = {spec.label for spec in plan.routers_for(task)} if task in tasks else set()
        for spec in plan.learned_for(task):
            results, validation = finished[(task.name, spec.label)]
            learned_results[(task.name, spec.label)] = results
            if not spec.cls.name.startswith("londi"):
                continue  # the controls are matched to LONDI's settings
            matched_on = validation or results
            p = sum(r.deepthink_acted for r in matched_on) / max(1, sum(r.steps for r in matched_on))
            controls = ([f"random_switch[p={p:.3f}]"] if args.match_random else []) + (
                [f"confidence_cascade[fraction={p:.3f},train_episodes={CASCADE_CALIBRATION_EPISODES}]"]
                if args.match_cascade else [])
            for control in map(router_spec, controls):
                if control.label not in matched:
                    matched.add(control.label)
                    matched_jobs += jobs(control, task)
    execute(matched_jobs)
    if args.timeline is not None:
        write_timeline(timeline, args.timeline)

    everything = episodes_frame(sweep, args.tracking_uri, args.experiment)
    training = training_frame(sweep, args.tracking_uri, args.experiment)
    curves = curves_frame(sweep, args.tracking_uri, args.experiment)
    wall_s = time.perf_counter() - started
    out_dir = args.results_dir / profile.name
    all_cells: list[Cell] = []
    report_paths: list[Path] = []
    for suite in suites:
        models = pairs[suite]
        first = next(t for t in tasks + sweep_tasks if t.suite == suite)
        episodes_table = everything[everything["task"].str.startswith(f"{suite}/")]
        if episodes_table.empty:  # a suite whose tasks ran nothing (a sweep task without learned settings)
            continue
        context = {
            "profile": profile.name,
            "command": command_line(args),
            "sweep (MLflow tag londi.sweep)": sweep,
            "git commit": git_commit(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seeds": ", ".join(map(str, plan.seeds_for(first))),
            **({"seeds on the sweep tasks": ", ".join(map(str, plan.seeds_for(swept[0]))),
                "validation episodes per sweep task and seed": plan.valid_episodes_for(swept[0])}
               if (swept := [t for t in sweep_tasks if t.suite == suite]) else {}),
            "episodes per task and seed": plan.episodes_for(first),
            "device": device,
            "wall time (s) of the whole sweep, both suites, training included when not cached": round(wall_s, 1),
            f"wall time (s) of the {SUITE_NAMES[suite]} part (its pair, calibration and cells)":
                round(suite_s[suite], 1),
            **({"resumed": "yes: the wall time is the last part's only"} if args.resume else {}),
            **executor_info,
            **{f"{role.upper()}": _describe(lm) for role, lm in (("quick", models.quick),
                                                                 ("deepthink", models.deepthink))},
        }
        unseen = [t.name for t in tasks + sweep_tasks if t.suite == "babyai" and not set(t.levels) <= TRAINED_LEVELS]
        if suite == "babyai" and unseen:
            context["levels the pair never saw (not among its demonstrations or DAgger rounds)"] = ", ".join(
                dict.fromkeys(unseen))
        stem = suite if args.report_as is None else args.report_as + (f"_{suite}" if len(suites) > 1 else "")
        searched = [t for t in sweep_tasks if t.suite == suite == "babyai"]
        limits: list[Path] = []
        frontiers_path(out_dir, stem).unlink(missing_ok=True)  # never judge against another sweep's search
        if searched and (profile.hindsight if args.hindsight is None else args.hindsight):
            out_dir.mkdir(parents=True, exist_ok=True)
            limits = [write_frontiers({task.name: frontiers(
                HindsightSearch(task, models),
                [s for run in plan.seeds_for(task) for s in task.eval_episode_seeds(run, plan.episodes_for(task))],
                store=cache_dir() / "hindsight", also=(CHECKPOINTS / profile.name / "hindsight",),
                progress=args.progress) for task in searched}, out_dir, stem, pair=pair_key(models))]
        paths, report = write_results(episodes_table, training[training["task"].str.startswith(f"{suite}/")],
                                      out_dir, stem, context, curves[curves["task"].str.startswith(f"{suite}/")])
        paths += limits
        cells = report.cells
        all_cells += cells
        pair_text, pair_metrics = "", {}
        classes = {spec.label for task in tasks if task.suite == suite for spec in plan.routers_for(task)}
        if suite == "babyai" and {"quick_only", "deepthink_only"} <= classes and args.report_as is None:
            # The pair report replays BabyAIBot's states: BabyAI-Text only.
            pair_paths, pair_text, pair_metrics = write_pair_report(
                episodes_table, sweep, {"quick": models.quick, "deepthink": models.deepthink}, out_dir, context,
                tracking_uri=args.tracking_uri, experiment=args.experiment)
            paths.extend(pair_paths)
        where: dict[str, dict[str, list]] = {}  # task -> LONDI setting -> its test episodes
        for (task, label), results in learned_results.items():
            if task.startswith(f"{suite}/") and family(label) in ("londi_sac", "londi_b"):
                where.setdefault(task, {})[label] = results
        if where:  # the paper's picture: where LONDI-B spends its budget (and LONDI-SAC), a row per sweep task
            paths += [plot_where_deepthink(where, out_dir / f"{stem}_londi_where.png"),
                      write_where_table(where, out_dir / f"{stem}_londi_where.csv")]
        with RunLogger(f"report__{sweep}__{suite}", {"profile": profile.name, "sweep": sweep, "suite": suite},
                       tags={"londi.kind": "report", "londi.sweep": sweep, "londi.suite": suite},
                       experiment=args.experiment, uri=args.tracking_uri) as run_log:
            for path in paths:
                run_log.log_file(path)
            run_log.log_metrics({metric_key(f"{c.task}.{c.router}.{name}"): e.mean for c in cells
                                 for name, e in c.values.items() if e.mean == e.mean})
            run_log.log_metrics({metric_key(k): v for k, v in pair_metrics.items() if v == v})
        if pair_text:
            print("\n" + pair_text)
        print(f"\n## {suite}\n\n" + table_markdown(cells))
        report_paths += paths
    if profile.name == "cpu" and args.results_dir.resolve() == DOC_RESULTS.resolve():
        report_paths += rewrite_reproduce_doc()  # REPRODUCE.md follows the cpu results it cites
    print(f"\nwrote {', '.join(str(p) for p in report_paths)} in {wall_s:.0f} s")
    return all_cells


def rewrite_reproduce_doc() -> list[Path]:
    """REPRODUCE.md from results/ after a cpu sweep; where results/ does not yet hold every report it cites (a side
    study beside a main report of older code, say) a warning instead: the sweep's own reports are written."""
    from bench.reporting.reproduce_doc import OUTPUT, render

    try:
        OUTPUT.write_text(render())
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"warning: REPRODUCE.md was not rewritten ({error}); `make docs` rewrites it once results/ holds "
              f"every report it cites", file=sys.stderr)
        return []
    return [OUTPUT]


def _describe(lm: ActionLM) -> str:
    parts = [lm.name, f"{lm.size.non_embedding_params / 1e6:.3f}M non-embedding params", f"context {lm.context}"]
    if "train_s" in lm.meta:
        meta = lm.meta
        steps = meta.get("total_steps", meta["recipe"]["steps"])
        rounds = len(meta["recipe"].get("dagger_betas", ()))
        parts.append(f"trained {meta['train_s']:.0f} s ({steps} steps, {rounds} DAgger rounds, "
                     f"final loss {meta['final_loss']:.3f})")
        parts.append(f"held-out step accuracy vs the expert {meta['heldout_step_accuracy']:.3f}")
    return ", ".join(parts)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: the running MLflow run is closed as KILLED


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    with user_errors():
        try:
            main(tyro.cli(Args))
        except KeyboardInterrupt:
            sys.exit(130)
