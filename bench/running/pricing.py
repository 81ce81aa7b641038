"""Price books: what a model call costs in seconds, as a pure function of its shape, not of the machine's load.

A run's wall seconds inside model calls (`compute_s`) move with whatever else the machine is doing. A price
book turns each recorded call into seconds from measurements made once, in isolation (bench.running.calibrate),
so the same episodes always cost the same:

    price(role, batch, prompt_tokens, out_tokens=0, flops=0.0) -> seconds

- a scoring model (BabyAI-Text: candidates scored): the measured seconds of a call, interpolated linearly in
  batch size and in prompt length between measured points;
- a generating model (ScienceWorld): base(batch, prompt) + out_tokens x per_token(batch, prompt), each fitted
  from calls forced to two output lengths, then interpolated the same way;
- the router (the Switcher's network): overhead + flops x seconds per FLOP, measured by timing a torch MLP; its
  training updates likewise (`router_update`), from timed forward + backward + optimiser steps.

Prompt lengths are clamped to the measured range (a longer prompt costs what the longest measured one does: the
buckets span the prompts the models really see). Batch sizes between measured ones are interpolated; beyond the
largest, the line through the last two measured batches is extended (a batched call's time grows about
linearly with its batch once the batch fills the machine); below the smallest (always 1), the smallest's price.

Two books: `Prices.from_calibration` (seconds on the calibrated machine: `priced_s`), and `projected_prices`
(GPU-seconds at the paper's Flan-T5 sizes on an H200, from the committed results/gpu_check_h200.json:
`projected_gpu_s`). `PriceBooks` carries both to the meter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common.provenance import REPO_ROOT

ROUTER = "router"
MODES = ("score", "generate", "free")
"""How a model's call is priced: scored candidates (shape: batch, prompt), generated text (plus per output
token), or free (the random policy computes nothing)."""

GPU_CHECK = REPO_ROOT / "results" / "gpu_check_h200.json"
FLAN_T5_SHAPES = {"flan-t5-small-shape": "quick", "flan-t5-large-shape": "deepthink"}
"""The committed H200 measurements' models and the role each stands for (the paper's QUICK and DEEPTHINK)."""


def along(xs: np.ndarray, table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation along the first axis of `table` ([len(xs), n]) at x ([n]), one column per query:
    clamped below the first point, extended along the last two points beyond the last."""
    if len(xs) == 1:
        return table[0].copy()
    i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2)
    w = np.maximum((x - xs[i]) / (xs[i + 1] - xs[i]), 0.0)
    columns = np.arange(len(x))
    return table[i, columns] * (1 - w) + table[i + 1, columns] * w


@dataclass(frozen=True, eq=False)
class RoleTable:
    """One model's prices on its measured grid: `base[b, p]` seconds per call at batch `batches[b]` and prompt
    length `prompts[p]`, plus `per_token[b, p]` seconds per generated token where the model generates."""

    mode: str
    batches: np.ndarray
    prompts: np.ndarray
    base: np.ndarray
    per_token: np.ndarray | None = None

    def price(self, batch: float, prompt_tokens: np.ndarray, out_tokens: np.ndarray) -> np.ndarray:
        if self.mode == "free":
            return np.zeros(len(prompt_tokens))
        prompts = np.asarray(prompt_tokens, dtype=np.float64)
        batches = np.full(len(prompts), float(batch))

        def at(grid: np.ndarray) -> np.ndarray:
            rows = np.stack([np.interp(prompts, self.prompts, row) for row in grid])  # clamped in prompt length
            return along(self.batches, rows, batches)

        seconds = at(self.base)
        if self.per_token is not None:
            seconds = seconds + np.asarray(out_tokens, dtype=np.float64) * at(self.per_token)
        return np.maximum(seconds, 0.0)


@dataclass(frozen=True)
class LinearCost:
    """seconds = overhead_s + flops x s_per_flop: the router's calls (or its training updates, per optimiser step)."""

    overhead_s: float
    s_per_flop: float

    @classmethod
    def fit(cls, flops: Sequence[float], seconds: Sequence[float]) -> LinearCost:
        """Least squares over measured (FLOPs, seconds) points; neither term below 0 (noise on a tiny overhead)."""
        x, y = np.asarray(flops, dtype=np.float64), np.asarray(seconds, dtype=np.float64)
        if len(x) < 2 or np.ptp(x) == 0:
            raise ValueError(f"a linear cost needs points at two or more FLOP counts, got {len(x)}")
        slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
        if slope < 0:
            slope, intercept = 0.0, float(np.mean(y))
        return cls(max(intercept, 0.0), slope)

    def seconds(self, flops: np.ndarray, steps: float = 1.0) -> np.ndarray:
        return steps * self.overhead_s + np.asarray(flops, dtype=np.float64) * self.s_per_flop

    def as_dict(self) -> dict[str, float]:
        return {"overhead_s": self.overhead_s, "s_per_flop": self.s_per_flop,
                "flops_per_s": 1 / self.s_per_flop if self.s_per_flop > 0 else float("inf")}


ZERO_COST = LinearCost(0.0, 0.0)


def generation_fit(outs: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """(base, per_token) of seconds = base + outs x per_token through calls forced to several output lengths (two:
    the line through them). A negative slope (noise at near-equal times) is taken as 0, base their mean."""
    if len(np.unique(outs)) < 2:
        return float(np.mean(seconds)), 0.0
    slope, intercept = np.polyfit(outs.astype(np.float64), seconds, 1)
    if slope < 0:
        return float(np.mean(seconds)), 0.0
    return float(intercept), float(slope)


def role_table(mode: str, points: Sequence[dict], value: str = "median_s") -> RoleTable:
    """A price table from measured points ({"batch", "prompt_tokens"[, "out_tokens"], value}), a full grid."""
    if mode not in MODES:
        raise ValueError(f"unknown pricing mode {mode!r}; known: {', '.join(MODES)}")
    if mode == "free":
        return RoleTable("free", np.array([1.0]), np.array([0.0]), np.zeros((1, 1)))
    batches = np.array(sorted({int(p["batch"]) for p in points}), dtype=np.float64)
    prompts = np.array(sorted({int(p["prompt_tokens"]) for p in points}), dtype=np.float64)
    base = np.full((len(batches), len(prompts)), np.nan)
    per_token = np.zeros_like(base) if mode == "generate" else None
    cells: dict[tuple[int, int], list[dict]] = {}
    for p in points:
        cells.setdefault((int(p["batch"]), int(p["prompt_tokens"])), []).append(p)
    for (b, t), measured in cells.items():
        i, j = int(np.searchsorted(batches, b)), int(np.searchsorted(prompts, t))
        seconds = np.array([float(p[value]) for p in measured])
        if mode == "generate":
            base[i, j], per_token[i, j] = generation_fit(np.array([p.get("out_tokens", 0) for p in measured]), seconds)
        else:
            base[i, j] = float(np.median(seconds))
    if np.isnan(base).any():
        missing = [(int(batches[i]), int(prompts[j])) for i, j in zip(*np.nonzero(np.isnan(base)), strict=True)]
        raise ValueError(f"the calibration grid has no measurement at (batch, prompt tokens) {missing}: "
                         f"calibrate again")
    return RoleTable(mode, batches, prompts, base, per_token)


@dataclass(frozen=True)
class Prices:
    """One price book: seconds per call for each role ("quick", "deepthink", "router") of one suite's pair.

    `price` is a pure function of the call's shape; `router_update` prices the router's training updates."""

    label: str
    """what the seconds are: e.g. "priced s (calibrated on <cpu>)" or "projected H200 GPU-s at Flan-T5 sizes"."""
    roles: dict[str, RoleTable]
    router: LinearCost | None = None
    update: LinearCost | None = None

    def known_roles(self) -> list[str]:
        return list(self.roles) + ([ROUTER] if self.router is not None else [])

    def price_each(self, role: str, batch: float, prompt_tokens: Sequence[float], out_tokens: Sequence[float],
                   flops: Sequence[float]) -> np.ndarray:
        """The price of several calls of the same batch size, one per entry (vectorised `price`)."""
        if batch < 1:
            raise ValueError(f"a call serves at least one prompt, got batch {batch}")
        if role == ROUTER and self.router is not None:
            return self.router.seconds(np.asarray(flops, dtype=np.float64))
        if role not in self.roles:
            raise ValueError(f"{self.label} has no price for role {role!r}; priced roles: "
                             f"{', '.join(self.known_roles()) or 'none'}")
        return self.roles[role].price(batch, np.asarray(prompt_tokens), np.asarray(out_tokens))

    def price(self, role: str, batch: int, prompt_tokens: int, out_tokens: int = 0, flops: float = 0.0) -> float:
        """Seconds of one call of `role` at `batch` prompts padded to `prompt_tokens`, generating `out_tokens` (the
        longest output; a scoring model ignores it); the router's from the call's FLOPs (all prompts together)."""
        return float(self.price_each(role, batch, [prompt_tokens], [out_tokens], [flops])[0])

    def router_update(self, flops: float, steps: float) -> float:
        """Seconds of router training that did `flops` FLOPs (forward and backward) in `steps` optimiser steps."""
        if self.update is None:
            raise ValueError(f"{self.label} has no price for router training updates")
        return float(self.update.seconds(np.array([flops]), steps)[0])

    @classmethod
    def from_calibration(cls, part: dict, label: str | None = None) -> Prices:
        """The book of one suite of a calibration file (bench.running.calibrate: `suites[<suite>]`)."""
        roles = {role: role_table(entry["mode"], entry.get("points", ())) for role, entry in part["roles"].items()}
        router = part.get("router") or {}

        def fitted(kind: str) -> LinearCost | None:
            points = (router.get(kind) or {}).get("points")
            return LinearCost.fit([p["flops"] for p in points], [p["median_s"] for p in points]) if points else None

        machine = part.get("machine", {})
        return cls(label or f"priced s ({part.get('suite', '?')}, calibrated on {machine.get('cpu', '?')}, "
                            f"{machine.get('device', '?')})", roles, fitted("inference"), fitted("update"))


def projected_prices(suite: str, path: Path = GPU_CHECK) -> Prices:
    """Projected GPU-seconds per call at the paper's model sizes: the committed H200 measurements of models shaped
    like Flan-T5-small (QUICK) and Flan-T5-large (DEEPTHINK) (scripts/gpu_check.py --flan-t5-shapes), NVML
    kernel-active GPU-seconds per call, interpolated in batch size like the calibrated book.

    Each suite was measured at one prompt length (BabyAI: a 59-token prompt scoring six actions; ScienceWorld: a
    186-token prompt generating 8 tokens), so this book prices a call by its batch size alone. The router projects
    to 0: the Switcher is the same tiny MLP whatever the language models' size (about 10^5 FLOPs a decision
    against 5.6 x 10^9 for one Flan-T5-small decision), it was not measured on the H200, and NVML's 1/6 s
    utilisation updates could not resolve it."""
    if not path.exists():
        raise FileNotFoundError(f"no GPU measurements at {path}: they are committed in results/; run "
                                f"scripts/gpu_check.py OUT --flan-t5-shapes on a GPU to make them")
    rows = json.loads(path.read_text()).get("flan_t5_shapes") or []
    roles: dict[str, RoleTable] = {}
    for model, role in FLAN_T5_SHAPES.items():
        measured = [r for r in rows if r.get("model") == model and r.get("suite") == suite and r.get("gpu_s")]
        if not measured:
            raise ValueError(f"{path} has no {model} measurement for suite {suite!r}")
        points = [{"batch": r["batch"], "prompt_tokens": r["prompt_tokens"], "gpu_s": r["gpu_s"] / r["calls"]}
                  for r in measured]
        roles[role] = role_table("score", points, value="gpu_s")
    return Prices(f"projected H200 GPU-s at Flan-T5 sizes ({suite})", roles, ZERO_COST, ZERO_COST)


@dataclass(frozen=True)
class PriceBooks:
    """The books a meter prices calls with: `priced` (calibrated seconds on the machine that runs the sweep) and
    `projected` (GPU-seconds at the paper's sizes); either may be absent, and its metrics are then NaN."""

    priced: Prices | None = None
    projected: Prices | None = None
