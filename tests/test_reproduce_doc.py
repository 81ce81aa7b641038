"""REPRODUCE.md is generated from results/: it matches what the committed results give, and its numbers move
when the results do (none is typed by hand)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from bench.reporting.report import write_results
from bench.reporting.reproduce_doc import OUTPUT, ROOT, Results, render


def test_reproduce_md_is_what_the_committed_results_give() -> None:
    assert OUTPUT.read_text() == render(), "REPRODUCE.md is stale: run make docs and commit it"


def _episodes(londi_rewards: list[float], n: int = 200) -> pd.DataFrame:
    """Mixed episodes of DEEPTHINK-only, QUICK-only, random switching and one LONDI setting on both splits, LONDI's
    test rewards as given (cycled), its validation rewards DEEPTHINK-only's."""
    records = []
    plan = {"deepthink_only": ([0.8], 10), "quick_only": ([0.2], 0), "random_switch[p=0.3]": ([0.5], 3),
            "londi_sac[c=0.01]": (londi_rewards, 3)}
    for split in ("valid", "test"):
        for router, (rewards, calls) in plan.items():
            if split == "valid" and router.startswith("londi"):
                rewards = [0.8]
            for i in range(n):
                reward = rewards[i % len(rewards)]
                records.append({"split": split, "task": "babyai/Mixed", "router": router,
                                "router_class": router.split("[")[0], "seed": i % 5, "episode": i // 5,
                                "env_seed": i, "reward": reward, "success": float(reward > 0), "steps": 10,
                                "deepthink_calls": calls, "deepthink_acted": calls, "quick_calls": 10 - calls,
                                "deepthink_fraction": calls / 10, "flops": 1.0 + calls, "flops_quick": 10.0 - calls,
                                "flops_deepthink": 10.0 * calls, "priced_s": 0.01 * (10 - calls) + 0.05 * calls,
                                "priced_s_quick": 0.01 * (10 - calls), "priced_s_deepthink": 0.05 * calls,
                                "compute_s": 0.1, "compute_s_quick": 0.05, "compute_s_deepthink": 0.05})
    return pd.DataFrame(records)


def _render_with(tmp_path: Path, londi_rewards: list[float]) -> str:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results, dirs_exist_ok=True)
    context = json.loads((ROOT / "results" / "cpu" / "babyai.json").read_text())["context"]
    write_results(_episodes(londi_rewards), None, results / "cpu", "babyai", context)
    return render(Results(results=results))


def test_the_claims_are_computed_and_say_no_when_londi_fails(tmp_path: Path) -> None:
    """The same template over results where LONDI keeps DEEPTHINK-only's reward, then over results where it loses a
    fifth of it: the claims table and the LONDI section follow, yes then no, with the numbers behind them."""
    holds = _render_with(tmp_path / "a", [0.8])
    claim = next(line for line in holds.splitlines()
                 if line.startswith("| LONDI keeps DEEPTHINK-only's reward on babyai/Mixed"))
    assert claim.endswith("| **yes** |") and "`londi_sac[c=0.01]` (chosen on validation)" in claim
    assert "56.0% [56.0, 56.0] less priced seconds (+26.0 points against 30%)" in claim
    fails = _render_with(tmp_path / "b", [0.8, 0.8, 0.8, 0.8, 0.0])
    claim = next(line for line in fails.splitlines()
                 if line.startswith("| LONDI keeps DEEPTHINK-only's reward on babyai/Mixed"))
    # One run seed of five loses every episode: the seed-level lower bound falls far below 0.95.
    assert claim.endswith("| no |") and "lower bound 0.400 (-55.0 points against 0.95)" in claim
    assert "- **no**: LONDI keeps DEEPTHINK-only's reward on babyai/Mixed" in fails
    assert "- **yes**: LONDI keeps" not in fails


def test_plug_and_play_claim_says_yes_partly_and_no(tmp_path: Path) -> None:
    """The plug-and-play row is computed from each pair's side study: LONDI non-inferior with a priced saving on every
    pair is yes, on some partly, on none no; a pair where it fails shows no saving at the non-inferiority bound."""
    from bench.reporting import plug_and_play

    context = {**json.loads((ROOT / "results" / "cpu" / "babyai.json").read_text())["context"],
               "QUICK": "quick model", "DEEPTHINK": "deepthink model"}
    fails = [0.8, 0.8, 0.8, 0.8, 0.0]

    def studies(londi: dict[str, list[float]]) -> list[plug_and_play.Row]:
        out = tmp_path / "-".join("".join(map(str, v)) for v in londi.values()) / "results"
        for name, rewards in londi.items():
            write_results(_episodes(rewards, n=100), None, out / "cpu", f"plug_and_play_{name}", context)
        return plug_and_play.rows(plug_and_play.load(out, "cpu"))

    measured, verdict = plug_and_play.claim(studies({"t5": [0.8], "causal": [0.8], "mixed": [0.8]}))
    assert verdict == "**yes**"
    assert "causal: `londi_sac[c=0.01]` keeps 1.000 [0.954, 1.046] of the reward, saves 56.0" in measured
    found = studies({"t5": [0.8], "causal": fails, "mixed": [0.8]})
    measured, verdict = plug_and_play.claim(found)
    assert verdict == "partly" and "causal: `londi_sac[c=0.01]` (chosen) keeps" in measured
    table = plug_and_play.table(found)
    causal = next(line for line in table.splitlines() if line.startswith("| causal"))
    assert causal.endswith("| none: not non-inferior |")
    t5 = next(line for line in table.splitlines() if line.startswith("| t5"))
    assert t5.endswith("| 56.0 [56.0, 56.0]% |")
    assert plug_and_play.claim(studies({"t5": fails, "causal": fails}))[1] == "no"
    assert plug_and_play.claim(studies({"t5": [0.8]}))[1] == "not measured"


def test_a_sweep_whose_results_cannot_render_reproduce_md_warns_and_keeps_it(
        monkeypatch, capsys, tmp_path: Path) -> None:
    """A side study run beside a main report that REPRODUCE.md cannot read yet: one warning, REPRODUCE.md untouched."""
    from bench import reproduce
    from bench.reporting import reproduce_doc

    doc = tmp_path / "REPRODUCE.md"
    doc.write_text("before")
    monkeypatch.setattr(reproduce_doc, "OUTPUT", doc)

    def stale() -> str:
        raise KeyError("no claims in results/cpu/scienceworld.json")

    monkeypatch.setattr(reproduce_doc, "render", stale)
    assert reproduce.rewrite_reproduce_doc() == []
    assert doc.read_text() == "before"
    err = capsys.readouterr().err
    assert err.startswith("warning: REPRODUCE.md was not rewritten") and "make docs" in err
    monkeypatch.setattr(reproduce_doc, "render", lambda: "after")
    assert reproduce.rewrite_reproduce_doc() == [doc] and doc.read_text() == "after"
