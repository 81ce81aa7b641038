"""bench.rename_effect: the renaming augmentation measured alone, and the ScienceWorld pair's goals."""

from __future__ import annotations

import json

import pytest

from bench.reporting.rename import goals, markdown
from tests.test_cli import in_process, run_module

POWER, LIFESPAN = "scienceworld/power-component", "scienceworld/lifespan-longest-lived-then-shortest-lived"
TASKS = [POWER, LIFESPAN, "scienceworld/find-living-thing", "scienceworld/use-thermometer"]


def _row(deepthink: float, quick: float, n: int) -> dict:
    def metrics(p: float) -> dict:
        est = {"mean": p, "low": max(0.0, p - 0.2), "high": min(1.0, p + 0.2), "n": n, "seeds": 1}
        return {"episodes": n, "solved": round(p * n), "success": est, "reward": est}

    lead = {"mean": deepthink - quick, "low": deepthink - quick - 0.2, "high": deepthink - quick + 0.2, "n": n,
            "seeds": 1}
    return {"with/deepthink_only": metrics(deepthink), "with/quick_only": metrics(quick),
            "without/deepthink_only": metrics(quick), "without/quick_only": metrics(quick),
            "quick_only/difference": lead, "deepthink_only/difference": lead, "with/lead": lead, "without/lead": lead}


def test_goals_met_and_missed_with_margins() -> None:
    met = goals({POWER: _row(0.6, 0.0, 5), LIFESPAN: _row(0.5, 0.1, 32), TASKS[2]: _row(0.5, 0.2, 50),
                 TASKS[3]: _row(0.1, 0.1, 50)}, TASKS)
    assert [g["verdict"] for g in met] == ["met", "met", "met"]
    assert [g["margin"] for g in met][0] == 0 and met[1]["margin"] == pytest.approx(0.1) and met[2]["margin"] == 0
    missed = goals({POWER: _row(0.4, 0.0, 5), LIFESPAN: _row(0.375, 0.0, 32), TASKS[2]: _row(0.3, 0.2, 50),
                    TASKS[3]: _row(0.1, 0.1, 50)}, TASKS)
    assert [g["verdict"] for g in missed] == ["missed", "missed", "missed"]
    assert missed[0]["margin"] == -1 and missed[1]["margin"] == pytest.approx(-0.025) and missed[2]["value"] == 2
    text = markdown({POWER: _row(0.4, 0.0, 5)}, goals({POWER: _row(0.4, 0.0, 5)}, [POWER]), {"profile": "cpu"})
    assert "| **missed** | 2 | -1 |" in text and "not measured" in text


def test_a_profile_without_renaming_is_refused(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    code, _, err = in_process("bench.rename_effect", "--profile", "paper", "--results-dir", str(tmp_path),
                              capsys=capsys)
    assert code == 2 and err.startswith("error: ") and "sw_rename" in err and not list(tmp_path.iterdir())
    code, _, err = in_process("bench.rename_effect", "--profile", "smoke", "--tasks", "babyai/Mixed", capsys=capsys)
    assert code == 2 and "only ScienceWorld tasks" in err


def test_smoke_pairs_with_and_without_renaming(smoke_cache, sw_smoke_models, tracking_uri, tmp_path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The real command on the smoke profile: both pairs (the one without renaming trained here, in seconds), one
    test variation of power-component, every model's runs in MLflow, the report and its goals."""
    monkeypatch.setenv("LONDI_CACHE", str(smoke_cache))
    done = run_module("bench.rename_effect", "--profile", "smoke", "--tasks",
                      "scienceworld/power-component[max_steps=6]",
                      "--episodes", "1", "--results-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "smoke" / "scienceworld_rename.json").read_text())
    row = report["rows"]["scienceworld/power-component[max_steps=6]"]
    assert {row[f"{v}/{r}"]["episodes"] for v in ("with", "without") for r in ("quick_only", "deepthink_only")} == {1}
    assert report["context"]["with renaming"] != report["context"]["without renaming"]  # two different pairs
    assert [g["verdict"] for g in report["goals"]][:2] == ["not measured", "not measured"]  # a variant of the task
    from tests.test_cli import logged_runs

    evals = [r for r in logged_runs(tracking_uri) if r.data.tags.get("londi.kind") == "eval"]
    assert sorted(r.data.params["exp_name"] for r in evals) == sorted(
        f"{r}@{v}" for v in ("with", "without") for r in ("quick_only", "deepthink_only"))
