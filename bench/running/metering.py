"""Compute metering: every model call's tokens, analytic FLOPs and wall seconds, charged per episode.

Calls are batched over environments, so one call's seconds are split among the episodes it
served in proportion to their FLOPs; tokens and FLOPs are exact per prompt. On CUDA the clock
is read after a device synchronisation, so queued kernels are not charged to the next call.
GPU-seconds and energy (NVML) are whole-run readings: see bench.running.gpu.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from bench.models.cost import CallCost

COMPONENTS = ("quick", "deepthink", "router")
T = TypeVar("T")


def _synchronize(devices: tuple[torch.device, ...]) -> None:
    for device in devices:
        if device.type == "cuda":
            torch.cuda.synchronize(device)


@dataclass
class Usage:
    """Accumulated cost of one component for one episode (or one whole run)."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    flops: float = 0.0
    compute_s: float = 0.0

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.flops += other.flops
        self.compute_s += other.compute_s


@dataclass
class Meter:
    """Per-slot (environment) and whole-run accounting of model calls."""

    n_slots: int
    devices: tuple[torch.device, ...] = ()
    """Devices the models run on: CUDA ones are synchronised around every timed call."""
    slots: list[dict[str, Usage]] = field(init=False)
    run: dict[str, Usage] = field(init=False)

    def __post_init__(self) -> None:
        self.slots = [{c: Usage() for c in COMPONENTS} for _ in range(self.n_slots)]
        self.run = {c: Usage() for c in COMPONENTS}

    def call(self, component: str, slots: Sequence[int], fn: Callable[[], tuple[T, CallCost]]) -> T:
        """Run one batched model call serving `slots`, time it and charge each slot its share."""
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
        _synchronize(self.devices)
        started = time.perf_counter()
        result, cost = fn()
        _synchronize(self.devices)
        seconds = time.perf_counter() - started
        self.charge(component, slots, cost, seconds)
        return result

    def charge(self, component: str, slots: Sequence[int], cost: CallCost, seconds: float) -> None:
        flops = np.asarray(cost.flops, dtype=np.float64)
        if len(flops) != len(slots):
            raise ValueError(f"{component} call cost has {len(flops)} entries for {len(slots)} slots")
        total = flops.sum()
        shares = flops / total if total > 0 else np.full(len(slots), 1.0 / max(1, len(slots)))
        for i, slot in enumerate(slots):
            usage = Usage(1, int(cost.tokens_in[i]), int(cost.tokens_out[i]), float(flops[i]),
                          float(seconds * shares[i]))
            self.slots[slot][component].add(usage)
            self.run[component].add(usage)

    def take(self, slot: int) -> dict[str, Usage]:
        """The usage of `slot` since its last take (its finished episode), and reset it."""
        usage, self.slots[slot] = self.slots[slot], {c: Usage() for c in COMPONENTS}
        return usage


def usage_metrics(usage: dict[str, Usage]) -> dict[str, float]:
    """Flatten usage into metric names as logged to MLflow (flops, flops_quick, compute_s, ...)."""
    metrics: dict[str, float] = {}
    for component, u in usage.items():
        metrics[f"flops_{component}"] = u.flops
        metrics[f"compute_s_{component}"] = u.compute_s
        metrics[f"tokens_in_{component}"] = u.tokens_in
        metrics[f"tokens_out_{component}"] = u.tokens_out
        metrics[f"{component}_calls"] = u.calls
    metrics["flops"] = sum(u.flops for u in usage.values())
    metrics["compute_s"] = sum(u.compute_s for u in usage.values())
    return metrics
