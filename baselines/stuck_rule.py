"""Stuck rule: DEEPTHINK acts where the episode shows it is stuck; QUICK everywhere else. No learning.

The control for LONDI's hand-made cues (algos/londi_sac.py gives its Switcher four cheap signs of being stuck):
if a Switcher only learned "call DEEPTHINK when stuck", this rule, with the same signs and a hand-set threshold,
does as well. The agent is stuck when

- the current observation was seen at least `seen` times before in this episode (a loop), or
- with `still`, the last action changed nothing (the observation is the one before it: walking into a wall).

Both are read from the episode's text alone, so the rule costs no model call of its own.

    python -m baselines.stuck_rule --task babyai/Mixed --seen 2 --seeds 0 1 2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tyro

from bench.cli import EvalArgs, run_cli
from bench.envs.contexts import EpisodeHistory
from bench.running.router import Router, StepView


@dataclass
class Args(EvalArgs):
    """DEEPTHINK where the agent is stuck (its view repeats, or its last action changed nothing); QUICK elsewhere."""

    seen: int = 2
    """stuck when the current observation was seen at least this many times before in the episode (0: never)"""
    still: bool = True
    """stuck when the last action left the observation unchanged"""


def stuck(history: EpisodeHistory, seen: int, still: bool) -> bool:
    now = history.current()
    if still and len(history.observations) > 1 and history.observations[-2] == now:
        return True
    return seen > 0 and sum(o == now for o in history.observations[:-1]) >= seen


class StuckRule(Router):
    name = "stuck_rule"

    def __init__(self, seen: int = 2, still: bool = True) -> None:
        if seen < 0:
            raise ValueError(f"stuck_rule: seen must be >= 0 earlier sightings, got {seen}")
        self.seen, self.still = seen, still

    def route(self, view: StepView) -> np.ndarray:
        return np.array([stuck(h, self.seen, self.still) for h in view.histories], dtype=bool)


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_cli(lambda: StuckRule(seen=args.seen, still=args.still), args)
