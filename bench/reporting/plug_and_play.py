"""Plug and play, measured: LONDI with other model pairs and with the Switcher's other encoder.

Four side studies of `bench.reproduce` on babyai/Mixed (same seeds, episodes and LONDI settings), each in its own
`results/<profile>/plug_and_play_<name>.json` and priced from its own part of calibration.json:

- t5: the profile's T5 pair, the Switcher reading words (its default encoder);
- causal: the same recipes as decoder-only (Llama-shape) models, trained here (`--pair causal`);
- mixed: the T5 QUICK with the decoder-only DEEPTHINK (`--pair mixed`);
- encoder: the T5 pair, the Switcher reading through its transformer encoder (`londi_sac[encoder=transformer]`).

Each pair gets the verdicts issue's statistics: QUICK-only and DEEPTHINK-only with their intervals, and LONDI's
setting chosen on the validation episodes (the largest priced saving among the settings whose lower bound of reward
retained is at least RETAINED there) judged on the test episodes. Where no setting passes on validation, the LONDI
setting closest to passing (the highest lower bound there) is shown for the record, marked as not chosen.

`claim` turns the rows into the paper's plug-and-play claim: LONDI keeps DEEPTHINK-only's reward with less priced
compute on every pair (yes), on some (partly), on none (no).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.reporting.report import RETAINED, is_londi

STUDIES = {
    "t5": "the profile's T5 pair",
    "causal": "the causal pair (both decoder-only)",
    "mixed": "the mixed pair (T5 QUICK, decoder-only DEEPTHINK)",
    "encoder": "the T5 pair, Switcher with the transformer encoder",
}
"""Side study name (results/<profile>/plug_and_play_<name>.json) -> what it varies."""
PAIRS = ("t5", "causal", "mixed")
TASK = "babyai/Mixed"


def study_path(results: Path, profile: str, name: str) -> Path:
    return results / profile / f"plug_and_play_{name}.json"


def load(results: Path, profile: str = "cpu") -> dict[str, dict[str, Any]]:
    """The studies present in results/<profile>/, by name, each with its calibration part (`_calibration`)."""
    calibration = results / profile / "calibration.json"
    parts = json.loads(calibration.read_text()).get("suites", {}) if calibration.exists() else {}
    found = {}
    for name in STUDIES:
        path = study_path(results, profile, name)
        if path.exists():
            found[name] = {**json.loads(path.read_text()),
                           "_calibration": parts.get(f"babyai@plug_and_play_{name}", {})}
    return found


def _cell(data: dict[str, Any], router: str) -> dict[str, Any] | None:
    return next((c for c in data["cells"] if c["task"] == TASK and c["router"] == router), None)


def _interval(cell: dict[str, Any], metric: str) -> dict[str, float] | None:
    if cell.get(metric) is None:
        return None
    return {"mean": cell[metric], "low": cell[f"{metric}_ci_low"], "high": cell[f"{metric}_ci_high"]}


def _closest(data: dict[str, Any]) -> str | None:
    """The LONDI setting with the highest lower bound of reward retained on the validation episodes."""
    best, best_low = None, float("-inf")
    for row in data.get("selection", []):
        if row["task"] != TASK:
            continue
        for router, stats in row.get("validation", {}).items():
            low = stats["reward_retained"]["low"]
            if is_londi(router) and low > best_low:
                best, best_low = router, low
    return best


@dataclass
class Row:
    """One study's numbers on Mixed."""

    name: str
    what: str
    quick: dict[str, Any]
    deepthink: dict[str, Any]
    quick_model: str
    deepthink_model: str
    londi: str | None
    """the LONDI setting shown: chosen on validation, else the closest to passing"""
    chosen: bool
    retained: dict[str, float] | None
    saving: dict[str, float] | None
    saving_amortised: dict[str, float] | None
    fraction: float | None
    non_inferior: bool
    seeds: str
    episodes: int
    commit: str
    priced_on: str = ""
    """the calibration the study was priced from: machine and load when it was measured"""
    stopped: str = ""
    """where the study was stopped early, what it left out (its context says)"""

    @property
    def holds(self) -> bool:
        """LONDI keeps DEEPTHINK-only's reward (non-inferior on the test episodes, its setting chosen on validation)
        with less priced compute (the saving's lower bound above 0)."""
        return self.chosen and self.non_inferior and self.saving is not None and self.saving["low"] > 0


def row(name: str, data: dict[str, Any]) -> Row:
    """One study's row: the two models alone and LONDI, from its report JSON."""
    verdict = next((v for v in data.get("verdicts", []) if v["task"] == TASK), None)
    chosen = (verdict or {}).get("londi", {}).get("chosen")
    shown = chosen or _closest(data)
    cell = _cell(data, shown) if shown else None
    context = data["context"]
    quick, deepthink = _cell(data, "quick_only"), _cell(data, "deepthink_only")
    if quick is None or deepthink is None:
        raise ValueError(f"plug_and_play_{name}.json has no quick_only or deepthink_only on {TASK}: run its "
                         f"command again (it runs both)")
    retained = _interval(cell, "reward_retained") if cell else None
    return Row(name=name, what=STUDIES[name], quick=quick, deepthink=deepthink,
               quick_model=context.get("QUICK", "?"), deepthink_model=context.get("DEEPTHINK", "?"),
               londi=shown, chosen=chosen is not None, retained=retained,
               saving=_interval(cell, "saving_priced_s") if cell else None,
               saving_amortised=_interval(cell, "saving_amortised_1000") if cell else None,
               fraction=cell["deepthink_fraction"] if cell else None,
               non_inferior=bool(retained and retained["low"] >= RETAINED),
               seeds=str(context.get("seeds on the sweep tasks", context.get("seeds", "?"))),
               episodes=int(deepthink["episodes"]), commit=str(context.get("git commit", "?")),
               priced_on=_priced_on(data.get("_calibration", {})), stopped=str(context.get("stopped", "")))


def _priced_on(part: dict[str, Any]) -> str:
    if not part:
        return "no calibration part"
    return (f"{part['machine']['cpu']}, load {part.get('load_average_at_start', float('nan')):.1f} on "
            f"{part['machine']['cores']} cores when measured ({part['date'][:16]})")


def rows(studies: dict[str, dict[str, Any]]) -> list[Row]:
    return [row(name, data) for name, data in studies.items()]


def claim(found: list[Row]) -> tuple[str, str]:
    """(measured, verdict) of the plug-and-play claim over the pairs measured: yes when LONDI keeps DEEPTHINK-only's
    reward with less priced compute on every pair, partly on some, no on none; not measured without the pairs."""
    pairs = [r for r in found if r.name in PAIRS]
    if len(pairs) < 2:
        return ("not measured: fewer than two pairs' plug_and_play_*.json in results/ (the commands in the plug and "
                "play section write them)"), "not measured"
    held = [r.name for r in pairs if r.holds]
    parts = []
    for r in pairs:
        if r.holds:
            parts.append(f"{r.name}: `{r.londi}` keeps {_iv(r.retained)} of the reward, saves {_iv(r.saving, True)}%")
        elif r.chosen:
            parts.append(f"{r.name}: `{r.londi}` (chosen) keeps {_iv(r.retained)}, not non-inferior")
        else:
            parts.append(f"{r.name}: no LONDI setting passes on validation")
    measured = "; ".join(parts)
    verdict = "**yes**" if len(held) == len(pairs) else "partly" if held else "no"
    return measured, verdict


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or x != x else f"{x:.{digits}f}"


def _iv(e: dict[str, float] | None, percent: bool = False) -> str:
    if e is None:
        return "n/a"
    k, digits = (100, 1) if percent else (1, 3)
    return f"{_num(k * e['mean'], digits)} [{_num(k * e['low'], digits)}, {_num(k * e['high'], digits)}]"


def table(found: list[Row]) -> str:
    """The pairs side by side on Mixed (and the encoder study as a fourth row)."""
    if not found:
        return "Not measured yet: no results/cpu/plug_and_play_*.json (the commands above write them)."
    lines = ["| study | QUICK-only reward | DEEPTHINK-only reward | LONDI setting | DEEPTHINK fraction "
             "| reward retained | saving, priced (%) | saving, training paid over 1,000 episodes (%) "
             "| saving at the non-inferiority bound |", "|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        setting = "none" if r.londi is None else f"`{r.londi}`" + ("" if r.chosen else " (closest, not chosen)")
        at_bound = (f"{_iv(r.saving, True)}%" if r.holds
                    else "none: no setting chosen on validation" if not r.chosen else "none: not non-inferior")
        lines.append(f"| {r.name}: {r.what} | {_iv(_interval(r.quick, 'reward'))} | "
                     f"{_iv(_interval(r.deepthink, 'reward'))} | {setting} | {_num(r.fraction)} | {_iv(r.retained)} | "
                     f"{_iv(r.saving, True)} | {_iv(r.saving_amortised, True)} | {at_bound} |")
    lines += ["", "Made at git " + ", ".join(sorted({r.commit for r in found})) + f"; run seeds {found[0].seeds}, "
              f"{found[0].episodes} test episodes per router on {TASK}. Intervals: 95%, run seeds then episodes. "
              "Reward retained and saving are against DEEPTHINK-only of the same pair, on the same episodes.", ""]
    lines += [f"- {r.name}: priced from a calibration on {r.priced_on}" + (f"; stopped {r.stopped}" if r.stopped
                                                                            else "") + "." for r in found]
    return "\n".join(lines)


def models_table(found: list[Row]) -> str:
    """Which models each study ran (from each report's context)."""
    lines = ["| study | QUICK | DEEPTHINK |", "|---|---|---|"]
    for r in found:
        if r.name in PAIRS:
            lines.append(f"| {r.name} | {r.quick_model} | {r.deepthink_model} |")
    return "\n".join(lines)


def encoder_rows(found: list[Row]) -> str:
    """The Switcher's two encoders on the same (T5) pair: words (the t5 study) and transformer (the encoder study)."""
    by = {r.name: r for r in found}
    if "t5" not in by or "encoder" not in by:
        return "- The encoder comparison needs both the t5 and the encoder study."
    out = []
    for name, label in (("t5", "words"), ("encoder", "transformer")):
        r = by[name]
        state = ("chosen on validation" if r.chosen else "no setting passed on validation; closest shown")
        out.append(f"- **{label}**: `{r.londi}` ({state}), DEEPTHINK on {_num(r.fraction)} of steps, reward retained "
                   f"{_iv(r.retained)}, priced saving {_iv(r.saving, True)}%, training paid over 1,000 episodes "
                   f"{_iv(r.saving_amortised, True)}%.")
    return "\n".join(out)

