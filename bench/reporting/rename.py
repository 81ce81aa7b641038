"""The renaming augmentation measured alone, and the ScienceWorld pair's goals (issue 18): what bench.rename_effect
measures, judged and written here (the report layer), so that REPRODUCE.md renders the same table."""

from __future__ import annotations

import dataclasses

from bench.common.stats import Estimate

ROLES = ("quick_only", "deepthink_only")
VARIANTS = ("with", "without")
SOLVES = {"scienceworld/power-component": 3}
"""Goal: DEEPTHINK-only solves at least this many test variations (of 5)."""
SOLVES_SHARE = {"scienceworld/lifespan-longest-lived-then-shortest-lived": 0.40}
"""Goal: DEEPTHINK-only solves at least this share of the test variations."""
LEAD = 0.20
"""Goal: DEEPTHINK-only's success at least this much above QUICK-only's ..."""
LEAD_TASKS = 3
"""... on at least this many of the ScienceWorld tasks."""


def as_dict(e: Estimate) -> dict:
    return dataclasses.asdict(e)


def goals(rows: dict[str, dict[str, dict]], tasks: list[str]) -> list[dict]:
    """The pair's goals on the measured rows (task -> "<variant>/<role>" -> metrics of the profile's pair, "with"):
    each met or missed with its margin; a goal whose task was not measured is "not measured"."""
    out = []
    for task, need in SOLVES.items():
        if task not in rows:
            out.append({"goal": f"DEEPTHINK-only solves at least {need} test variations of {task}",
                        "verdict": "not measured", "margin": None})
            continue
        solved = rows[task]["with/deepthink_only"]["solved"]
        out.append({"goal": f"DEEPTHINK-only solves at least {need} of {rows[task]['with/deepthink_only']['episodes']}"
                            f" test variations of {task}", "verdict": "met" if solved >= need else "missed",
                    "value": solved, "margin": solved - need})
    for task, share in SOLVES_SHARE.items():
        if task not in rows:
            out.append({"goal": f"DEEPTHINK-only solves at least {share:.0%} of {task}'s test variations",
                        "verdict": "not measured", "margin": None})
            continue
        success = rows[task]["with/deepthink_only"]["success"]["mean"]
        out.append({"goal": f"DEEPTHINK-only solves at least {share:.0%} of {task}'s test variations",
                    "verdict": "met" if success >= share else "missed", "value": success, "margin": success - share})
    leads = {task: rows[task]["with/lead"]["mean"] for task in tasks}
    ahead = sorted(task for task, lead in leads.items() if lead >= LEAD)
    verdict = "met" if len(ahead) >= LEAD_TASKS else ("missed" if len(tasks) >= LEAD_TASKS else "not measured")
    out.append({"goal": f"DEEPTHINK-only at least {100 * LEAD:.0f} points above QUICK-only (success) on at least "
                        f"{LEAD_TASKS} of the ScienceWorld tasks", "verdict": verdict, "value": len(ahead),
                "margin": len(ahead) - LEAD_TASKS, "leads": leads})
    return out


def markdown(rows: dict[str, dict[str, dict]], goal_rows: list[dict], context: dict) -> str:
    lines = ["# The renaming augmentation alone, and the ScienceWorld pair's goals", "",
             "QUICK-only and DEEPTHINK-only of the profile's ScienceWorld pair (cloned with renamed copies of the gold "
             "paths: `with`) and of the same recipes cloned without them (`without`), greedy, on the test variations "
             "of every ScienceWorld task: one episode per variation. Success with a 95% interval over variations; the "
             "differences are paired by variation. Rebuild: `python -m bench.rename_effect --profile "
             f"{context['profile']}`.", "", *(f"- {k}: {v}" for k, v in context.items()), "",
             tables(rows, goal_rows, "##")]
    return "\n".join(lines) + "\n"


def tables(rows: dict[str, dict[str, dict]], goal_rows: list[dict], heading: str = "##") -> str:
    """The measured tables and the goals (what REPRODUCE.md shows too)."""
    lines = ["| task | variations | model | success without | success with | with - without | reward without "
             "| reward with |", "|---|---|---|---|---|---|---|---|"]
    for task, row in rows.items():
        for role in ROLES:
            w, wo = row[f"with/{role}"], row[f"without/{role}"]
            lines.append(f"| {task} | {w['episodes']} | {role} | {Estimate(**wo['success'])} | "
                         f"{Estimate(**w['success'])} | {Estimate(**row[f'{role}/difference'])} | "
                         f"{Estimate(**wo['reward'])} | {Estimate(**w['reward'])} |")
    lines += ["", "DEEPTHINK-only's lead over QUICK-only (success, paired by variation):", "",
              "| task | lead without | lead with |", "|---|---|---|"]
    for task, row in rows.items():
        lines.append(f"| {task} | {Estimate(**row['without/lead'])} | {Estimate(**row['with/lead'])} |")
    lines += ["", f"{heading} Goals (the profile's pair, with renaming)", "", "| goal | verdict | value | margin |",
              "|---|---|---|---|"]
    for g in goal_rows:
        value = g.get("value")
        shown = "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        margin = "-" if g["margin"] is None else (f"{g['margin']:+.3f}" if isinstance(g["margin"], float)
                                                  else f"{g['margin']:+d}")
        lines.append(f"| {g['goal']} | **{g['verdict']}** | {shown} | {margin} |")
    return "\n".join(lines)
