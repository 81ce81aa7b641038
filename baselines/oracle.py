"""Oracle: run both models at every step; DEEPTHINK acts exactly where its action differs from QUICK's.

Not deployable (it pays for DEEPTHINK at every step to find out where it was needed), but its
`deepthink_acted` fraction is the floor of DEEPTHINK decisions that reach DEEPTHINK-only's
behaviour: every step where QUICK would have done the same is given to QUICK. Its compute is
both models at every step and is reported as such; compare routers with its acted fraction.

    python -m baselines.oracle --task babyai/Mixed --seeds 0 1 2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tyro

from bench.cli import EvalArgs, run_cli
from bench.running.router import Router, StepView


@dataclass
class Args(EvalArgs):
    """Both models at every step, DEEPTHINK's action where they differ: a reference, not a deployable router."""


class Oracle(Router):
    name = "oracle"

    def route(self, view: StepView) -> np.ndarray:
        return view.actions("quick") != view.actions("deepthink")


if __name__ == "__main__":
    run_cli(Oracle, tyro.cli(Args))
