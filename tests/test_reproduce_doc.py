"""REPRODUCE.md is generated from results/: it matches what the committed results give, and its numbers move
when the results do (none is typed by hand)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.reproduce_doc import OUTPUT, ROOT, Results, render


def test_reproduce_md_is_what_the_committed_results_give() -> None:
    assert OUTPUT.read_text() == render(), "REPRODUCE.md is stale: run make docs and commit it"


def test_the_claims_follow_the_results(tmp_path: Path) -> None:
    """Halve the best LONDI setting's saving in a copy of results/: the claim's number and verdict change."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    path = results / "cpu" / "babyai.json"
    data = json.loads(path.read_text())
    mixed = next(v for v in data["verdicts"] if v["task"] == "babyai/Mixed")
    best = mixed["best_londi"]
    before = render(Results(results=results))
    assert f"{100 * best['saving_compute_s']['mean']:.1f} [" in before
    best["saving_compute_s"] = {"mean": 0.123, "low": 0.1, "high": 0.15, "n": 120}
    path.write_text(json.dumps(data))
    after = render(Results(results=results))
    claim = next(line for line in after.splitlines() if line.startswith("| The Switcher calls DEEPTHINK"))
    assert "12.3 [10.0, 15.0]% less compute time" in claim
    assert claim.endswith("| no |")  # 12.3% is short of the paper's 30%
