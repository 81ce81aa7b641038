"""The task registry: a task name -> how to build its environment, its seeds and its step limit.

Adding a task is one `register(TaskSpec(...))` call; nothing else in the harness lists tasks. Any minigrid
BabyAI level is a task without registering it: `babyai/GoToObj` or `babyai/BabyAI-Unlock-v0`, and
`babyai/Mixed[levels=GoToObj+Unlock]` mixes a chosen list (the same seed split and step limit as the
registered levels; `[max_steps=N]` changes the limit).
Demonstration (training) seeds and evaluation seeds are disjoint ranges, so a model is never
evaluated on an episode it was cloned from. A BabyAI-Text seed draws a new layout, so there are
as many as anyone needs; a ScienceWorld "seed" is a variation index of the task, with the
simulator's own split (training on train variations, evaluation on test variations, never mixed)
and only a handful of them for some tasks (`cycle`). A ScienceWorld task takes options in brackets
(`scienceworld/power-component[simplifications=none]`): the "easy" simplifications are the default.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import gymnasium as gym

from bench.common.errors import UserError


class UnknownTaskError(UserError, KeyError):
    """Raised for a task name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; a user should read a sentence
        return str(self.args[0])


SPLITS = ("test", "valid")
"""Evaluation splits: the test episodes results are reported on, the validation episodes settings are chosen on."""


@dataclass(frozen=True)
class TaskSpec:
    """One named task of the registry."""

    name: str
    suite: str
    make_env: Callable[[], gym.Env]
    max_steps: int
    train_seeds: range
    eval_seeds: range
    description: str = ""
    valid_seeds: range = range(0)
    """Validation episodes: where a router family's setting is chosen, disjoint from training and evaluation
    (BabyAI: a seed range of its own; ScienceWorld: the second half of the simulator's dev variations). Empty: none."""
    router_seeds: range | None = None
    """Where a learned router trains, when not on `train_seeds` (ScienceWorld: the first half of the simulator's dev
    variations, which the model pair was not cloned from: issue 18); disjoint from validation and evaluation."""
    levels: tuple[str, ...] = field(default_factory=tuple)
    action_mode: str = "choose"
    """"choose": the models score the environment's fixed candidate list (BabyAI-Text's six actions);
    "generate": they generate the action text (ScienceWorld's open action space)."""
    max_slots: int | None = None
    """Most environments of this task run at once (a ScienceWorld environment is a JVM of ~350 MB)."""
    cycle: bool = False
    """Few seeds: router training cycles through all training seeds (the demonstrations' too), and a run
    evaluates at most every evaluation seed once, runs of other seeds starting at other offsets."""
    parallel_envs: bool = False
    """Step and reset this task's environments in threads: each waits on its own process (a JVM), not on Python."""
    with_options: Callable[[TaskSpec, dict[str, str]], TaskSpec] | None = field(default=None, repr=False,
                                                                                 compare=False)
    """The variant of this task that `name[key=value,...]` asks for, from the task and the options (BabyAI:
    max_steps, and levels for a mixed task; ScienceWorld: simplifications, max_steps)."""

    def __post_init__(self) -> None:
        routers = self.router_seeds if self.router_seeds is not None else range(0)
        for (a, first), (b, second) in (((("train", self.train_seeds), ("eval", self.eval_seeds))),
                                        (("train", self.train_seeds), ("validation", self.valid_seeds)),
                                        (("eval", self.eval_seeds), ("validation", self.valid_seeds)),
                                        (("router training", routers), ("eval", self.eval_seeds)),
                                        (("router training", routers), ("validation", self.valid_seeds))):
            overlap = range(max(first.start, second.start), min(first.stop, second.stop))
            if len(first) and len(second) and len(overlap) > 0:
                raise ValueError(f"task {self.name!r}: {a} and {b} seeds overlap on {overlap}")

    def router_train_seeds(self, run_seed: int, episodes: int) -> list[int]:
        """Training episodes of a learned router for run `run_seed`: from `router_seeds` where the task has them
        (cycled through), else from the upper half of the training seeds (the lower half holds the model pair's
        demonstrations and DAgger rollouts), a block per run."""
        if run_seed < 0 or episodes < 1:
            raise ValueError(f"task {self.name!r}: run seed must be >= 0 and episodes >= 1")
        if self.cycle or self.router_seeds is not None:
            pool = self.router_seeds if self.router_seeds is not None else self.train_seeds
            return [pool[(run_seed * episodes + i) % len(pool)] for i in range(episodes)]
        base = self.train_seeds.start + len(self.train_seeds) // 2
        start = base + run_seed * episodes
        if start + episodes > self.train_seeds.stop:
            raise ValueError(f"task {self.name!r}: no {episodes} router training seeds for run seed {run_seed}")
        return list(range(start, start + episodes))

    def eval_episode_seeds(self, run_seed: int, episodes: int, split: str = "test") -> list[int]:
        """The evaluation episodes of run `run_seed`: consecutive blocks, so runs never share episodes. `split`
        "valid" gives the validation episodes instead (where settings are chosen), from `valid_seeds`."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        pool = self.eval_seeds if split == "test" else self.valid_seeds
        if not len(pool):
            raise ValueError(f"task {self.name!r} has no validation seeds")
        if run_seed < 0 or episodes < 1:
            # a negative start would slice from the end of the range and silently give no episodes
            raise ValueError(f"run seed must be >= 0 and episodes >= 1, got run seed {run_seed}, {episodes} episodes")
        start = run_seed * episodes
        if self.cycle:
            n = len(pool)
            return [pool[(start + i) % n] for i in range(min(episodes, n))]
        if start + episodes > len(pool):
            raise ValueError(
                f"task {self.name!r} has {len(pool)} {'evaluation' if split == 'test' else 'validation'} seeds; "
                f"run seed {run_seed} with {episodes} episodes needs {start + episodes}: use fewer episodes or seeds"
            )
        return list(pool[start:start + episodes])


_REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"task {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def variant_name(base: TaskSpec, differs: dict[str, str | None]) -> str:
    """A variant's one name: the options that differ from the task's own, parsed values, in key order (a default
    given explicitly, `max_steps=064` or an empty `[]` do not make another setting)."""
    return base.name + "[" + ",".join(f"{k}={v}" for k, v in sorted(differs.items()) if v is not None) + "]"


def max_steps_option(base: TaskSpec, options: dict[str, str]) -> int:
    """The step limit a task variant asks for (`[max_steps=N]`), else the task's own."""
    try:
        max_steps = int(options.get("max_steps", base.max_steps))
    except ValueError:
        max_steps = 0
    if max_steps < 1:
        raise ValueError(f"task {base.name!r}: max_steps must be a positive number of steps, got "
                         f"{options.get('max_steps')!r}")
    return max_steps


_WITH_OPTIONS = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<options>[^\[\]]*)\]$")


def get_task(name: str) -> TaskSpec:
    """A registered task, or a variant of one with options in brackets:
    `scienceworld/power-component[simplifications=none,max_steps=40]`."""
    match = _WITH_OPTIONS.match(name)
    if match:
        base = get_task(match["base"])
        if base.with_options is None:
            raise ValueError(f"task {base.name!r} takes no options: drop the [...] after its name")
        options = {}
        for part in filter(None, match["options"].split(",")):
            key, eq, value = part.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise ValueError(f"task {name!r}: options are key=value separated by commas, got {part!r}")
            options[key.strip()] = value.strip()
        return base.with_options(base, options)
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("babyai/"):
        try:
            return babyai_task(name.removeprefix("babyai/"))
        except UnknownTaskError:
            levels = ", ".join(_short_level(i) for i in babyai_level_ids())
            raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}, or any "
                                   f"minigrid BabyAI level as babyai/<level>: {levels}") from None
    raise UnknownTaskError(
        f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}, or any minigrid BabyAI level as "
        f"babyai/<level> (babyai/GoToObj, babyai/BabyAI-Unlock-v0)"
    )


def task_names(suite: str | None = None) -> list[str]:
    return [name for name, spec in _REGISTRY.items() if suite is None or spec.suite == suite]


# ---------------------------------------------------------------- BabyAI-Text
# Seeds below 1,000,000 are for demonstrations and training; evaluation starts at 1,000,000.
BABYAI_TRAIN_SEEDS = range(0, 1_000_000)
BABYAI_EVAL_SEEDS = range(1_000_000, 1_100_000)
BABYAI_VALID_SEEDS = range(1_100_000, 1_200_000)
BABYAI_MAX_STEPS = 64
BABYAI_LEVELS = {
    "GoToLocal": "BabyAI-GoToLocal-v0",
    "PickupLoc": "BabyAI-PickupLoc-v0",
    "PutNextLocal": "BabyAI-PutNextLocal-v0",
    "OpenDoor": "BabyAI-OpenDoor-v0",
}


def _babyai_builder(levels: tuple[str, ...], max_steps: int = BABYAI_MAX_STEPS) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        from bench.envs.babyai_text import BabyAITextEnv

        return BabyAITextEnv(levels=levels, max_steps=max_steps)

    return make


def babyai_level_ids() -> list[str]:
    """Every BabyAI level minigrid registers with gymnasium (BabyAI-GoToLocal-v0, BabyAI-Unlock-v0, ...)."""
    import minigrid  # noqa: F401  (importing registers the BabyAI-* ids)

    return sorted(i for i in gym.registry if i.startswith("BabyAI-"))


def babyai_level_id(name: str) -> str:
    """A level's gymnasium id from its id or its short name (GoToObj -> BabyAI-GoToObj-v0)."""
    known = babyai_level_ids()
    for candidate in (name, f"BabyAI-{name}-v0", f"BabyAI-{name}"):
        if candidate in known:
            return candidate
    short = ", ".join(_short_level(i) for i in known)
    raise UnknownTaskError(f"unknown BabyAI level {name!r}; minigrid's levels: {short}")


def _short_level(level_id: str) -> str:
    return level_id.removeprefix("BabyAI-").removesuffix("-v0")


def _babyai_options(base: TaskSpec, options: dict[str, str], allowed: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
    """The levels and step limit a BabyAI task variant asks for (`levels=GoToObj+Unlock`, `max_steps=N`)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"task {base.name!r}: unknown option {unknown[0]!r}; its options: {', '.join(allowed)}")
    levels = base.levels
    if "levels" in options:
        names = [n.strip() for n in options["levels"].split("+") if n.strip()]
        if not names:
            raise ValueError(f"task {base.name!r}: levels= needs level names joined by +, e.g. levels=GoToObj+Unlock")
        levels = tuple(dict.fromkeys(babyai_level_id(n) for n in names))
    return levels, max_steps_option(base, options)


def _babyai_variant(allowed: tuple[str, ...]) -> Callable[[TaskSpec, dict[str, str]], TaskSpec]:
    def with_options(base: TaskSpec, options: dict[str, str]) -> TaskSpec:
        levels, max_steps = _babyai_options(base, options, allowed)
        differs = {"levels": "+".join(_short_level(i) for i in levels) if levels != base.levels else None,
                   "max_steps": str(max_steps) if max_steps != base.max_steps else None}
        if not any(differs.values()):
            return base  # the task itself: one name per setting
        name = variant_name(base, differs)
        which = ", ".join(levels)
        return replace(base, name=name, make_env=_babyai_builder(levels, max_steps), max_steps=max_steps,
                       levels=levels, description=f"BabyAI-Text over {which} ({max_steps} steps)", with_options=None)

    return with_options


def babyai_task(level: str) -> TaskSpec:
    """The task of one minigrid BabyAI level by id or short name, registered or not: `babyai/GoToObj` and
    `babyai/BabyAI-GoToObj-v0` are the same task, with the registered levels' seed split and step limit."""
    level_id = babyai_level_id(level)
    name = f"babyai/{_short_level(level_id)}"
    if name in _REGISTRY:
        return _REGISTRY[name]
    return TaskSpec(name=name, suite="babyai", make_env=_babyai_builder((level_id,)), max_steps=BABYAI_MAX_STEPS,
                    train_seeds=BABYAI_TRAIN_SEEDS, eval_seeds=BABYAI_EVAL_SEEDS, valid_seeds=BABYAI_VALID_SEEDS,
                    description=f"BabyAI-Text over minigrid's {level_id}", levels=(level_id,),
                    with_options=_babyai_variant(("max_steps",)))


for _short, _level in BABYAI_LEVELS.items():
    register(TaskSpec(
        name=f"babyai/{_short}",
        suite="babyai",
        make_env=_babyai_builder((_level,)),
        max_steps=BABYAI_MAX_STEPS,
        train_seeds=BABYAI_TRAIN_SEEDS,
        eval_seeds=BABYAI_EVAL_SEEDS,
        valid_seeds=BABYAI_VALID_SEEDS,
        description=f"BabyAI-Text over minigrid's {_level}",
        levels=(_level,),
        with_options=_babyai_variant(("max_steps",)),
    ))

register(TaskSpec(
    name="babyai/Mixed",
    suite="babyai",
    make_env=_babyai_builder(tuple(BABYAI_LEVELS.values())),
    max_steps=BABYAI_MAX_STEPS,
    train_seeds=BABYAI_TRAIN_SEEDS,
    eval_seeds=BABYAI_EVAL_SEEDS,
    valid_seeds=BABYAI_VALID_SEEDS,
    description="BabyAI-Text, one of the four levels drawn per episode (the paper's mixed tasks); "
                "`babyai/Mixed[levels=GoToObj+Unlock]` mixes other levels",
    levels=tuple(BABYAI_LEVELS.values()),
    with_options=_babyai_variant(("levels", "max_steps")),
))


# ---------------------------------------------------------------- ScienceWorld
# The simulator's variation split of each task (train, dev, test counts: the variations are numbered
# train first, then dev, then test; tests/test_scienceworld.py checks these against the simulator) and
# a step limit of about 1.5 times the longest gold path seen under the "easy" simplifications (power-component
# 11-13 steps, lifespan 5-10, find-living-thing 8-16, use-thermometer 20-22).
SCIENCEWORLD_TASKS: dict[str, tuple[int, int, int, int, str]] = {
    "power-component": (10, 5, 5, 20, "create a circuit that powers a component (the paper's 'create a circuit')"),
    "lifespan-longest-lived-then-shortest-lived": (
        62, 31, 32, 15, "focus on the longest-lived, then the shortest-lived animal (the paper's second task)"),
    "find-living-thing": (150, 75, 75, 25, "find a living thing and move it to a box"),
    "use-thermometer": (270, 135, 135, 32, "measure a substance's temperature and sort it into a box"),
}
SCIENCEWORLD_MAX_SLOTS = 8
SCIENCEWORLD_DEMO_ONLY: dict[str, tuple[int, int, int]] = {
    "find-animal": (150, 75, 75),
    "find-plant": (150, 75, 75),
    "find-non-living-thing": (150, 75, 75),
    "power-component-renewable-vs-nonrenewable-energy": (10, 5, 5),
    "test-conductivity": (450, 225, 225),
}
"""ScienceWorld tasks whose gold paths a pair may be cloned from without the task being registered for evaluation
(train, dev, test variations, checked against the simulator like the registered ones). They share actions and
objects with the registered tasks (boxes, rooms, wires and terminals, "focus on" a named object) and give a model
trained from scratch more to learn copying names from."""
SCIENCEWORLD_UNREPLAYABLE_GOLD = frozenset({"test-conductivity"})
"""Tasks whose gold path is not the same from one play of a variation to the next (test-conductivity's dev
variation 451: 22 then 30 steps, 2026-12-03): a held-out accuracy re-measured on them moves with the replay."""


SCIENCEWORLD_SIMPLIFICATIONS = ("teleportAction", "selfWateringFlowerPots", "openContainers", "openDoors",
                                "noElectricalAction")
"""The simulator's simplifications; "easy" (the default) is all of them but noElectricalAction on the electrical
tasks. A task variant names its own: `[simplifications=none]` (the full task) or `[simplifications=openDoors+
teleportAction]`."""


def _scienceworld_builder(task: str, max_steps: int, simplifications: str = "easy") -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        from bench.envs.scienceworld_text import ScienceWorldTextEnv

        return ScienceWorldTextEnv(task, max_steps=max_steps, simplifications=simplifications)

    return make


def _scienceworld_variant(task: str) -> Callable[[TaskSpec, dict[str, str]], TaskSpec]:
    def with_options(base: TaskSpec, options: dict[str, str]) -> TaskSpec:
        unknown = sorted(set(options) - {"simplifications", "max_steps"})
        if unknown:
            raise ValueError(f"task {base.name!r}: unknown option {unknown[0]!r}; its options are simplifications "
                             f"(easy, none, or names joined by +: {', '.join(SCIENCEWORLD_SIMPLIFICATIONS)}) and "
                             f"max_steps")
        chosen = options.get("simplifications", "easy")
        names = [] if chosen == "none" else chosen.split("+")
        bad = [n for n in names if n not in (*SCIENCEWORLD_SIMPLIFICATIONS, "easy")]
        if bad:
            raise ValueError(f"task {base.name!r}: unknown simplification {bad[0]!r}; choose easy, none, or names "
                             f"joined by +: {', '.join(SCIENCEWORLD_SIMPLIFICATIONS)}")
        if "noElectricalAction" in names and task == "power-component":
            raise ValueError(f"task {base.name!r} needs electrical actions: drop noElectricalAction")
        max_steps = max_steps_option(base, options)
        differs = {"simplifications": ("+".join(names) or "none") if chosen != "easy" else None,
                   "max_steps": str(max_steps) if max_steps != base.max_steps else None}
        if not any(differs.values()):
            return base
        name = variant_name(base, differs)
        return replace(base, name=name, make_env=_scienceworld_builder(task, max_steps, ",".join(names)),
                       max_steps=max_steps, description=f"{base.description} (simplifications: {chosen})",
                       with_options=None)

    return with_options


for _task, (_train, _dev, _test, _steps, _about) in SCIENCEWORLD_TASKS.items():
    register(TaskSpec(
        name=f"scienceworld/{_task}",
        suite="scienceworld",
        make_env=_scienceworld_builder(_task, _steps),
        max_steps=_steps,
        train_seeds=range(0, _train),
        eval_seeds=range(_train + _dev, _train + _dev + _test),
        # The dev variations in two: learned routers train on the first half (the pair was cloned from training
        # variations), settings are chosen on the second.
        router_seeds=range(_train, _train + (_dev + 1) // 2),
        valid_seeds=range(_train + (_dev + 1) // 2, _train + _dev),
        description=f"ScienceWorld {_task}: {_about}",
        levels=(_task,),
        action_mode="generate",
        max_slots=SCIENCEWORLD_MAX_SLOTS,
        cycle=True,
        parallel_envs=True,
        with_options=_scienceworld_variant(_task),
    ))
