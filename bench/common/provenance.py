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


def git_commit() -> str:
    """The checkout's commit, `-dirty` when numbers are made by code that is in no commit."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True, text=True,
                              cwd=REPO_ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
