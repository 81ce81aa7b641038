"""Compute metering: every model call's tokens, analytic FLOPs, wall seconds and priced seconds, charged per episode.

Calls are batched over environments, so one call's seconds are split among the episodes it
served in proportion to their FLOPs; tokens and FLOPs are exact per prompt. On CUDA the clock
is read after a device synchronisation, so queued kernels are not charged to the next call.
GPU-seconds and energy (NVML) are whole-run readings: see bench.running.gpu.

With price books (bench.running.pricing) each call is also priced from its shape, which does not depend on
what else the machine was doing: at its real batch (its size, its longest prompt since the batch is padded, its
longest output since the batch decodes until the last prompt is done) -> `priced_s`; every prompt as if it were
a batch-1 call of its own -> `priced_b1_s`; and the same two from the projected book (GPU-seconds at the paper's
model sizes) -> `projected_gpu_s`, `projected_gpu_b1_s`. A call that computed nothing (no FLOPs: the random
policy) is priced 0. Without a book, a call's priced seconds are NaN, never 0, so an unpriced run cannot pass
for a free one; a component that made no call costs 0 either way. The wall seconds (`compute_s`) stay beside
them as the secondary, labelled figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from bench.models.cost import CallCost
from bench.running.pricing import PriceBooks, Prices

COMPONENTS = ("quick", "deepthink", "router")
PRICED = ("priced_s", "priced_b1_s", "projected_gpu_s", "projected_gpu_b1_s")
"""The priced figures of every component (seconds; the projected ones GPU-seconds at the paper's sizes)."""
T = TypeVar("T")


def synchronize(devices: tuple[torch.device, ...]) -> None:
    """Wait for the CUDA devices among `devices` (nothing to wait for on a CPU): before a clock is read."""
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
    priced_s: float = 0.0
    priced_b1_s: float = 0.0
    projected_gpu_s: float = 0.0
    projected_gpu_b1_s: float = 0.0

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.flops += other.flops
        self.compute_s += other.compute_s
        self.priced_s += other.priced_s
        self.priced_b1_s += other.priced_b1_s
        self.projected_gpu_s += other.projected_gpu_s
        self.projected_gpu_b1_s += other.projected_gpu_b1_s


def price_call(book: Prices | None, component: str, cost: CallCost,
               shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt of one call: its share of the call's price at the real batch, and its price as a batch-1 call of
    its own. NaN without a book; 0 for a call that computed nothing."""
    n = len(shares)
    if book is None:
        return np.full(n, np.nan), np.full(n, np.nan)
    flops = np.asarray(cost.flops, dtype=np.float64)
    if flops.sum() <= 0:
        return np.zeros(n), np.zeros(n)
    tokens_in, tokens_out = np.asarray(cost.tokens_in), np.asarray(cost.tokens_out)
    batch = book.price(component, n, int(tokens_in.max()), int(tokens_out.max()), float(flops.sum()))
    alone = book.price_each(component, 1, tokens_in, tokens_out, flops)
    return batch * shares, alone


@dataclass
class Meter:
    """Per-slot (environment) and whole-run accounting of model calls."""

    n_slots: int
    devices: tuple[torch.device, ...] = ()
    """Devices the models run on: CUDA ones are synchronised around every timed call."""
    prices: PriceBooks | None = None
    """The books each call is priced with; None: priced figures are NaN."""
    slots: list[dict[str, Usage]] = field(init=False)
    run: dict[str, Usage] = field(init=False)

    def __post_init__(self) -> None:
        self.slots = [{c: Usage() for c in COMPONENTS} for _ in range(self.n_slots)]
        self.run = {c: Usage() for c in COMPONENTS}

    def call(self, component: str, slots: Sequence[int], fn: Callable[[], tuple[T, CallCost]]) -> T:
        """Run one batched model call serving `slots`, time it and charge each slot its share."""
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
        synchronize(self.devices)
        started = time.perf_counter()
        result, cost = fn()
        synchronize(self.devices)
        seconds = time.perf_counter() - started
        self.charge(component, slots, cost, seconds)
        return result

    def charge(self, component: str, slots: Sequence[int], cost: CallCost, seconds: float) -> None:
        flops = np.asarray(cost.flops, dtype=np.float64)
        if len(flops) != len(slots):
            raise ValueError(f"{component} call cost has {len(flops)} entries for {len(slots)} slots")
        total = flops.sum()
        shares = flops / total if total > 0 else np.full(len(slots), 1.0 / max(1, len(slots)))
        books = self.prices or PriceBooks()
        priced, priced_b1 = price_call(books.priced, component, cost, shares)
        projected, projected_b1 = price_call(books.projected, component, cost, shares)
        for i, slot in enumerate(slots):
            usage = Usage(1, int(cost.tokens_in[i]), int(cost.tokens_out[i]), float(flops[i]),
                          float(seconds * shares[i]), float(priced[i]), float(priced_b1[i]), float(projected[i]),
                          float(projected_b1[i]))
            self.slots[slot][component].add(usage)
            self.run[component].add(usage)

    def take(self, slot: int) -> dict[str, Usage]:
        """The usage of `slot` since its last take (its finished episode), and reset it."""
        usage, self.slots[slot] = self.slots[slot], {c: Usage() for c in COMPONENTS}
        return usage


def usage_metrics(usage: dict[str, Usage]) -> dict[str, float]:
    """Flatten usage into metric names as logged to MLflow (flops, flops_quick, compute_s, priced_s_quick, ...): each
    figure per component and in total (a total is NaN where a component's is)."""
    metrics: dict[str, float] = {}
    for component, u in usage.items():
        metrics[f"flops_{component}"] = u.flops
        metrics[f"compute_s_{component}"] = u.compute_s
        for name in PRICED:
            metrics[f"{name}_{component}"] = getattr(u, name)
        metrics[f"tokens_in_{component}"] = u.tokens_in
        metrics[f"tokens_out_{component}"] = u.tokens_out
        metrics[f"{component}_calls"] = u.calls
    metrics["flops"] = sum(u.flops for u in usage.values())
    metrics["compute_s"] = sum(u.compute_s for u in usage.values())
    for name in PRICED:
        metrics[name] = sum(getattr(u, name) for u in usage.values())
    return metrics
