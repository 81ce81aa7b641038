"""REPRODUCE.md, generated: every number in it is read from results/ (and the committed models' own
records in checkpoints/), none is typed by hand.

The text is the Jinja template `bench/reporting/REPRODUCE.md.j2`; its expressions call the helpers below
(`v`, `ci`, `pct`, `cell`, `ctx`, ...), which read `results/<profile>/<suite>.json`, `pair.json`,
`results/switching_mdp.json`, `results/benchmarks.json`, `results/smoke/reference.json` and the
committed models' `londi.json`. The claims table at the top is built here, one `Claim` per claim of
the paper, each with the command that checks it, what the cpu profile measured and whether that
meets it. `make reproduce` (cpu profile) regenerates the file; `make docs` does it alone, and the
test suite fails when REPRODUCE.md differs from what the results say.

    python -m bench.reporting.reproduce_doc            # write REPRODUCE.md
    python -m bench.reporting.reproduce_doc --check    # exit 1 when REPRODUCE.md is stale
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import tyro

from bench.common.provenance import REPO_ROOT
from bench.models.profiles import get_profile
from bench.reporting.executors import render as render_executors
from bench.reporting.report import PAPER_SAVING, family, is_londi

ROOT = REPO_ROOT
TEMPLATE = Path(__file__).resolve().parent / "REPRODUCE.md.j2"
OUTPUT = ROOT / "REPRODUCE.md"


@dataclass
class Results:
    """Read access to one profile's results, for the template."""

    results: Path = ROOT / "results"
    profile: str = "cpu"
    checkpoints: Path = ROOT / "checkpoints"

    # ------------------------------------------------------------------ files
    def suite(self, suite: str) -> dict[str, Any]:
        return _json(self.results / self.profile / f"{suite}.json")

    def cell(self, suite: str, task: str, router: str) -> dict[str, Any]:
        for cell in self.suite(suite)["cells"]:
            if cell["task"] == task and cell["router"] == router:
                return cell
        raise KeyError(f"no cell ({task}, {router}) in results/{self.profile}/{suite}.json")

    def cells(self, suite: str, task: str) -> list[dict[str, Any]]:
        return [c for c in self.suite(suite)["cells"] if c["task"] == task]

    def ctx(self, suite: str, key: str) -> Any:
        context = self.suite(suite)["context"]
        for name, value in context.items():
            if name == key or name.startswith(key):
                return value
        raise KeyError(f"no {key!r} in the context of results/{self.profile}/{suite}.json")

    def verdict(self, suite: str, task: str) -> dict[str, Any]:
        return next(v for v in self.suite(suite)["verdicts"] if v["task"] == task)

    def h2h(self, suite: str, londi: str, other: str) -> dict[str, Any]:
        """The head-to-head row of `londi` against the router whose name starts with `other`."""
        for row in self.suite(suite)["head_to_head"]:
            if row["londi"] == londi and row["other"].startswith(other):
                return row
        raise KeyError(f"no head-to-head of {londi} against {other}*")

    def ablation(self, suite: str, router: str) -> dict[str, Any]:
        return next(r for r in self.suite(suite)["ablation"] if r["router"] == router)

    def model_cost(self, suite: str, model: str) -> dict[str, Any]:
        return next(r for r in self.suite(suite)["model_costs"] if r["model"] == model)

    def pair(self, task: str) -> dict[str, Any]:
        return next(t for t in _json(self.results / self.profile / "pair.json")["tasks"] if t["task"] == task)

    def pair_context(self, key: str) -> Any:
        return _json(self.results / self.profile / "pair.json")["context"][key]

    def mdp(self) -> dict[str, Any]:
        return _json(self.results / "switching_mdp.json")

    def bench(self, name: str) -> dict[str, Any]:
        for row in _json(self.results / "benchmarks.json")["benchmarks"]:
            if row["name"] == name:
                return row
        raise KeyError(f"no benchmark {name} in results/benchmarks.json")

    def bench_date(self) -> str:
        return _json(self.results / "benchmarks.json")["datetime"][:10]

    def regress(self) -> dict[str, Any]:
        return _json(self.results / "smoke" / "reference.json")

    def gpu_check(self) -> dict[str, Any]:
        return _json(self.results / "gpu_check_h200.json")

    def gpu_prompt_tokens(self, suite: str) -> int:
        """Prompt length of the Flan-T5-shape calls of `suite` in the GPU check."""
        return next(row["prompt_tokens"] for row in self.gpu_check()["flan_t5_shapes"] if row.get("suite") == suite
                    and "prompt_tokens" in row)

    def executors(self) -> dict[str, Any]:
        """The executors study (make scaling: results/<profile>/executors.json)."""
        return _json(self.results / self.profile / "executors.json")

    def rename(self) -> dict[str, Any]:
        return _json(self.results / self.profile / "scienceworld_rename.json")

    def where(self, suite: str) -> list[dict[str, Any]]:
        """The numbers behind the where-LONDI-calls-DEEPTHINK picture (results/<profile>/<suite>_londi_where.csv)."""
        import csv

        path = self.results / self.profile / f"{suite}_londi_where.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: REPRODUCE.md is generated from it (run make reproduce)")
        with path.open() as f:
            return list(csv.DictReader(f))

    def model(self, suite: str, role: str) -> dict[str, Any]:
        """The committed model's own record (checkpoints/<profile>/<dir>/londi.json)."""
        prefix = f"{role}-" if suite == "babyai" else f"{suite}-{role}-"
        dirs = sorted(p for p in (self.checkpoints / self.profile).glob(f"{prefix}*") if (p / "londi.json").exists())
        if len(dirs) != 1:
            raise KeyError(f"expected one committed {suite} {role} model in checkpoints/{self.profile}, found {dirs}")
        return _json(dirs[0] / "londi.json")


@cache
def _json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: REPRODUCE.md is generated from it (run make reproduce)")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------- formatting
def num(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage number (0.55 -> 55.0)."""
    return "n/a" if x != x else f"{100 * x:.{digits}f}"


def interval(e: dict[str, float], digits: int = 3, percent: bool = False) -> str:
    show: Callable[[float], str] = (lambda x: pct(x, digits)) if percent else (lambda x: num(x, digits))
    return f"{show(e['mean'])} [{show(e['low'])}, {show(e['high'])}]"


def flat(cell: dict[str, Any], metric: str) -> dict[str, float]:
    """A results cell's metric as an interval (cells store metric, metric_ci_low, metric_ci_high)."""
    return {"mean": cell[metric], "low": cell[f"{metric}_ci_low"], "high": cell[f"{metric}_ci_high"]}


def sci(x: float, digits: int = 2) -> str:
    return f"{x:.{digits - 1}e}".replace("e+0", "e").replace("e+", "e")


def thousands(x: float) -> str:
    return f"{x:,.0f}"


# ---------------------------------------------------------------------- the claims table, built from the data
def judged(r: Results, suite: str) -> bool:
    """Whether the suite's results carry verdicts built by the current report (priced costs, settings chosen on
    validation episodes, two-level intervals). Results made before it are shown, never judged."""
    return "claims" in r.suite(suite)


def _stale(r: Results, suite: str) -> str:
    return (f"not judged: results/{r.profile}/{suite}.json was made at git {r.ctx(suite, 'git commit')}, before "
            f"priced costs, settings chosen on validation episodes and seed-level intervals; `make reproduce` "
            f"remakes it")


def _task_claims(r: Results, suite: str, task: str) -> list[dict[str, Any]]:
    return [c for c in r.suite(suite)["claims"] if c["task"] == task]


def _londi_settings(r: Results, suite: str, task: str) -> list[dict[str, Any]]:
    """LONDI as configured (not its controls: no cues, c = 0; not the ablation)."""
    return [c for c in r.cells(suite, task) if is_londi(c["router"])]


def _h2h_random(r: Results) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """LONDI against the random switching made for it: every row, and those at the same test fraction."""
    rows = [row for row in r.suite("babyai")["head_to_head"] if row["other"].startswith("random_switch")]
    return rows, [row for row in rows if row.get("same_fraction", True)]


def _claim_h2h(r: Results) -> str:
    rows, same = _h2h_random(r)
    if not rows:
        return "no LONDI setting was matched with random switching"
    ahead = [row for row in same if row["reward_diff"]["low"] > 0]
    named = ", ".join(f"`{row['londi']}` +{num(row['reward_diff']['mean'])}" for row in ahead)
    apart = [f"`{row['londi']}` {num(row['londi_fraction'])} against {num(row['other_fraction'])}"
             for row in rows if row not in same]
    return (f"babyai/Mixed, paired on episodes, random switching made at each setting's DEEPTHINK fraction on the "
            f"validation episodes: {len(same)} of {len(rows)} pairs are at the same fraction on the test episodes "
            f"(within 0.02), LONDI is ahead with an interval above 0 in {len(ahead)} of them"
            f"{f' ({named})' if named else ''}"
            f"{'; not at the same fraction (judged apart): ' + ', '.join(apart) if apart else ''}")


def _verdict_h2h(r: Results) -> str:
    if not judged(r, "babyai"):
        return "not judged yet"
    _, same = _h2h_random(r)
    ahead = sum(row["reward_diff"]["low"] > 0 for row in same)
    return "**yes**" if same and ahead > len(same) / 2 else ("partly" if ahead else "no")


def _claim_budget(r: Results) -> str:
    if not judged(r, "babyai"):
        return _stale(r, "babyai")
    rows = [b for b in r.suite("babyai")["budgets"] if b["task"] == "babyai/Mixed"]
    if not rows:
        return "no LONDI-B setting ran"
    return ("babyai/Mixed, DEEPTHINK calls per test episode against the budget (masked at evaluation): "
            + "; ".join(f"budget {b['budget']}: mean {num(b['mean_calls'], 2)}, at most {b['max_calls']}"
                        for b in rows))


def _verdict_budget(r: Results) -> str:
    if not judged(r, "babyai"):
        return "not judged yet"
    rows = [b for b in r.suite("babyai")["budgets"] if b["task"] == "babyai/Mixed"]
    return "not run" if not rows else "**yes**" if all(b["kept"] for b in rows) else "no"


def _costs(r: Results) -> list[tuple[float, dict[str, Any]]]:
    cells = [c for c in _londi_settings(r, "babyai", "babyai/Mixed") if family(c["router"]) == "londi_sac"]
    costs = [(re.search(r"\bc=([0-9.eE+-]+)", c["router"]), c) for c in cells]
    return sorted(((float(m[1]), c) for m, c in costs if m), key=lambda t: t[0])


def _claim_cost(r: Results) -> str:
    return ("babyai/Mixed, c -> DEEPTHINK fraction (reward): "
            + ", ".join(f"{c:g} -> {num(cell['deepthink_fraction'])} ({num(cell['reward'])})" for c, cell in _costs(r))
            + f"; on the switching chain the learned choice equals the DP optimum on {_mdp_matching(r)} states")


def _verdict_cost(r: Results) -> str:
    fractions = [cell["deepthink_fraction"] for _, cell in _costs(r)]
    if len(fractions) < 2:
        return "not run"
    return "**yes**" if all(a >= b for a, b in zip(fractions, fractions[1:], strict=False)) else "no"


def _mdp_matching(r: Results) -> str:
    rows = r.mdp()["rows"]
    matched = sum(int(row["states_matching"].split("/")[0]) for row in rows)
    total = sum(int(row["states_matching"].split("/")[1]) for row in rows)
    return f"{matched} of {total}"


def _londi_ablations(r: Results, suite: str = "babyai") -> list[dict[str, Any]]:
    """The ablation rows of LONDI settings (quick_only's is the random policy alone)."""
    return [row for row in r.suite(suite)["ablation"] if row["router"].startswith("londi")]


def _claim_ablation(r: Results) -> str:
    if not judged(r, "babyai"):
        return _stale(r, "babyai")
    rows = _londi_ablations(r)
    return "; ".join(f"babyai/Mixed `{row['router']}`: DEEPTHINK on "
                     f"{interval(row['deepthink_acted_fraction_real_quick'])} of steps with the real QUICK, "
                     f"{interval(row['deepthink_acted_fraction_random_quick'])} with a random one, paired difference "
                     f"{interval(row['fraction_diff'])}" for row in rows if "fraction_diff" in row) or "not run"


def _verdict_ablation(r: Results) -> str:
    if not judged(r, "babyai"):
        return "not judged yet"
    rows = [row for row in _londi_ablations(r) if "calls_more" in row]
    return "not run" if not rows else "**yes**" if all(row["calls_more"] for row in rows) else "no"


@dataclass
class Claim:
    claim: str
    command: str
    measured: Callable[[Results], str]
    verdict: Callable[[Results], str]


def _limit(r: Results, suite: str = "babyai", task: str = "babyai/Mixed") -> dict[str, Any] | None:
    try:
        return r.suite(suite).get("hindsight", {}).get(task)
    except FileNotFoundError:
        return None


def _claim_limit(r: Results) -> str:
    data = _limit(r)
    if not data or not data.get("londi"):
        return "not measured: no hindsight results (or no LONDI setting chosen) in results/cpu/babyai.json"
    v = data["londi"]
    return (f"`{v['setting']}`, {v.get('how', 'chosen on validation')}, calls DEEPTHINK {num(v['calls_ratio'], 2)}x "
            f"[{num(v['low'], 2)}, {num(v['high'], 2)}] the minimum at its reward on Mixed")


def _verdict_limit(r: Results) -> str:
    data = _limit(r)
    if not data or not data.get("londi"):
        return "not judged yet"
    v = data["londi"]
    return f"{v['goal_verdict']} (1.5x); {v['aim_verdict']} (1.2x)"


def limit_tables(r: Results, suite: str = "babyai", task: str = "babyai/Mixed") -> str:
    """The hindsight section's tables for `task`, from the suite's report JSON."""
    import pandas as pd

    from bench.reporting.hindsight import area_markdown, regret_markdown, summary_markdown

    data = _limit(r, suite, task)
    if not data:
        return "No hindsight results in results/ yet: `make reproduce` searches them (or reads the committed ones)."
    chosen = data["londi"]["setting"] if data.get("londi") else None
    how = data["londi"].get("how", "chosen on validation") if data.get("londi") else ""
    parts = [summary_markdown(pd.DataFrame(data["summary"]), task)]
    if data["regret"]:
        parts.append(regret_markdown(pd.DataFrame(data["regret"]), task, chosen, how))
    if data["areas"]:
        parts.append(area_markdown(pd.DataFrame(data["areas"]), task))
    return "\n".join(parts).rstrip("\n")


def _plug_and_play(r: Results) -> tuple[str, str]:
    from bench.reporting import plug_and_play

    return plug_and_play.claim(plug_and_play.rows(plug_and_play.load(r.results, r.profile)))


def plug_and_play_section(r: Results, part: str) -> str:
    """The plug-and-play tables (bench.reporting.plug_and_play): `table`, `models_table` or `encoder_rows`."""
    from bench.reporting import plug_and_play

    return getattr(plug_and_play, part)(plug_and_play.rows(plug_and_play.load(r.results, r.profile)))


CLAIMS = [
    Claim("LONDI calls DEEPTHINK within 1.5x the fewest calls that could reach its reward (issue 17's goal; aim 1.2x)",
          "`make reproduce`: the hindsight section of results/cpu/babyai.md", _claim_limit, _verdict_limit),
    Claim("LONDI beats switching without a policy at the same number of calls (the harness's control)",
          "`make reproduce`: the head-to-head table (random switching at each setting's own fraction)",
          _claim_h2h, _verdict_h2h),
    Claim("LONDI-B keeps its budget of DEEPTHINK calls", "`make test` (tests/test_londi_sac.py); the budget sweep",
          _claim_budget, _verdict_budget),
    Claim("A higher cost c gives fewer DEEPTHINK calls (c trades reward for calls)",
          "the c sweep of `make reproduce`; `python -m algos.switching_mdp`", _claim_cost, _verdict_cost),
    Claim("Plug and play with other LMs and encoders: LONDI keeps DEEPTHINK-only's reward with less priced compute "
          "on every pair",
          "`--pair causal` or `mixed`, `--quick` / `--deepthink` (any checkpoint, served model or `instruct:`), "
          "`londi_sac[encoder=transformer]`: the plug and play section",
          lambda r: _plug_and_play(r)[0], lambda r: _plug_and_play(r)[1]),
    Claim("With a random QUICK, LONDI calls DEEPTHINK more", "`make reproduce`: the ablation table (`--quick random`)",
          _claim_ablation, _verdict_ablation),
]


def _verdict_rows(r: Results) -> list[tuple[str, str, str, str]]:
    """(claim, command, measured, verdict) of every verdict the report computed, per sweep task; a suite whose
    results predate the verdicts gets one row saying so."""
    rows = []
    for suite in ("babyai", "scienceworld"):
        try:
            data = r.suite(suite)
        except FileNotFoundError:
            continue
        command = f"`make reproduce`: the verdict section of results/{r.profile}/{suite}.md"
        if not judged(r, suite):
            rows.append((f"LONDI keeps DEEPTHINK-only's reward with at least {PAPER_SAVING:.0%} less compute on "
                         f"{suite} (the paper's claim)", command, _stale(r, suite), "not judged yet"))
            continue
        for claim in data["claims"]:
            verdict = {"yes": "**yes**"}.get(claim["verdict"], claim["verdict"])
            rows.append((claim["claim"], command, claim["evidence"], verdict))
    return rows


def claims_table(r: Results) -> str:
    lines = ["| claim | how it is checked | measured on the cpu profile | holds? |", "|---|---|---|---|"]
    for claim, command, measured, verdict in _verdict_rows(r):
        lines.append(f"| {claim} | {command} | {measured} | {verdict} |")
    for claim in CLAIMS:
        lines.append(f"| {claim.claim} | {claim.command} | {claim.measured(r)} | {claim.verdict(r)} |")
    return "\n".join(lines)


def _share(e: dict[str, float] | None) -> str:
    return "n/a" if not e else f"{interval(e, 1, True)}%"


def baseline_findings(r: Results, suite: str, task: str) -> str:
    """What the rule-based routers' rows say, from the data: each family's setting chosen on validation and how it
    fares on the test episodes."""
    if not judged(r, suite):
        return f"- Rule-based settings {_stale(r, suite)}."
    rows = [v for v in r.suite(suite)["verdicts"] if v["task"] == task]
    if not rows:
        return "- No validation episodes on this task: no setting is chosen and nothing is judged here."
    lines = []
    for fam in rows[0]["families"]:
        if fam["family"].startswith("londi"):
            continue
        if fam["chosen"] is None:
            lines.append(f"- `{fam['family']}`: no setting kept a lower bound of reward retained >= 0.95 on the "
                         f"validation episodes.")
            continue
        lines.append(f"- `{fam['family']}`, chosen on validation: `{fam['chosen']}`; on the test episodes it "
                     f"keeps {interval(fam['reward_retained'])} of DEEPTHINK-only's reward (non-inferior: "
                     f"{'yes' if fam['non_inferior'] else 'no'}) with {_share(fam['saving'])} less priced "
                     f"compute "
                     f"({_share(fam['saving_flops'])} fewer FLOPs; wall clock, secondary: "
                     f"{_share(fam['saving_compute_s'])}).")
    try:
        followed = r.cell(suite, task, "follow_deepthink_where_they_differ")
        lines.append(f"- `follow_deepthink_where_they_differ` (a reference, not a router) runs both models at every "
                     f"step and takes DEEPTHINK's action where they differ, so it replays DEEPTHINK-only's episodes: "
                     f"on {pct(followed['deepthink_acted_fraction'])}% of steps here. Neither a floor nor a ceiling "
                     f"of switching: the hindsight minimum below is.")
    except KeyError:
        pass
    return "\n".join(lines)


def londi_findings(r: Results, suite: str, task: str) -> str:
    """The LONDI verdicts of `task`, each computed by the report from the data, and the rows they rest on."""
    if not judged(r, suite):
        return f"- LONDI's settings {_stale(r, suite)}."
    data = r.suite(suite)
    lines = [f"- **{c['verdict']}**: {c['claim']}. {c['evidence']}." for c in _task_claims(r, suite, task)]
    verdict = next((v for v in data["verdicts"] if v["task"] == task), None)
    chosen = verdict["londi"]["chosen"] if verdict else None
    if chosen:
        cell = r.cell(suite, task, chosen)
        if "train_priced_s" in cell:
            lines.append(f"- Training `{chosen}` cost {num(cell['train_priced_s'], 1)} priced seconds per run seed "
                         f"({num(cell['train_episodes'], 0)} episodes with both models, and the Switcher's updates); "
                         f"it has paid for itself after {num(cell['break_even_episodes'], 0)} deployment episodes.")
        for row in (h for h in data["head_to_head"] if h["task"] == task and h["londi"] == chosen):
            lines.append(f"- Against `{row['other']}` (DEEPTHINK fraction {num(row['other_fraction'])} against "
                         f"{num(row['londi_fraction'])}), same episodes: reward difference "
                         f"{interval(row['reward_diff'])}: {row['verdict']}"
                         f"{'' if row.get('same_fraction', True) else ' (not at the same fraction)'}.")
    for b in (b for b in data["budgets"] if b["task"] == task):
        lines.append(f"- `{b['router']}` used {num(b['mean_calls'], 2)} DEEPTHINK calls per episode on average, at "
                     f"most {b['max_calls']}, of a budget of {b['budget']} (kept: {'yes' if b['kept'] else 'no'}).")
    for row in (a for a in data["ablation"] if a["task"] == task and "fraction_diff" in a
                and a["router"].startswith("londi")):
        lines.append(f"- Ablation: with a random QUICK `{row['router']}` calls DEEPTHINK on "
                     f"{interval(row['deepthink_acted_fraction_random_quick'])} of steps instead of "
                     f"{interval(row['deepthink_acted_fraction_real_quick'])} (paired difference "
                     f"{interval(row['fraction_diff'])}: {'more' if row['calls_more'] else 'not clearly more'}).")
    return "\n".join(lines) or "- No LONDI setting ran on this task."


def sw_summary_table(r: Results) -> str:
    """Per ScienceWorld task: QUICK-only and DEEPTHINK-only, and the deployable router chosen on validation."""
    lines = ["| task | QUICK-only reward | DEEPTHINK-only reward | chosen on validation (test: reward retained, priced "
             "saving) |", "|---|---|---|---|"]
    data = r.suite("scienceworld")
    for task in dict.fromkeys(c["task"] for c in data["cells"]):
        quick, deep = r.cell("scienceworld", task, "quick_only"), r.cell("scienceworld", task, "deepthink_only")
        verdict = next((v for v in data.get("verdicts", []) if v["task"] == task and "best" in v), None)
        if not judged(r, "scienceworld"):
            chosen = "not judged yet"
        elif verdict is None or verdict["best"]["chosen"] is None:
            chosen = "none (no validation episodes, or no setting passed there)"
        else:
            best = verdict["best"]
            chosen = (f"`{best['chosen']}`: {interval(best['reward_retained'])}, {_share(best['saving'])}")
        lines.append(f"| {task.split('/')[1]} | {interval(flat(quick, 'reward'))} | {interval(flat(deep, 'reward'))} "
                     f"| {chosen} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- tables
def router_table(r: Results, suite: str, task: str, routers: list[str] | None = None, londi: bool = False) -> str:
    """Rows of `task`: the routers given (else every non-LONDI, non-ablation one), or LONDI's settings."""
    cells = r.cells(suite, task)
    if londi:
        cells = [c for c in cells if c["router"].startswith("londi")]
    elif routers is not None:
        cells = [r.cell(suite, task, name) for name in routers]
    else:  # the baselines: not LONDI, not the ablation, not the random switching matched to a LONDI setting
        matched = {row["other"] for row in r.suite(suite)["head_to_head"] if row["other"].startswith("random_switch")}
        cells = [c for c in cells if not c["router"].startswith("londi") and "@quick=random" not in c["router"]
                 and c["router"] not in matched]
    head = ("| router | reward | success | DEEPTHINK acts | calls / episode | saving (priced) | saving (FLOPs) "
            "| saving (wall clock, secondary) | reward retained [95% interval] |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        def opt(key: str, c: dict[str, Any] = c) -> str:
            return num(c[key]) if key in c and c[key] == c[key] else "-"

        retained = (interval(flat(c, "reward_retained")) if "reward_retained" in c and c["reward_retained"] == c[
            "reward_retained"] else "-")
        name = c["router"].replace("@quick=random", ", random QUICK")
        lines.append(f"| {name} | {num(c['reward'])} | {num(c['success'])} | {num(c['deepthink_acted_fraction'])} | "
                     f"{num(c['deepthink_calls'], 2)} | {opt('saving_priced_s')} | {opt('saving_flops')} | "
                     f"{opt('saving_compute_s')} | {retained} |")
    return "\n".join(lines)


def calibration_table(r: Results) -> str:
    """What a call of each model costs from the committed calibration (results/<profile>/calibration.json), priced
    at batch 1 and at the largest batch measured, at the median prompt the model sees; DEEPTHINK's multiple of QUICK
    beside its multiple in FLOPs per decision in the sweep."""
    from bench.running.pricing import Prices

    path = r.results / r.profile / "calibration.json"
    if not path.exists():
        return f"Not calibrated at this commit (`results/{r.profile}/calibration.json` is missing; `make calibrate`)."
    data = _json(path)
    lines = ["| suite | batch | QUICK ms per call | DEEPTHINK ms per call | DEEPTHINK / QUICK, priced "
             "| DEEPTHINK / QUICK, FLOPs per decision in the sweep |", "|---|---|---|---|---|---|"]
    notes: list[str] = []
    for suite, part in data["suites"].items():
        prices = Prices.from_calibration(part)
        roles = part["roles"]
        try:
            costs = {m: r.model_cost(suite, m)["flops_per_decision"] for m in ("quick", "deepthink")}
            flops = f"{costs['deepthink'] / costs['quick']:.1f}x"
        except (FileNotFoundError, StopIteration, KeyError):
            flops = "n/a"
        out = 8 if roles["quick"]["mode"] == "generate" else 0
        for batch in (1, max(part["batches"])):
            ms = {role: 1000 * prices.price(role, batch, int(roles[role]["real_prompts"]["median"]), out)
                  for role in ("quick", "deepthink")}
            priced = ms["deepthink"] / ms["quick"]
            lines.append(f"| {suite} | {batch} | {ms['quick']:.2f} | {ms['deepthink']:.2f} | {priced:.1f}x | {flops} |")
            if flops != "n/a":
                ratio = costs["deepthink"] / costs["quick"]
                notes.append(f"{suite} at batch {batch}: FLOPs {'overstate' if ratio > priced else 'understate'} "
                             f"DEEPTHINK's cost against QUICK's ({ratio:.1f}x against {priced:.1f}x priced)")
    machine = next(iter(data["suites"].values()))["machine"]
    lines += ["", f"Measured {next(iter(data['suites'].values()))['date']} at git "
                  f"{next(iter(data['suites'].values()))['git_commit']} on {machine['cpu']} ({machine['cores']} cores, "
                  f"{machine['torch_threads']} torch thread, torch {machine['torch']}); generation priced at 8 tokens "
                  f"out."]
    if notes:
        lines += ["", "So: " + "; ".join(notes) + "."]
    return "\n".join(lines)


def gpu_shape_table(r: Results) -> str:
    """Per decision at the paper's model sizes on the lent GPU (scripts/gpu_check.py --flan-t5-shapes): seconds,
    NVML GPU-seconds, energy and FLOPs of QUICK's and DEEPTHINK's shapes, and DEEPTHINK's multiple of each."""
    rows = r.gpu_check()["flan_t5_shapes"]
    calls = {(row["model"], row["suite"], row["batch"]): row for row in rows if "model" in row}
    lines = ["| suite, batch | QUICK (Flan-T5-small shape): ms / GPU-s / J per call | DEEPTHINK (Flan-T5-large shape) "
             "| DEEPTHINK / QUICK: seconds, GPU-s, energy, FLOPs |", "|---|---|---|---|"]

    def cost(row: dict[str, Any]) -> str:
        return (f"{row['ms_per_call_metered']:.1f} / {row['gpu_s'] / row['calls']:.4f} / "
                f"{row['gpu_energy_j'] / row['calls']:.1f}")

    for ratio in (row for row in rows if "ratio" in row):
        small, large = (calls[(f"flan-t5-{size}-shape", ratio["suite"], ratio["batch"])] for size in ("small", "large"))
        lines.append(f"| {ratio['suite']}, {ratio['batch']} | {cost(small)} | {cost(large)} | "
                     f"{ratio['ms_per_call_metered']:.1f}x, {ratio['gpu_s']:.1f}x, {ratio['gpu_energy_j']:.1f}x, "
                     f"{ratio['flops_per_call']:.1f}x |")
    return "\n".join(lines)


def pair_table(r: Results) -> str:
    lines = ["| task | QUICK success | DEEPTHINK success | gap | agreement |", "|---|---|---|---|---|"]
    for row in _json(r.results / r.profile / "pair.json")["tasks"]:
        name = row["task"].split("/")[1]
        cells = [interval(row["quick_success"], 1, True), interval(row["deepthink_success"], 1, True),
                 interval(row["success_gap"], 1, True), pct(row["agreement"]["mean"])]
        if name == "Mixed":
            name, cells = f"**{name}**", [f"**{c}**" for c in cells]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


HELDOUT_LEVELS = "heldout_levels"
"""results/<profile>/heldout_levels.json: the pair on BabyAI levels it never saw (bench.reproduce --report-as)."""


def heldout_levels_table(r: Results) -> str:
    """QUICK-only and DEEPTHINK-only on levels the pair never saw: success and reward with their intervals."""
    path = r.results / r.profile / f"{HELDOUT_LEVELS}.json"
    if not path.exists():
        return ("Not measured yet at this commit (`results/cpu/heldout_levels.json` is missing; the command above "
                "writes it).")
    made = _json(path)
    lines = ["| level (never seen by the pair) | QUICK-only success | DEEPTHINK-only success | QUICK-only reward "
             "| DEEPTHINK-only reward | episodes each |", "|---|---|---|---|---|---|"]
    for task in dict.fromkeys(c["task"] for c in made["cells"]):
        quick, deep = (next(c for c in made["cells"] if c["task"] == task and c["router"] == router)
                       for router in ("quick_only", "deepthink_only"))
        lines.append(f"| {task} | {interval(flat(quick, 'success'))} | {interval(flat(deep, 'success'))} | "
                     f"{interval(flat(quick, 'reward'))} | {interval(flat(deep, 'reward'))} | {quick['episodes']} |")
    context = made["context"]
    lines += ["", f"Made at git {context['git commit']} by `{context['command']}` (sweep "
                  f"{context['sweep (MLflow tag londi.sweep)']}, seeds {context['seeds']})."]
    return "\n".join(lines)


def benchmark_table(r: Results) -> str:
    rows = _json(r.results / "benchmarks.json")["benchmarks"]
    lines = ["| benchmark | mean | median | rounds | details |", "|---|---|---|---|---|"]
    for row in rows:
        stats = row["stats"]
        extra = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row["extra_info"].items())
        lines.append(f"| {row['name'].removeprefix('test_')} | {_seconds(stats['mean'])} | "
                     f"{_seconds(stats['median'])} | {stats['rounds']} | {extra} |")
    return "\n".join(lines)


def rename_tables(r: Results) -> str:
    """The renaming augmentation alone and the ScienceWorld pair's goals (results/cpu/scienceworld_rename.json)."""
    from bench.reporting.rename import tables

    data = r.rename()
    return tables(data["rows"], data["goals"], "####")


def learning_findings(r: Results, suite: str) -> str:
    """Each learned setting's learning curve, as the report judged it (flat, still moving, undecided)."""
    rows = r.suite(suite).get("learning", [])
    if not rows:
        return "- No learning curve was logged (the sweep predates them, or trained nothing)."
    out = []
    for row in rows:
        quarters = row["quarters"].get("deepthink_fraction")
        shown = " / ".join(num(q) for q in quarters) if quarters else "n/a"
        change = row["change"].get("deepthink_fraction")
        out.append(f"- `{row['router']}` on {row['task'].split('/')[-1]}: DEEPTHINK fraction by quarter of its "
                   f"{row['episodes']} training episodes {shown} ({row['seeds']} seeds), change in the last quarter "
                   f"{interval(change) if change else 'n/a'}: **{row['verdict']}**.")
    return "\n".join(out)


def pooled_findings(r: Results, suite: str) -> str:
    """LONDI's claims pooled over the suite's sweep tasks, as the report judged them."""
    lines = [f"- **{c['verdict']}**: {c['claim']}. {c['evidence']}." for c in _task_claims(r, suite, "pooled")]
    return "\n".join(lines) or "- Fewer than two sweep tasks were judged: nothing is pooled."


def where_table(r: Results, suite: str, task: str) -> str:
    """Per LONDI setting on `task`: the share of its DEEPTHINK calls made in each room, and DEEPTHINK's share of the
    steps taken there (from the where table, test episodes)."""
    rows = [row for row in r.where(suite) if row["task"] == task and row["by"] == "room"]
    if not rows:
        return "No LONDI setting ran on this task."
    rooms = sorted({row["where"] for row in rows})
    settings = sorted({row["router"] for row in rows})
    lines = ["| setting | " + " | ".join(rooms) + " |", "|---|" + "---|" * len(rooms)]
    for setting in settings:
        mine = {row["where"]: row for row in rows if row["router"] == setting}
        calls = sum(int(row["deepthink_calls"]) for row in mine.values())
        cells = []
        for room in rooms:
            row = mine.get(room)
            if row is None:
                cells.append("-")
                continue
            share = int(row["deepthink_calls"]) / calls if calls else float("nan")
            cells.append(f"{pct(share, 0)}% of calls ({pct(int(row['deepthink_calls']) / int(row['steps']), 0)}% "
                         f"of {row['steps']} steps)")
        lines.append(f"| `{setting}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _seconds(s: float) -> str:
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def render(results: Results | None = None) -> str:
    r = results or Results()
    _json.cache_clear()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    cpu = get_profile("cpu")
    helpers = {"r": r, "num": num, "pct": pct, "interval": interval, "flat": flat, "sci": sci, "thousands": thousands,
               "claims_table": lambda: claims_table(r), "pair_table": lambda: pair_table(r),
               "baseline_findings": lambda *a: baseline_findings(r, *a),
               "londi_findings": lambda *a: londi_findings(r, *a),
               "sw_summary_table": lambda: sw_summary_table(r),
               "router_table": lambda *a, **k: router_table(r, *a, **k), "benchmark_table": lambda: benchmark_table(r),
               "gpu_shape_table": lambda: gpu_shape_table(r), "calibration_table": lambda: calibration_table(r),
               "heldout_levels_table": lambda: heldout_levels_table(r), "limit_tables": lambda: limit_tables(r),
               "plug_and_play_table": lambda: plug_and_play_section(r, "table"),
               "executors_section": lambda: render_executors(r.executors(), title=False),
               "plug_and_play_models": lambda: plug_and_play_section(r, "models_table"),
               "plug_and_play_encoders": lambda: plug_and_play_section(r, "encoder_rows"),
               "mdp_matching": lambda: _mdp_matching(r), "rename_tables": lambda: rename_tables(r),
               "learning_findings": lambda *a: learning_findings(r, *a),
               "where_table": lambda *a: where_table(r, *a), "pooled_findings": lambda *a: pooled_findings(r, *a),
               "minutes": lambda s: f"{s / 60:.1f}",
               "cpu": cpu, "sw_sweep": [t for t in cpu.sweep_tasks if t.startswith("scienceworld/")]}
    return env.get_template(TEMPLATE.name).render(**helpers)


@dataclass
class Args:
    """Write REPRODUCE.md from results/ (or check that it is up to date)."""

    check: bool = False
    """exit 1, writing nothing, when REPRODUCE.md differs from what results/ gives"""


def main(args: Args) -> int:
    text = render()
    if args.check:
        if OUTPUT.read_text() != text:
            print("REPRODUCE.md is stale: regenerate it with make docs (python -m bench.reporting.reproduce_doc)",
                  file=sys.stderr)
            return 1
        print("REPRODUCE.md matches results/")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    from bench.common.errors import user_errors

    with user_errors():
        sys.exit(main(tyro.cli(Args)))
