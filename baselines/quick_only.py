"""QUICK-only: the small model acts at every step.

The cheap end of every comparison: no DEEPTHINK call, so its reward is the floor a router must
beat and its compute the least any router can spend (a router's own cost comes on top).

    python -m baselines.quick_only --task babyai/Mixed --seeds 0 1 2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tyro

from bench.cli import EvalArgs, run_cli
from bench.running.router import Router, StepView


@dataclass
class Args(EvalArgs):
    """QUICK acts at every step: the cheap end of every comparison (with --quick random, the paper's ablation)."""


class QuickOnly(Router):
    name = "quick_only"

    def route(self, view: StepView) -> np.ndarray:
        return np.zeros(len(view.slots), dtype=bool)


if __name__ == "__main__":
    run_cli(QuickOnly, tyro.cli(Args))
