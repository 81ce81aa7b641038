"""Where the harness keeps what it makes, and which code made it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: checkpoints/, results/ and REPRODUCE.md live here."""


def cache_dir() -> Path:
    """The harness's cache: $LONDI_CACHE, else .cache/londi in the working directory (models, demonstrations,
    stopped sweeps)."""
    return Path(os.environ.get("LONDI_CACHE", Path.cwd() / ".cache" / "londi"))


def default_results_dir(profile: str) -> Path:
    """results/ for the cpu and paper profiles; for smoke, results/ in the cache, outside the tracked tree."""
    return cache_dir() / "results" if profile == "smoke" else Path("results")


OUTPUTS = ("results", "REPRODUCE.md")
"""What the harness writes into the checkout: changes there do not make the code that wrote them `-dirty`."""


def git_commit() -> str:
    """The checkout's commit, `-dirty` when numbers are made by code that is in no commit. The harness's own outputs
    (OUTPUTS) do not count: a sweep rewrites results/ as it reports, and the suites it reports after the first were
    made by the same clean code."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True,
                                cwd=REPO_ROOT, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                  *(f":(exclude){path}" for path in OUTPUTS)],
                                 capture_output=True, text=True, cwd=REPO_ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if changed else "")
