"""The hindsight minimum per task and level, from the search's per-episode results (bench.running.hindsight).

Per episode the fewest DEEPTHINK calls with success is exact, bounded (the node budget ran out: at least `lower`,
at most `upper` where a succeeding sequence was found) or "never" (no switch sequence succeeds: the fewest calls
at its reward, 0, is 0). Summaries keep the bounds apart: a figure over bounded episodes is given as a low and a
high end, never as a guess between them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.stats import seed_mean_ci, seed_ratio_ci
from bench.running.hindsight import AT_LEAST, EXACT, NEVER, Frontier

REACH = (0, 1, 2, 3)
"""The call counts at which the success reachable is reported."""


def frontier_frame(frontiers: Sequence[Frontier], max_steps: int) -> pd.DataFrame:
    """One row per episode: its minimum's bounds in calls and as a DEEPTHINK fraction of its steps (a bounded
    episode's fraction is at least `lower` over the step limit `max_steps`)."""
    rows = []
    for f in frontiers:
        if f.status == NEVER:
            low = high = 0.0  # nothing succeeds: the fewest calls at its reward (none) is none
            low_fraction = high_fraction = 0.0
        elif f.status == EXACT:
            low = high = float(f.min_calls)
            # The shortest success with those calls gives the fraction; where the budget ran out in its level, the
            # success found may be longer than the shortest: its fraction is then a low end only.
            low_fraction = f.min_calls / max(1, f.min_steps)
            high_fraction = low_fraction if f.shortest else float("nan")
        else:
            low = float(f.lower)
            high = float("nan") if f.upper is None else float(f.upper)
            low_fraction = f.lower / max_steps  # at least `lower` calls in an episode no longer than the limit
            high_fraction = float("nan")  # the shortest success with the fewest calls is unknown
        proved = f.min_calls if f.status == EXACT else (f.upper if f.status == AT_LEAST else None)
        rows.append({"env_seed": f.env_seed, "level": f.level, "status": f.status, "calls_low": low,
                     "calls_high": high, "fraction_low": low_fraction, "fraction_high": high_fraction,
                     "deepthink_success": float(f.deepthink_success), "deepthink_reward": f.deepthink_reward,
                     "deepthink_differs": f.deepthink_calls, "nodes": f.nodes, "seconds": f.seconds,
                     "priced_s": sum(c["priced_s"] for c in f.cost.values()) if f.cost else float("nan"),
                     "flops": sum(c["flops"] for c in f.cost.values()) if f.cost else float("nan"),
                     **{f"success_{k}_calls": float(proved is not None and proved <= k) for k in REACH}})
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per level and over all episodes: how many were searched exactly, the minimum in calls per episode and as a
    DEEPTHINK fraction (low and high end; the high end is NaN where any episode's is unknown), the success proved
    reachable with at most k calls (a low end where the search was bounded) next to DEEPTHINK-only's, and the
    search's cost."""
    groups = [("all", frame), *((level, part) for level, part in frame.groupby("level", sort=True))]
    rows = []
    for name, part in groups:
        row = {"level": name, "episodes": len(part), "exact": int((part.status == EXACT).sum()),
               "at_least": int((part.status == AT_LEAST).sum()), "never": int((part.status == NEVER).sum()),
               "calls_low": part.calls_low.mean(), "calls_high": part.calls_high.mean(skipna=False),
               "fraction_low": part.fraction_low.mean(), "fraction_high": part.fraction_high.mean(skipna=False),
               "deepthink_success": part.deepthink_success.mean(),
               "deepthink_differs": part.deepthink_differs.mean()}
        for k in REACH:
            row[f"success_{k}_calls"] = part[f"success_{k}_calls"].mean()
            share = row[f"success_{k}_calls"] / row["deepthink_success"] if row["deepthink_success"] else np.nan
            row[f"share_of_deepthink_{k}"] = share
        row["seconds_per_episode"] = part.seconds.mean()
        row["priced_s_per_episode"] = part.priced_s.mean(skipna=False)
        row["flops_per_episode"] = part.flops.mean(skipna=False)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_markdown(table: pd.DataFrame, task: str) -> str:
    def bounds(low: float, high: float, digits: int) -> str:
        if np.isnan(high):
            return f">= {low:.{digits}f}"
        return f"{low:.{digits}f}" if abs(high - low) < 10 ** -digits else f"{low:.{digits}f} - {high:.{digits}f}"

    header = ("| level | episodes | exact / at least / never | calls per episode | DEEPTHINK fraction | "
              + " | ".join(f"success with <= {k}" for k in REACH)
              + " | DEEPTHINK-only success | search: priced s / episode (wall clock, secondary) |")
    lines = [f"### {task}: the hindsight minimum", "", header, "|" + "---|" * (header.count("|") - 1)]
    for r in table.itertuples():
        reach = " | ".join(f"{getattr(r, f'success_{k}_calls'):.3f} ({getattr(r, f'share_of_deepthink_{k}'):.0%})"
                           for k in REACH)
        lines.append(f"| {r.level} | {r.episodes} | {r.exact} / {r.at_least} / {r.never} | "
                     f"{bounds(r.calls_low, r.calls_high, 2)} | {bounds(r.fraction_low, r.fraction_high, 3)} | "
                     f"{reach} | {r.deepthink_success:.3f} | "
                     f"{r.priced_s_per_episode:.1f} ({r.seconds_per_episode:.1f}) |")
    return "\n".join(lines) + "\n"


def regret_frame(episodes: pd.DataFrame, frontiers: Sequence[Frontier]) -> pd.DataFrame:
    """Each router episode against its episode's frontier (joined on the env seed; episodes the search did not cover
    are left out): `min_calls`, the fewest DEEPTHINK calls with which its reward was reachable (`bounded` where the
    levels searched do not reach it: then at least that many), `calls_above` (its DEEPTHINK calls minus that) and
    `reward_below` (the best reward reachable with its calls minus its reward; a lower bound beyond the levels
    searched)."""
    by_seed = {f.env_seed: f for f in frontiers}
    part = episodes[episodes.env_seed.isin(list(by_seed))].copy()
    minimum, bounded, best = [], [], []
    for seed, reward, calls in zip(part.env_seed, part.reward, part.deepthink_calls, strict=True):
        frontier = by_seed[int(seed)]
        needed = frontier.calls_for(float(reward))
        bounded.append(needed is None)
        minimum.append(float(len(frontier.best) if needed is None else needed))
        best.append(frontier.reward_with(int(calls)))
    part["min_calls"], part["bounded"] = minimum, bounded
    part["calls_above"] = part.deepthink_calls - part.min_calls
    # Past the levels searched the frontier is a low end, but a router's own switch sequence is one of those searched
    # over: the true gap is >= 0, so a negative one is clipped to 0 (a low end all the same).
    part["reward_below"] = np.maximum(np.asarray(best) - part.reward, 0.0)
    return part


def regret_summary(regret: pd.DataFrame) -> pd.DataFrame:
    """Per router: its DEEPTHINK calls per episode against the minimum at its rewards (the ratio, with its two-level
    interval: run seeds, then episodes; `needed_share` is its inverse, the share of its calls the minimum needed),
    the reward it left below the frontier at its calls, and how many of its episodes had only a bound."""
    rows = []
    for router, part in regret.groupby("router", sort=True):
        seeds = part.seed.to_numpy()
        # Bootstrapped as the share of its calls the minimum needed (its calls are rarely 0 in a resample; the
        # minimum often is), then inverted: a share whose interval reaches 0 is a ratio whose interval reaches inf.
        share = seed_ratio_ci(part.min_calls.to_numpy(), part.deepthink_calls.to_numpy(), seeds)
        with np.errstate(divide="ignore"):  # a share of 0 is a ratio of inf, said as such
            ratio = [float(np.divide(1.0, x)) if x == x else float("nan") for x in (share.mean, share.high, share.low)]
        below = seed_mean_ci(part.reward_below.to_numpy(), seeds)
        rows.append({"router": router, "episodes": len(part), "reward": part.reward.mean(),
                     "calls": part.deepthink_calls.mean(), "min_calls": part.min_calls.mean(),
                     "calls_ratio": ratio[0], "calls_ratio_low": ratio[1], "calls_ratio_high": ratio[2],
                     "needed_share": share.mean,
                     "reward_below": below.mean, "reward_below_low": below.low, "reward_below_high": below.high,
                     "bounded": int(part.bounded.sum())})
    return pd.DataFrame(rows)


def _hull(best: Sequence[float]) -> list[tuple[int, float]]:
    """The upper concave hull of an episode's frontier points (k, best[k]), from k = 0."""
    hull: list[tuple[int, float]] = []
    for point in enumerate(best):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (point[0] - x1) <= (point[1] - y1) * (x2 - x1):  # the middle point is on or below
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def task_frontier(frontiers: Sequence[Frontier]) -> list[tuple[float, float]]:
    """The best mean reward reachable with a mean of C DEEPTHINK calls per episode, calls placed in hindsight across
    the episodes: each episode's frontier as its concave hull, the hull segments taken steepest first (exact at the
    returned points, which join the segments). Points (calls per episode, reward per episode) from 0 calls."""
    if not frontiers:
        return []
    n = len(frontiers)
    segments = []
    for f in frontiers:
        hull = _hull(f.best)
        segments += [((y2 - y1) / (x2 - x1), x2 - x1, y2 - y1) for (x1, y1), (x2, y2) in pairwise(hull)
                     if y2 > y1]
    calls, reward = 0.0, sum(f.best[0] for f in frontiers if f.best) / n
    points = [(calls, reward)]
    for _, dk, dr in sorted(segments, key=lambda s: -s[0]):
        calls, reward = calls + dk / n, reward + dr / n
        points.append((calls, reward))
    return points


def plot_frontier(frontiers: Sequence[Frontier], routers: pd.DataFrame, path: Path, title: str) -> Path:
    """Reward against DEEPTHINK calls per episode: the hindsight frontier as a curve, each router as a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not frontiers:
        raise ValueError(f"no searched episodes to plot for {title}")
    points = np.asarray(task_frontier(frontiers))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.plot(points[:, 0], points[:, 1], "-", color="black", label="hindsight frontier (calls placed in hindsight)")
    widest = max(float(routers.calls.max()) if len(routers) else 0.0, float(points[-1, 0]))
    if widest > points[-1, 0]:  # more calls never hurt (they can go unused): flat, a low end past the levels searched
        ax.plot([points[-1, 0], widest], [points[-1, 1]] * 2, "--", color="black",
                label="past the levels searched (at least)")
    for family, part in routers.groupby(routers.router.str.split("[").str[0]):
        ax.scatter(part.calls, part.reward, label=family, s=22)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("DEEPTHINK calls per episode")
    ax.set_ylabel("reward per episode")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- the report's section: the minimum, every router's regret against it, LONDI's verdict, the area per family ------
CALLS_GOAL = 1.5
"""Issue 17's goal: LONDI's DEEPTHINK calls within this multiple of the hindsight minimum at its reward."""
CALLS_AIM = 1.2
"""... and its aim."""


def calls_verdict(ratio: float, low: float, high: float, goal: float = CALLS_GOAL) -> str:
    """`met` where the whole interval of calls over the minimum is within `goal`, `missed` where all of it is above,
    `undecided` where it spans the goal; `n/a` where the ratio was not measured."""
    if not ratio == ratio:
        return "n/a"
    if high <= goal:
        return "met"
    if low > goal:
        return "missed"
    return "undecided"


def frontiers_path(out_dir: Path, stem: str) -> Path:
    return out_dir / f"{stem}_hindsight.jsonl"


def write_frontiers(frontiers: dict[str, Sequence[Frontier]], out_dir: Path, stem: str, pair: str = "") -> Path:
    """The search's result for every test episode the report judges against, one JSON line each (with its task and
    the pair's key, bench.running.hindsight.pair_key): what the hindsight section is rebuilt from."""
    path = frontiers_path(out_dir, stem)
    path.write_text("".join(json.dumps({"task": task, "pair": pair, **f.row()}) + "\n"
                            for task, found in sorted(frontiers.items()) for f in found))
    return path


def read_frontiers(out_dir: Path, stem: str) -> dict[str, list[Frontier]]:
    path = frontiers_path(out_dir, stem)
    found: dict[str, list[Frontier]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            row.pop("pair", None)
            found.setdefault(row.pop("task"), []).append(Frontier.from_row(row))
    return found


def regret_markdown(table: pd.DataFrame, task: str, londi: str | None, how: str = "chosen on validation") -> str:
    lines = [f"### {task}: every router against the minimum", "",
             "Per router on the test episodes: its DEEPTHINK calls per episode, the fewest with which its rewards were "
             "reachable (the minimum at its reward, episode by episode), their ratio with its two-level 95% interval "
             "(run seeds, then episodes), and the reward it left below the frontier at its calls. "
             f"Goal for LONDI ({f'`{londi}`, {how}' if londi else 'no setting ran'}): calls "
             f"within {CALLS_GOAL}x the minimum "
             f"(aim {CALLS_AIM}x); `met` needs the whole interval within it, `missed` the whole interval above.", "",
             "| router | reward | calls / episode | minimum at its reward | calls / minimum [95%] | "
             "reward below the frontier [95%] | episodes with a bound only | within 1.5x |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        ratio = f"{r.calls_ratio:.2f} [{r.calls_ratio_low:.2f}, {r.calls_ratio_high:.2f}]"
        lines.append(f"| {r.router} | {r.reward:.3f} | {r.calls:.2f} | {r.min_calls:.2f} | {ratio} | "
                     f"{r.reward_below:.3f} [{r.reward_below_low:.3f}, {r.reward_below_high:.3f}] | {r.bounded} | "
                     f"{r.within} |")
    return "\n".join(lines) + "\n"


def family_areas(episodes: pd.DataFrame, family_of: Callable[[str], str],
                 include: Callable[[str], bool] = lambda family: True,
                 cost: str = "priced_s") -> pd.DataFrame:
    """The area of each router family (those `include` keeps) on one task's test episodes (bench.reporting.area):
    per family, on the episodes (run seed, env seed) its settings and both references share, `episodes` of them.
    The cost is priced seconds where every episode used is priced, else FLOPs (never the clock); `cost` says which.
    Without QUICK-only and DEEPTHINK-only on the task: no rows."""
    from bench.reporting.area import family_area

    by_router = {router: part.drop_duplicates(["seed", "env_seed"], keep="last").set_index(["seed", "env_seed"])
                 for router, part in episodes.groupby("router", sort=True)}
    references = ("quick_only", "deepthink_only")
    if not set(references) <= set(by_router):
        return pd.DataFrame()
    families: dict[str, list[str]] = {}
    for router in by_router:
        name = family_of(router)
        if name not in references and include(name):
            families.setdefault(name, []).append(router)
    rows = []
    for name, members in sorted(families.items()):
        shared = by_router[references[0]].index
        for router in (*members, references[1]):
            shared = shared.intersection(by_router[router].index)
        shared = shared.sort_values()
        used = [by_router[r].loc[shared] for r in (*members, *references)]
        measure = cost if cost in episodes and all(part[cost].notna().all() for part in used) else "flops"

        def columns(router: str, shared: pd.Index = shared, measure: str = measure) -> tuple[np.ndarray, np.ndarray]:
            part = by_router[router].loc[shared]
            return part[measure].to_numpy(dtype=float), part["reward"].to_numpy(dtype=float)

        seeds = shared.get_level_values("seed").to_numpy()
        area = family_area({m: columns(m) for m in members}, columns(references[0]), columns(references[1]), seeds)
        rows.append({"family": name, "settings": len(members), "episodes": len(shared), "area": area.mean,
                     "area_low": area.low, "area_high": area.high, "cost": measure})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values("area", ascending=False, na_position="last")


def area_markdown(areas: pd.DataFrame, task: str) -> str:
    if areas.empty:
        return ""
    lines = [f"### {task}: one number per router family", "",
             "The area under the family's non-decreasing concave hull of reward against priced cost, both normalised "
             "so that QUICK-only is (0, 0) and DEEPTHINK-only (1, 1) (in the spirit of RouterBench's AIQ): 0.5 is "
             "mixing the two models by episode, above it the family routes better than that; 95% two-level interval. "
             "Ranked by the area; the cost is priced seconds unless the row says FLOPs (an unpriced episode).", "",
             "| family | settings | episodes | cost | area [95%] |", "|---|---|---|---|---|"]
    for r in areas.itertuples():
        lines.append(f"| {r.family} | {r.settings} | {r.episodes} | {'priced s' if r.cost == 'priced_s' else r.cost} "
                     f"| {r.area:.3f} [{r.area_low:.3f}, {r.area_high:.3f}] |")
    return "\n".join(lines) + "\n"


def hindsight_section(episodes: pd.DataFrame, frontiers: dict[str, Sequence[Frontier]], max_steps: dict[str, int],
                      londi: dict[str, str | None], family_of: Callable[[str], str], out_dir: Path,
                      stem: str, include: Callable[[str], bool] = lambda family: True) -> tuple[str, dict, list[Path]]:
    """The report's section for every task with searched episodes: the minimum per level, every router's regret
    against it with LONDI's verdict, the area per family, and the frontier plot. `episodes`: the test episodes of the
    real pair; `londi`: per task, LONDI's setting chosen on validation (None: none passed)."""
    parts, data, paths = [], {}, []
    for task, found in sorted(frontiers.items()):
        here = episodes[episodes.task == task]
        table = summary(frontier_frame(found, max_steps[task]))
        regret = regret_summary(regret_frame(here, found)) if len(here) else pd.DataFrame()
        if len(regret):
            regret["within"] = [calls_verdict(r.calls_ratio, r.calls_ratio_low, r.calls_ratio_high)
                                for r in regret.itertuples()]
        chosen, _, how = (londi.get(task) or "").partition(" (")
        chosen = chosen or None
        how = how.removesuffix(")") or "chosen on validation"
        verdict = None
        if chosen is not None and len(regret) and chosen in set(regret.router):
            r = regret[regret.router == chosen].iloc[0]
            verdict = {"setting": chosen, "how": how, "calls_ratio": r.calls_ratio, "low": r.calls_ratio_low,
                       "high": r.calls_ratio_high, "goal": CALLS_GOAL, "aim": CALLS_AIM,
                       "goal_verdict": calls_verdict(r.calls_ratio, r.calls_ratio_low, r.calls_ratio_high),
                       "aim_verdict": calls_verdict(r.calls_ratio, r.calls_ratio_low, r.calls_ratio_high, CALLS_AIM)}
        areas = family_areas(here, family_of, include)
        text = [summary_markdown(table, task)]
        if verdict is not None:
            text.append(f"LONDI (`{chosen}`, {how}) calls DEEPTHINK {verdict['calls_ratio']:.2f}x "
                        f"[{verdict['low']:.2f}, {verdict['high']:.2f}] as often as the minimum at its reward: "
                        f"within {CALLS_GOAL}x **{verdict['goal_verdict']}**, within {CALLS_AIM}x "
                        f"**{verdict['aim_verdict']}**.\n")
        if len(regret):
            text.append(regret_markdown(regret, task, chosen, how))
        text.append(area_markdown(areas, task))
        if len(regret):
            slug = task.replace("/", "_")
            points = regret[["router", "calls", "reward"]]
            paths.append(plot_frontier(found, points, out_dir / f"{stem}_hindsight_{slug}.png",
                                       f"{task}: reward against DEEPTHINK calls, and the hindsight frontier"))
            text.append(f"![frontier]({paths[-1].name})\n")
        parts.append("\n".join(filter(None, text)))
        data[task] = {"summary": table.to_dict(orient="records"), "regret": regret.to_dict(orient="records"),
                      "londi": verdict, "areas": areas.to_dict(orient="records"),
                      "frontier": [list(p) for p in task_frontier(found)]}
    if not parts:
        return "", {}, []
    head = ("## The physical limit: the fewest DEEPTHINK calls that could work\n\n"
            "Both models act by argmax and BabyAI-Text is deterministic for a seed, so an episode's trajectory is a "
            "function of where DEEPTHINK acts. The hindsight search (bench/running/hindsight.py) finds, per test "
            "episode, the fewest DEEPTHINK calls with which it succeeds and the best reward reachable with k calls "
            "(exact, or bounds where its node budget ran out). A router cannot know in advance what the search knows "
            "in hindsight: the minimum is a floor, not a target.\n\n")
    return head + "\n".join(parts), data, paths
