"""The router contract: at every step of every running episode, decide which model acts.

A router is one class with `route(view) -> mask` (True = DEEPTHINK acts). The `StepView` it
receives lets it look at the episodes and, if it needs to, ask either model for its scores
before deciding (a confidence cascade asks QUICK; follow_deepthink_where_they_differ asks both). Those calls are metered
and cached, so the runner reuses them instead of paying twice. A learned router gets every
transition through `observe`. Nothing in bench/ knows a particular router.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bench.common.seeding import generator
from bench.envs.contexts import EpisodeHistory
from bench.envs.tasks import TaskSpec
from bench.running.metering import Meter


@dataclass
class StepView:
    """What a router sees at one step, for the episodes still running (`slots`).

    Asking a model (`actions`, `margin`, `entropy`, `scores`) runs it once for the positions not yet
    asked this step; the runner then plays the chosen model's cached decision instead of paying twice.
    """

    slots: list[int]
    histories: list[EpisodeHistory]
    infos: list[dict[str, Any]]
    last_rewards: np.ndarray
    steps: np.ndarray
    meter: Meter
    _decide: Callable[[str, list[int]], dict[int, SlotDecision]]
    _cache: dict[str, dict[int, SlotDecision]] = field(default_factory=lambda: {"quick": {}, "deepthink": {}})

    def decisions(self, model: str, positions: list[int] | None = None) -> list[SlotDecision]:
        """`model`'s ("quick" or "deepthink") decision at each of `positions` (indices into `slots`; default all)."""
        positions = list(range(len(self.slots))) if positions is None else positions
        cache = self._cache[model]
        missing = [p for p in positions if self.slots[p] not in cache]
        if missing:
            cache.update(self._decide(model, [self.slots[p] for p in missing]))
        return [cache[self.slots[p]] for p in positions]

    def actions(self, model: str, positions: list[int] | None = None) -> np.ndarray:
        """The action `model` would play at each position (strings)."""
        return np.array([d.action for d in self.decisions(model, positions)], dtype=object)

    def margin(self, model: str, positions: list[int] | None = None) -> np.ndarray:
        """`model`'s top-1 minus top-2 probability for its action (see bench.models.lm.Decision)."""
        return np.array([d.margin for d in self.decisions(model, positions)])

    def entropy(self, model: str, positions: list[int] | None = None) -> np.ndarray:
        return np.array([d.entropy for d in self.decisions(model, positions)])

    def scores(self, model: str, positions: list[int] | None = None) -> np.ndarray:
        """Candidate log-likelihoods [positions, candidates] where the task scores a fixed candidate list."""
        rows = [d.scores for d in self.decisions(model, positions)]
        if any(r is None for r in rows):
            raise ValueError("this task's models generate their actions: there are no candidate scores; "
                             "use view.actions / view.margin / view.entropy")
        return np.stack(rows) if rows else np.zeros((0, 0))

    def quick(self, positions: list[int] | None = None) -> np.ndarray:
        return self.scores("quick", positions)

    def deepthink(self, positions: list[int] | None = None) -> np.ndarray:
        return self.scores("deepthink", positions)

    def called(self, model: str) -> set[int]:
        """Slots for which `model` has already been run at this step."""
        return set(self._cache[model])


@dataclass(frozen=True)
class SlotDecision:
    """One model's decision for one episode at one step."""

    action: str
    margin: float
    entropy: float
    scores: np.ndarray | None = None


@dataclass
class Transition:
    """One step of one episode, as a learned router sees it after the environment moved."""

    slot: int
    history: EpisodeHistory
    deepthink: bool
    reward: float
    terminated: bool
    truncated: bool
    next_history: EpisodeHistory


class Router:
    """Base class of every router. Subclasses set `name` and implement `route`."""

    name: ClassVar[str] = "router"

    @property
    def rng(self) -> np.random.Generator:
        """This router's own generator, seeded by the runner with the run seed (`seed`) before any episode; no two
        routers share one, and none touches a global generator."""
        if "_rng" not in vars(self):
            self._rng = generator(0, "router")
        return self._rng

    @rng.setter
    def rng(self, generator: np.random.Generator) -> None:
        self._rng = generator

    def seed(self, seed: int) -> None:
        """Called by the runner with the run seed before any episode: randomness comes from `self.rng`."""
        self._rng = generator(seed, "router")

    def route(self, view: StepView) -> np.ndarray:
        """Boolean mask over `view.slots`: True where DEEPTHINK acts this step."""
        raise NotImplementedError

    def prepare(self, task: TaskSpec) -> None:
        """Called by the runner with the task before any episode (and before `seed`): a router that reads the task
        (LONDI's progress feature divides the steps taken by the task's step limit) takes what it needs here, and
        keeps no reference to the task: a sweep pickles its routers, and a task's environment builder cannot be."""

    def start_episode(self, slot: int, seed: int) -> None:
        """A new episode (env seed `seed`) begins in `slot`; reset any per-episode state."""

    def observe(self, transitions: list[Transition]) -> None:
        """Called after every environment step with what happened (learned routers train here)."""

    def params(self) -> dict[str, Any]:
        """Hyperparameters to log with the run: by default the constructor's options as set."""
        return {name: getattr(self, name) for name in router_options(type(self)) if hasattr(self, name)}


def router_options(cls: type[Router]) -> dict[str, inspect.Parameter]:
    """The keyword options a router's constructor takes (name -> parameter, annotation resolved)."""
    hints = typing.get_type_hints(cls.__init__) if cls.__init__ is not object.__init__ else {}
    params = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        params[name] = param.replace(annotation=hints.get(name, param.annotation))
    return params
