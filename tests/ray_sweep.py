"""The smoke sweep the Ray tests run, serially and on Ray, and what must not move with where its cells ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.reporting.executors import place_invariant

REPO = Path(__file__).resolve().parent.parent
SWEEP = ["--profile", "smoke", "--tasks", "babyai/Mixed", "--routers", "quick_only", "deepthink_only",
         "--learned", "londi_sac[c=0.01]", "--sampled", "1", "--ablation", "quick_only", "--no-match-cascade",
         "--controls", "--hindsight", "False", "--train-episodes", "6", "--episodes", "4", "--valid-episodes", "2",
         "--no-progress"]
"""A smoke sweep with every kind of cell: fixed routers, a learned setting (trained, validated, tested), its
matched random switching, sampled models and the random-QUICK ablation."""


def reproduce(*args: str, results: Path, uri: str, state: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LONDI_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "bench.reproduce", *SWEEP, *args, "--results-dir", str(results),
                           "--tracking-uri", uri, "--state-dir", str(state)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)


def numbers(results: Path) -> pd.DataFrame:
    table = pd.read_csv(results / "smoke" / "babyai.csv")
    return place_invariant(table)
