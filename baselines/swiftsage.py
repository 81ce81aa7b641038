"""SwiftSage-style rules (Lin et al. 2023) as a router: the small model by default, the large one on trouble.

Per episode, QUICK ("Swift") acts for the first `warmup` steps. After that DEEPTHINK ("Sage")
takes over when any of these fires:

- QUICK's last action did nothing: the observation did not change (walking into a wall,
  picking up where nothing lies, toggling nothing);
- no reward for `patience` steps in a row;
- the agent is looping: its last `window` actions repeat with period 1 or 2 and the current
  observation was already seen within those steps.

DEEPTHINK then acts for at most `max_deepthink` steps in a row, after which QUICK gets the
episode back (and the no-reward count starts again).

    python -m baselines.swiftsage --task babyai/Mixed --patience 8 --max-deepthink 4
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tyro

from bench.cli import EvalArgs, run_cli
from bench.running.router import Router, StepView, Transition


@dataclass
class Args(EvalArgs):
    """SwiftSage's hand-written rules: QUICK by default, DEEPTHINK when stuck, looping or without reward."""

    warmup: int = 2
    """steps QUICK always takes at the start of an episode"""
    patience: int = 10
    """steps without reward before DEEPTHINK is called"""
    window: int = 4
    """recent actions checked for a loop"""
    max_deepthink: int = 4
    """most DEEPTHINK steps in a row before QUICK is forced back"""


@dataclass
class _Episode:
    """What the rules track for one running episode."""

    steps: int = 0
    without_reward: int = 0
    deepthink_streak: int = 0
    quick_did_nothing: bool = False
    reason: str = ""
    """Why DEEPTHINK acts now ("" while QUICK acts): nothing, patience, loop."""
    fired: dict[str, int] = field(default_factory=lambda: {"nothing": 0, "patience": 0, "loop": 0})


def is_looping(actions: list[str], observations: list[str], window: int) -> bool:
    """The last `window` actions repeat with period 1 or 2 and the current view came up in that window."""
    if len(actions) < window:
        return False
    recent = actions[-window:]
    periodic = all(recent[i] == recent[i % 2] for i in range(window)) or len(set(recent)) == 1
    return periodic and observations[-1] in observations[-window - 1:-1]


class SwiftSage(Router):
    name = "swiftsage"

    def __init__(self, warmup: int = 2, patience: int = 10, window: int = 4, max_deepthink: int = 4) -> None:
        for option, value, least in (("warmup", warmup, 0), ("patience", patience, 1), ("window", window, 2),
                                     ("max_deepthink", max_deepthink, 1)):
            if value < least:
                raise ValueError(f"swiftsage: {option} must be >= {least}, got {value}")
        self.warmup, self.patience, self.window, self.max_deepthink = warmup, patience, window, max_deepthink
        self.episodes: dict[int, _Episode] = {}
        self.fired: dict[str, int] = {"nothing": 0, "patience": 0, "loop": 0}

    def start_episode(self, slot: int, seed: int) -> None:
        self.episodes[slot] = _Episode()

    def _decide(self, state: _Episode, actions: list[str], observations: list[str]) -> bool:
        if state.reason:  # DEEPTHINK is acting: keep it until the streak is used up
            if state.deepthink_streak < self.max_deepthink:
                return True
            state.reason, state.deepthink_streak, state.without_reward = "", 0, 0
            return False
        if state.steps < self.warmup:
            return False
        for reason, fires in (("nothing", state.quick_did_nothing),
                              ("patience", state.without_reward >= self.patience),
                              ("loop", is_looping(actions, observations, self.window))):
            if fires:
                state.reason = reason
                self.fired[reason] += 1
                return True
        return False

    def route(self, view: StepView) -> np.ndarray:
        return np.array([self._decide(self.episodes[slot], history.actions, history.observations)
                         for slot, history in zip(view.slots, view.histories, strict=True)], dtype=bool)

    def observe(self, transitions: list[Transition]) -> None:
        for t in transitions:
            state = self.episodes[t.slot]
            state.steps += 1
            state.without_reward = 0 if t.reward > 0 else state.without_reward + 1
            state.deepthink_streak = state.deepthink_streak + 1 if t.deepthink else 0
            state.quick_did_nothing = (not t.deepthink) and t.next_history.current() == t.history.current()


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_cli(lambda: SwiftSage(args.warmup, args.patience, args.window, args.max_deepthink), args)
