"""Random switching: DEEPTHINK acts with probability p at every step, independently.

The control for any learned router: at the same DEEPTHINK fraction, a router that knows *where*
to call DEEPTHINK must beat one that calls it at random. Set p to another router's measured
fraction to compare the two at equal cost. Draws come from the router's generator, seeded with
the run seed, so a run is reproducible.

    python -m baselines.random_switch --task babyai/Mixed --p 0.3 --seeds 0 1 2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tyro

from bench.cli import EvalArgs, run_cli
from bench.running.router import Router, StepView


@dataclass
class Args(EvalArgs):
    """DEEPTHINK acts with probability p at each step, drawn from the router's own seeded generator."""

    p: float = 0.5
    """probability that DEEPTHINK acts at a step"""


class RandomSwitch(Router):
    name = "random_switch"

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"random_switch: p must be a probability in [0, 1], got {p}")
        self.p = p

    def route(self, view: StepView) -> np.ndarray:
        return self.rng.random(len(view.slots)) < self.p


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_cli(lambda: RandomSwitch(p=args.p), args)
