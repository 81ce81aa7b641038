"""Follow DEEPTHINK where they differ: run both models at every step; DEEPTHINK acts exactly where its action
differs from QUICK's.

A reference, not a router to deploy, and neither a floor nor a ceiling: it pays for DEEPTHINK at every step to
find out where the two disagree, and since it then plays DEEPTHINK's action wherever that matters, it reproduces
DEEPTHINK-only's trajectory by construction. Its `deepthink_acted` fraction is the share of DEEPTHINK-only's steps
at which QUICK would have acted otherwise: not the fewest calls that could succeed (that is the hindsight search,
python -m bench.hindsight), since many of those disagreements change nothing. Its compute is both models at every
step and is reported as such. (It was called `oracle` before issue 17.)

    python -m baselines.follow_deepthink_where_they_differ --task babyai/Mixed --seeds 0 1 2
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


class FollowDeepthinkWhereTheyDiffer(Router):
    name = "follow_deepthink_where_they_differ"

    def route(self, view: StepView) -> np.ndarray:
        return view.actions("quick") != view.actions("deepthink")


if __name__ == "__main__":
    run_cli(FollowDeepthinkWhereTheyDiffer, tyro.cli(Args))
