"""What one model call cost, per prompt: the unit every model returns and the meter charges.

Kept apart from the models themselves so that metering (and a router that prices its own work) needs
neither torch's models nor transformers to name it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CallCost:
    """Cost of one batched call, one entry per prompt: tokens read, tokens written, analytic forward FLOPs."""

    tokens_in: np.ndarray
    tokens_out: np.ndarray
    flops: np.ndarray
