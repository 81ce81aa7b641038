"""REPRODUCE.md is generated from results/: it matches what the committed results give, and its numbers move
when the results do (none is typed by hand)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.reporting.reproduce_doc import OUTPUT, ROOT, Results, render


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
    best["saving"] = min(0.123, best["saving_flops"]["mean"])  # what bench.reporting.report.saving gives for it
    path.write_text(json.dumps(data))
    after = render(Results(results=results))
    claim = next(line for line in after.splitlines() if line.startswith("| The Switcher calls DEEPTHINK"))
    assert "12.3 [10.0, 15.0]% less compute time" in claim
    assert claim.endswith("| no |")  # 12.3% is short of the paper's 30%


def test_the_scienceworld_verdict_counts_the_tasks_where_londi_held(tmp_path: Path) -> None:
    """yes on every LONDI task, partly on some, not testable where DEEPTHINK-only solves none of them."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    path = results / "cpu" / "scienceworld.json"
    original = json.loads(path.read_text())

    def verdict(edit) -> str:
        data = json.loads(json.dumps(original))
        edit(data)
        path.write_text(json.dumps(data))
        text = render(Results(results=results))
        return next(line for line in text.splitlines() if line.startswith("| The same on ScienceWorld")).split("|")[-2]

    runs = [v for v in original["verdicts"] if v["londi_settings_run"]]
    assert len(runs) >= 2

    def all_held(data: dict) -> None:
        for v in data["verdicts"]:
            if v["londi_settings_run"]:
                v["best_londi"] = {**(v["best_londi"] or runs[0]["best_londi"] or {}), "saving": 0.5}

    def none_solved(data: dict) -> None:
        for v in data["verdicts"]:
            v["best_londi"] = None
        for cell in data["cells"]:
            if cell["router"] == "deepthink_only":
                cell["reward"] = 0.0

    assert verdict(all_held).strip().startswith("**yes**")
    assert verdict(none_solved).strip() == "not testable yet (the pair)"
