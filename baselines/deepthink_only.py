"""DEEPTHINK-only: the large model acts at every step.

The reference of every saving: `saving` = 1 - cost(router) / cost(DEEPTHINK-only) and
`reward_retained` = reward(router) / reward(DEEPTHINK-only), on the same tasks and episodes.

    python -m baselines.deepthink_only --task babyai/Mixed --seeds 0 1 2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tyro

from bench.cli import EvalArgs, run_cli
from bench.running.router import Router, StepView


@dataclass
class Args(EvalArgs):
    """DEEPTHINK acts at every step: the reference every saving and retained reward is measured against."""


class DeepthinkOnly(Router):
    name = "deepthink_only"

    def route(self, view: StepView) -> np.ndarray:
        return np.ones(len(view.slots), dtype=bool)


if __name__ == "__main__":
    run_cli(DeepthinkOnly, tyro.cli(Args))
