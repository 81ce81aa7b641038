"""One random stream per owner: objects seeded with the same run seed still draw independent numbers.

A router, the random policy and the Switcher's learner are all seeded with the run seed; seeding each with the
bare seed would give them the very same sequence (a random QUICK ranking its actions with the numbers a random
router used to pick QUICK). Each owner's stream is the run seed and a fixed key of its own name."""

from __future__ import annotations

import zlib

import numpy as np


def generator(seed: int, owner: str) -> np.random.Generator:
    """`owner`'s own generator for run seed `seed`: the same every time, independent of every other owner's."""
    return np.random.default_rng([seed, zlib.crc32(owner.encode())])
