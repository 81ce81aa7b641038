"""The report: read a sweep's runs back from MLflow and write tables and plots to results/.

Everything in the table is recomputed from the per-episode metrics stored in MLflow (not from
in-memory results), so a report can be rebuilt later from the tracking store alone. Episodes
of all seeds of a (task, router) cell are pooled for the mean and its 95% bootstrap interval.
Only FINISHED runs count: a failed or interrupted run logged only part of its block of episodes.
Savings are against DEEPTHINK-only on the same tasks and episodes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.stats import Estimate, fmt, seed_ci, seed_diff_ci, seed_gap_ci, seed_mean_ci, seed_ratio_ci
from bench.common.tracking import DEFAULT_EXPERIMENT, EPISODE_PREFIX, finished_runs, get_client
from bench.reporting.learning import (
    CURVE_COLUMNS,
    curves_frame,
    flatness,
    flatness_markdown,
    plot_curves,
    read_curves,
    write_curves,
)
from bench.reporting.pooled import pooled_londi

EPISODE_METRICS = (
    "env_seed", "reward", "success", "steps", "deepthink_calls", "deepthink_fraction", "deepthink_acted", "quick_calls",
    "flops", "flops_quick", "flops_deepthink", "flops_router",
    "priced_s", "priced_s_quick", "priced_s_deepthink", "priced_s_router", "priced_b1_s",
    "projected_gpu_s", "projected_gpu_b1_s",
    "compute_s", "compute_s_quick", "compute_s_deepthink", "compute_s_router",
)
COSTS = {
    "priced_s": "priced seconds (calibrated per call, at the call's batch)",
    "priced_b1_s": "priced seconds, every decision as a batch of 1",
    "flops": "analytic FLOPs",
    "projected_gpu_s": "projected GPU-seconds at the paper's model sizes (H200, Flan-T5 shapes)",
    "compute_s": "wall-clock seconds inside model calls (secondary: this machine's clock moves with its load)",
}
"""Every cost a saving is computed on; verdicts use VERDICT_COST (and FLOPs beside it), never the wall clock."""
VERDICT_COST = "priced_s"
TABLE_METRICS = ("reward", "success", "steps", "deepthink_calls", "deepthink_fraction", "deepthink_acted_fraction",
                 "flops", "priced_s", "compute_s")
REFERENCE = "deepthink_only"
ABLATION = "@quick=random"
"""Suffix of a setting run with QUICK replaced by a random policy (the paper's ablation): not in the verdicts."""
SAMPLED = "@sampled"
"""Marks a setting whose models sample their actions (`quick_only@sampled[t=0.3]`): a control, its own family."""
NO_CUES = "cues=false"
BEST_EFFORT = " (the best reward retained on validation, where no LONDI setting kept the reward)"
FREE_CALLS = re.compile(r"[\[,]c=0(?:\.0*)?[,\]]")
"""LONDI-SAC at c = 0 (DEEPTHINK calls free to the Switcher): a control, a family of its own."""
AMORTISED = (100, 1000, 10000)
"""Deployment episodes a learned router's training is spread over; the verdict uses VERDICT_EPISODES."""
VERDICT_EPISODES = 1000


def finished_eval_runs(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                       where: str = "") -> list:
    """The sweep's FINISHED evaluation runs (MLflow Run objects), both splits."""
    return finished_runs(sweep, "eval", tracking_uri, experiment, where)


def eval_runs(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    runs = finished_eval_runs(sweep, tracking_uri, experiment)
    rows = [{"run_id": r.info.run_id, "status": r.info.status, **r.data.params,
             **{f"metric.{k}": v for k, v in r.data.metrics.items()}} for r in runs]
    return pd.DataFrame(rows)


EPISODE_COLUMNS = ("split", "task", "router", "router_class", "seed", "episode")


def episodes_frame(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """One row per logged episode of the sweep: split (test or valid), task, router, seed, episode and its metrics.
    A metric a run did not log (an older run's priced cost) is NaN."""
    client = get_client(tracking_uri)
    runs = eval_runs(sweep, tracking_uri, experiment)
    if runs.empty:
        raise ValueError(f"no finished evaluation runs with tag londi.sweep={sweep!r} in experiment "
                         f"{experiment!r} at {client.tracking_uri}: check the sweep name and the tracking URI")
    rows: dict[tuple[str, int], dict] = {}
    for run in runs.to_dict(orient="records"):
        split = run.get("split") if isinstance(run.get("split"), str) else "test"
        for metric in EPISODE_METRICS:
            for point in client.get_metric_history(run["run_id"], EPISODE_PREFIX + metric):
                row = rows.setdefault((run["run_id"], point.step), {
                    "run_id": run["run_id"], "split": split, "task": run["task"], "router": run["exp_name"],
                    "router_class": run["router"], "seed": int(run["seed"]), "episode": point.step,
                })
                row[metric] = point.value
    frame = pd.DataFrame(list(rows.values()))
    for metric in EPISODE_METRICS:
        if metric not in frame:
            frame[metric] = float("nan")
    return frame


TRAINING_COLUMNS = ("task", "router", "seed", "train_episodes", "train_priced_s", "train_flops", "train_compute_s",
                    "train_deepthink_calls")


def training_frame(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """One row per trained router (task, setting, run seed): what its training cost, its episodes' model calls and
    its own updates together (priced, FLOPs, and the wall clock as a secondary figure)."""
    rows = []
    for run in finished_runs(sweep, "router_train", tracking_uri, experiment):
        m, p = run.data.metrics, run.data.params

        # A router that makes no updates of its own (the cascade calibrating its threshold) logs no update bill:
        # its training costs its episodes' model calls alone. One that does and was not priced stays NaN.
        updates = 0.0 if "router_update_flops" not in m else float("nan")

        def total(name: str, update: str, search: str = "", m: dict = m, updates: float = updates) -> float:
            # A router that learns from the hindsight search also pays for the search on its training episodes.
            return float(m.get(name, float("nan")) + m.get(update, updates) + m.get(search, 0.0))

        rows.append({"task": p["task"], "router": p["exp_name"], "seed": int(p["seed"]),
                     "train_episodes": int(p["train_episodes"]),
                     "train_priced_s": total("total_priced_s", "router_update_priced_s", "router_search_priced_s"),
                     "train_flops": total("total_flops", "router_update_flops", "router_search_flops"),
                     "train_compute_s": total("total_compute_s", "router_update_s"),
                     "train_deepthink_calls": float(m.get("total_deepthink_calls", float("nan")))})
    return pd.DataFrame(rows, columns=list(TRAINING_COLUMNS))


@dataclass
class Cell:
    task: str
    router: str
    episodes: int
    seeds: int
    values: dict[str, Estimate]
    per_seed: dict[int, float] = field(default_factory=dict)
    """Mean reward per run seed."""
    training: dict[str, float] = field(default_factory=dict)
    """A learned router's training bill: mean per run seed of its training's priced seconds, FLOPs, episodes."""


QUICK_REFERENCE = "quick_only"


def real_pair(episodes: pd.DataFrame) -> pd.DataFrame:
    """The episodes played by the real QUICK and DEEPTHINK (not the random-QUICK ablation's)."""
    return episodes[~episodes.router.str.endswith(ABLATION)]


EPISODE_KEY = ["seed", "env_seed"]
"""An episode is its run seed and its environment seed: runs of different seeds may share environment seeds (a
ScienceWorld task has a few test variations that every seed plays), and each of those is an episode of its own."""


def by_episode(frame: pd.DataFrame) -> pd.DataFrame:
    """One router's episodes indexed by (run seed, env seed), for pairing with another router's same episodes."""
    return frame.drop_duplicates(EPISODE_KEY).set_index(EPISODE_KEY)


def _seeds(frame: pd.DataFrame) -> np.ndarray:
    return frame.index.get_level_values("seed").to_numpy() if "seed" not in frame else frame["seed"].to_numpy()


def _has(frame: pd.DataFrame, metric: str) -> bool:
    return metric in frame and bool(frame[metric].notna().all()) and len(frame) > 0


def _saving(mine: pd.DataFrame, theirs: pd.DataFrame, cost: str) -> Estimate:
    ratio = seed_ratio_ci(mine[cost].to_numpy(), theirs[cost].to_numpy(), _seeds(mine))
    return Estimate(1 - ratio.mean, 1 - ratio.high, 1 - ratio.low, ratio.n, ratio.seeds)


def amortised_saving(mine: pd.DataFrame, theirs: pd.DataFrame, train_cost: dict[int, float], episodes: int,
                     cost: str = VERDICT_COST) -> Estimate:
    """1 - (a router's cost per episode + its training spread over `episodes` deployment episodes) / the reference's
    cost per episode, on the same episodes; each run seed carries its own Switcher's training bill."""
    seeds = _seeds(mine)
    train = np.array([train_cost[int(s)] for s in seeds])

    def statistic(m: dict[str, np.ndarray]) -> np.ndarray:
        return 1 - (m["c"] + m["t"] / episodes) / m["r"]

    return seed_ci(statistic, {"c": mine[cost].to_numpy(), "r": theirs[cost].to_numpy(), "t": train}, seeds)


def break_even(mine: pd.DataFrame, theirs: pd.DataFrame, train_cost: dict[int, float],
               cost: str = VERDICT_COST) -> float:
    """Deployment episodes after which a learned router's training has paid for itself against the reference
    (inf when it costs at least as much per episode)."""
    per_episode = theirs[cost].mean() - mine[cost].mean()
    spent = float(np.mean([train_cost[int(s)] for s in _seeds(mine)]))
    return spent / per_episode if per_episode > 0 else float("inf")


def summarize(episodes: pd.DataFrame, training: pd.DataFrame | None = None, split: str = "test") -> list[Cell]:
    """Mean and 95% two-level interval (run seeds, then episodes) per (task, router) of every table metric on one
    split, plus savings against DEEPTHINK-only on the same episodes.

    `deepthink_fraction` is pooled (all DEEPTHINK calls / all steps), as DESIGN.md defines it. Savings,
    `reward_retained` and `gap_recovered` pair each episode with the reference's episode of the same run seed and
    env seed, so they compare the same episodes only. A learned router with a training record also gets its
    saving with the training amortised over AMORTISED deployment episodes, and its break-even.
    """
    if "split" in episodes:
        episodes = episodes[episodes["split"].fillna("test") == split]
    cells = []
    for (task, router), group in episodes.groupby(["task", "router"], sort=True):
        seeds = group["seed"].to_numpy()
        values = {"reward": seed_mean_ci(group["reward"].to_numpy(), seeds, bounded=True),
                  "success": seed_mean_ci(group["success"].to_numpy(), seeds, bounded=True)}
        for metric in ("steps", "deepthink_calls", *COSTS):
            if _has(group, metric):
                values[metric] = seed_mean_ci(group[metric].to_numpy(), seeds)
        # Pooled: all DEEPTHINK calls (or steps where DEEPTHINK's action was taken) over all steps. They
        # differ for a router that consults DEEPTHINK without always following it (follow_deepthink_where_they_differ).
        values["deepthink_fraction"] = seed_ratio_ci(group["deepthink_calls"].to_numpy(), group["steps"].to_numpy(),
                                                     seeds)
        values["deepthink_acted_fraction"] = seed_ratio_ci(group["deepthink_acted"].to_numpy(),
                                                           group["steps"].to_numpy(), seeds)
        per_seed = {int(s): float(r) for s, r in group.groupby("seed")["reward"].mean().items()}
        bill: dict[str, float] = {}
        # References are the real pair's runs: an ablation's QUICK-only (random QUICK) is no floor.
        on_task = real_pair(episodes[episodes.task == task])
        reference = on_task[on_task.router_class == REFERENCE]
        if len(reference) and router not in set(reference.router):
            mine, theirs = by_episode(group), by_episode(reference)
            shared = mine.index.intersection(theirs.index).sort_values()
            if len(shared):
                mine, theirs = mine.loc[shared], theirs.loc[shared]
                for cost in COSTS:
                    if _has(mine, cost) and _has(theirs, cost):
                        values[f"saving_{cost}"] = _saving(mine, theirs, cost)
                values["reward_retained"] = seed_ratio_ci(mine["reward"].to_numpy(), theirs["reward"].to_numpy(),
                                                          _seeds(mine), bounded=True)
                quick = on_task[on_task.router_class == QUICK_REFERENCE]
                if len(quick) and router not in set(quick.router):
                    floor = by_episode(quick)
                    common = shared.intersection(floor.index).sort_values()
                    if len(common):
                        values["gap_recovered"] = seed_gap_ci(
                            mine.loc[common, "reward"].to_numpy(), floor.loc[common, "reward"].to_numpy(),
                            theirs.loc[common, "reward"].to_numpy(), common.get_level_values("seed").to_numpy())
                trained = (training[(training.task == task) & (training.router == router)]
                           if training is not None and len(training) else None)
                if trained is not None and len(trained) and _has(mine, VERDICT_COST) \
                        and set(_seeds(mine).tolist()) <= set(trained.seed.tolist()) \
                        and bool(trained["train_priced_s"].notna().all()):
                    spent = {int(s): float(v) for s, v in zip(trained.seed, trained.train_priced_s, strict=True)}
                    for n in AMORTISED:
                        values[f"saving_amortised_{n}"] = amortised_saving(mine, theirs, spent, n)
                    bill = {"train_priced_s": float(trained.train_priced_s.mean()),
                            "train_flops": float(trained.train_flops.mean()),
                            "train_compute_s": float(trained.train_compute_s.mean()),
                            "train_episodes": float(trained.train_episodes.mean()),
                            "break_even_episodes": break_even(mine, theirs, spent)}
        cells.append(Cell(task, router, len(group), group["seed"].nunique(), values, per_seed, bill))
    return cells


def model_costs(episodes: pd.DataFrame) -> pd.DataFrame:
    """FLOPs and milliseconds per decision of each model, over every call the sweep made with the real pair."""
    episodes = real_pair(episodes)
    rows = []
    for role in ("quick", "deepthink"):
        calls = episodes[f"{role}_calls"].sum()
        if calls:
            priced = episodes.get(f"priced_s_{role}")
            rows.append({"model": role, "decisions": int(calls),
                         "flops_per_decision": episodes[f"flops_{role}"].sum() / calls,
                         "priced_ms_per_decision": float("nan") if priced is None or priced.isna().any()
                         else 1000 * priced.sum() / calls,
                         "ms_per_decision": 1000 * episodes[f"compute_s_{role}"].sum() / calls})
    return pd.DataFrame(rows)


def costs_markdown(costs: pd.DataFrame) -> str:
    if costs.empty:
        return "(no model calls)"
    lines = ["| model | decisions | FLOPs per decision | priced ms per decision | wall ms per decision (secondary) |",
             "|---|---|---|---|---|"]
    for row in costs.itertuples():
        lines.append(f"| {row.model} | {row.decisions} | {row.flops_per_decision:.4g} | "
                     f"{fmt(row.priced_ms_per_decision)} | {row.ms_per_decision:.3f} |")
    return "\n".join(lines)


def plot_cost_reward(cells: list[Cell], path: Path) -> Path:
    """Reward against FLOPs per episode (top) and against the fraction of steps DEEPTHINK acted (bottom),
    one panel per task, one point (with 95% intervals) per router setting, a router's settings joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    tasks = sorted({c.task for c in cells})
    families = sorted({family(c.router) for c in cells})
    colors = {f: plt.get_cmap("tab10" if len(families) <= 10 else "tab20")(i % 20) for i, f in enumerate(families)}
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 7.2), squeeze=False)
    for column, task in enumerate(tasks):
        for row, (metric, label) in enumerate((("flops", "FLOPs per episode"),
                                               ("deepthink_acted_fraction", "DEEPTHINK acted (fraction of steps)"))):
            ax = axes[row][column]
            for name in families:
                # A router's settings (a sweep of c, budgets, p, thresholds) form one curve, in order of cost.
                group = sorted((c for c in cells if c.task == task and family(c.router) == name and metric in c.values),
                               key=lambda c: c.values[metric].mean)
                if not group:
                    continue
                xs = [c.values[metric] for c in group]
                ys = [c.values["reward"] for c in group]
                # max(0, ...): a degenerate interval (every episode alike) can sit a rounding error off its mean.
                ax.errorbar([x.mean for x in xs], [y.mean for y in ys],
                            xerr=[[max(0.0, x.mean - x.low) for x in xs], [max(0.0, x.high - x.mean) for x in xs]],
                            yerr=[[max(0.0, y.mean - y.low) for y in ys], [max(0.0, y.high - y.mean) for y in ys]],
                            fmt="o-" if len(group) > 1 else "o", capsize=2, markersize=4, linewidth=1,
                            color=colors[name], label=name)
                for c, x, y in zip(group, xs, ys, strict=True):
                    base = c.router.removesuffix(ABLATION)
                    setting = base[len(base.split("[")[0]):].strip("[]")
                    if setting:
                        ax.annotate(setting, (x.mean, y.mean), fontsize=5, xytext=(2, 2),
                                    textcoords="offset points", color=colors[name])
            if metric == "flops":
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_title(task)
            ax.set_xlabel(label)
            ax.set_ylabel("reward")
            ax.grid(alpha=0.3)
    handles = {text: handle for ax in axes.flat for handle, text in zip(*ax.get_legend_handles_labels(), strict=True)}
    columns = min(len(handles), 2 * len(tasks), 5)  # about two legend entries fit under each panel
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=columns, fontsize=8)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(handles) - 1) // columns), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def where_deepthink(results: list) -> tuple[dict[int, tuple[int, int]], dict[str, tuple[int, int]]]:
    """From episode traces: per step index and per room (where the env names one), (DEEPTHINK calls, steps)."""
    by_step: dict[int, list[int]] = {}
    by_room: dict[str, list[int]] = {}
    for result in results:
        for entry in result.trace:
            for table, key in ((by_step, entry["step"]), (by_room, entry.get("room"))):
                if key is None or key == "":
                    continue
                counts = table.setdefault(key, [0, 0])
                counts[0] += entry["model"] == "deepthink"
                counts[1] += 1
    return ({k: tuple(v) for k, v in sorted(by_step.items())}, {k: tuple(v) for k, v in sorted(by_room.items())})


def write_where_table(results_by_task: dict[str, dict[str, list]], path: Path) -> Path:
    """The numbers behind the picture of where LONDI calls DEEPTHINK: per task, setting, and step of the episode or
    room, the DEEPTHINK calls, the steps taken there, and the episodes."""
    rows = []
    for task, by_setting in sorted(results_by_task.items()):
        for setting, results in sorted(by_setting.items()):
            for by, table in zip(("step", "room"), where_deepthink(results), strict=True):
                rows += [{"task": task, "router": setting, "by": by, "where": key, "deepthink_calls": calls,
                          "steps": steps, "episodes": len(results)} for key, (calls, steps) in table.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["task", "router", "by", "where", "deepthink_calls", "steps", "episodes"]).to_csv(
        path, index=False)
    return path


def plot_where_deepthink(results_by_task: dict[str, dict[str, list]], path: Path) -> Path:
    """The paper's picture of where the Switcher calls DEEPTHINK, one row per task: per setting (LONDI-B's
    budgets, LONDI-SAC's costs), the share of episodes in which DEEPTHINK acted at each step of the task (left)
    and its share of the steps spent in each room (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results_by_task)
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.6 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        by_setting = results_by_task[task]
        settings = sorted(by_setting)
        width = 0.8 / max(1, len(settings))
        rooms = sorted({room for results in by_setting.values() for room in where_deepthink(results)[1]})
        left, right = axes[row]
        for i, setting in enumerate(settings):
            results = by_setting[setting]
            by_step, by_room = where_deepthink(results)
            steps = list(by_step)
            offset = (i - (len(settings) - 1) / 2) * width
            left.bar([s + offset for s in steps], [by_step[s][0] / len(results) for s in steps], width=width,
                     label=setting)
            right.bar([r + offset for r in range(len(rooms))],
                      [by_room[room][0] / max(1, by_room[room][1]) if room in by_room else 0 for room in rooms],
                      width=width, label=setting)
        left.set_title(task, fontsize=9, loc="left")
        left.set_xlabel("step of the episode")
        left.set_ylabel("episodes with a DEEPTHINK call there")
        right.set_xticks(range(len(rooms)), rooms, rotation=30, ha="right", fontsize=8)
        right.set_ylabel("DEEPTHINK share of steps in the room")
        for ax in (left, right):
            ax.grid(alpha=0.3, axis="y")
        left.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table_markdown(cells: list[Cell]) -> str:
    """The main table: reward, DEEPTHINK use and costs per setting; savings against DEEPTHINK-only."""
    columns = [m for m in TABLE_METRICS if any(m in c.values for c in cells)]
    for extra in ("saving_priced_s", "saving_flops", "saving_compute_s", "reward_retained", "gap_recovered"):
        if any(extra in c.values for c in cells):
            columns.append(extra)
    header = "| task | router | episodes (seeds) | " + " | ".join(columns) + " |"
    lines = [header, "|" + "---|" * (3 + len(columns))]
    for c in cells:
        shown = [str(c.values[m]) if m in c.values else "" for m in columns]
        lines.append(f"| {c.task} | {c.router} | {c.episodes} ({c.seeds}) | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def costs_table_markdown(cells: list[Cell]) -> str:
    """Every saving against DEEPTHINK-only, one column per cost measure, and a learned router's training bill."""
    columns = [f"saving_{cost}" for cost in COSTS if any(f"saving_{cost}" in c.values for c in cells)]
    amortised = [f"saving_amortised_{n}" for n in AMORTISED if any(f"saving_amortised_{n}" in c.values for c in cells)]
    if not columns:
        return ""
    lines = ["| task | router | " + " | ".join(columns + amortised) + " | training (priced s per seed) | break-even "
             "(episodes) |", "|" + "---|" * (4 + len(columns) + len(amortised))]
    for c in cells:
        if not any(m in c.values for m in columns):
            continue
        shown = [str(c.values[m]) if m in c.values else "" for m in columns + amortised]
        bill = c.training
        lines.append(f"| {c.task} | {c.router} | " + " | ".join(shown) + " | "
                     + (f"{fmt(bill['train_priced_s'])} | {fmt(bill['break_even_episodes'])}" if bill else " | ")
                     + " |")
    return "\n".join(lines)


def per_seed_markdown(cells: list[Cell]) -> str:
    """Mean reward of every run seed: what the seed-level intervals resample."""
    multi = [c for c in cells if len(c.per_seed) > 1]
    if not multi:
        return ""
    seeds = sorted({s for c in multi for s in c.per_seed})
    lines = ["| task | router | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (2 + len(seeds))]
    for c in multi:
        lines.append(f"| {c.task} | {c.router} | "
                     + " | ".join(fmt(c.per_seed[s]) if s in c.per_seed else "" for s in seeds) + " |")
    return "\n".join(lines)


PAPER_SAVING = 0.30
"""LONDI's claim: up to 30% less GPU at the same task performance."""
AIM_SAVING = 0.50
"""This project's aim: at least 50% less priced compute, training amortised over VERDICT_EPISODES episodes."""
RETAINED = 0.95
"""'The same performance': the lower 95% bound of reward retained against DEEPTHINK-only is at least this."""
REFERENCES = ("deepthink_only", "quick_only", "follow_deepthink_where_they_differ")
"""Settings that are references, not deployable routers: never chosen."""
LONDI_PREFIX = "londi"
MATCH_TOLERANCE = 0.02
"""Two settings are 'at the same DEEPTHINK fraction' within this much."""
MEETS_LONDI = ("swiftsage", "confidence_cascade", "stuck_rule", "hindsight_supervised", "londi_sac[cues=false]",
               "quick_only@sampled", "deepthink_only@sampled")
"""Families each of whose settings meets the LONDI setting nearest its DEEPTHINK fraction in the head-to-head."""


def is_londi(router: str) -> bool:
    """LONDI as configured (its cues on, calls priced), not its ablation or its controls (no cues, c = 0)."""
    return router.startswith(LONDI_PREFIX) and not router.endswith(ABLATION) and family(router) in ("londi_sac",
                                                                                                    "londi_b")


def family(router: str) -> str:
    """The router a setting belongs to: `londi_sac[c=0.1]` -> londi_sac (ablation runs form their own, and so do
    LONDI without its cues, `londi_sac[cues=false]`, and the sampled single models, `quick_only@sampled`)."""
    name = router.removesuffix(ABLATION).split("[")[0]
    if NO_CUES in router.lower():
        name += f"[{NO_CUES}]"
    elif name == "londi_sac" and FREE_CALLS.search(router):  # LONDI-B at c = 0 is LONDI-B: its budget limits it
        name += "[c=0]"
    return name + (ABLATION if router.endswith(ABLATION) else "")


def deployable(router: str) -> bool:
    return not router.endswith(ABLATION) and family(router) not in REFERENCES


def _cost_saving(cell: Cell) -> Estimate | None:
    """The saving a verdict uses: priced seconds where the sweep was priced, else FLOPs (never the clock)."""
    return cell.values.get(f"saving_{VERDICT_COST}") or cell.values.get("saving_flops")


def select_settings(valid_cells: list[Cell]) -> list[dict]:
    """Per task and router family, the setting chosen on the validation episodes: the largest saving (priced) among
    the settings whose lower bound of reward retained is at least RETAINED there; none when no setting passes.
    Then, per task, the deployable family and the LONDI family chosen the same way (on validation)."""
    rows = []
    for task in sorted({c.task for c in valid_cells}):
        here = [c for c in valid_cells if c.task == task and deployable(c.router) and "reward_retained" in c.values
                and _cost_saving(c) is not None]
        for name in sorted({family(c.router) for c in here}):
            settings = [c for c in here if family(c.router) == name]
            passed = [c for c in settings if c.values["reward_retained"].low >= RETAINED]
            chosen = max(passed, key=lambda c: _cost_saving(c).mean) if passed else None
            rows.append({"task": task, "family": name, "chosen": chosen.router if chosen else None,
                         "validation": {c.router: {"saving": _cost_saving(c).__dict__,
                                                   "reward_retained": c.values["reward_retained"].__dict__}
                                        for c in settings}})
    return rows


def _chosen(selection: list[dict], task: str, families: set[str] | None = None) -> str | None:
    """Of the families' chosen settings on `task`, the one with the largest validation saving."""
    rows = [r for r in selection if r["task"] == task and r["chosen"] and (families is None or r["family"] in families)]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["validation"][r["chosen"]]["saving"]["mean"])
    return best["chosen"]


def verdicts(cells: list[Cell], selection: list[dict]) -> list[dict]:
    """Per task with validation episodes: each family's chosen setting on the test episodes, whether it keeps
    DEEPTHINK-only's reward (the lower bound of reward retained >= RETAINED), its savings, and the two claims: the
    paper's (>= PAPER_SAVING less at the same reward) and this project's aim (>= AIM_SAVING less priced compute
    with the training amortised over VERDICT_EPISODES episodes), each with its margins."""
    rows = []
    by_key = {(c.task, c.router): c for c in cells}
    for task in sorted({r["task"] for r in selection}):
        families = []
        for row in (r for r in selection if r["task"] == task):
            cell = by_key.get((task, row["chosen"])) if row["chosen"] else None
            families.append({"family": row["family"], "chosen": row["chosen"], **_judged(cell)})
        londi_families = {r["family"] for r in selection if r["task"] == task and is_londi(r["family"])}
        londi = _chosen(selection, task, londi_families)
        best = _chosen(selection, task)
        rows.append({"task": task, "families": families,
                     "londi": {"chosen": londi, "families_run": sorted(londi_families),
                               **_judged(by_key.get((task, londi)) if londi else None)},
                     "best": {"chosen": best, **_judged(by_key.get((task, best)) if best else None)}})
    return rows


def _judged(cell: Cell | None) -> dict:
    """A chosen setting's test numbers and what they say (None entries: no setting, or not measured)."""
    if cell is None or "reward_retained" not in cell.values:
        return {"non_inferior": None, "paper_claim": None, "aim": None}
    retained = cell.values["reward_retained"]
    saving = _cost_saving(cell)
    amortised = cell.values.get(f"saving_amortised_{VERDICT_EPISODES}")
    # A router that learns nothing has no training to amortise: its saving is already the deployed one.
    deployed = amortised if amortised is not None else (saving if not cell.training else None)
    non_inferior = retained.low >= RETAINED
    out = {"reward_retained": retained.__dict__, "saving": saving.__dict__ if saving else None,
           "saving_cost": VERDICT_COST if f"saving_{VERDICT_COST}" in cell.values else "flops",
           "saving_flops": cell.values["saving_flops"].__dict__ if "saving_flops" in cell.values else None,
           "saving_compute_s": cell.values["saving_compute_s"].__dict__ if "saving_compute_s" in cell.values else None,
           "saving_amortised": deployed.__dict__ if deployed else None,
           "deepthink_acted_fraction": cell.values["deepthink_acted_fraction"].mean,
           "non_inferior": non_inferior, "retained_margin": retained.low - RETAINED}
    out["paper_claim"] = bool(non_inferior and saving is not None and saving.mean >= PAPER_SAVING)
    out["paper_margin"] = None if saving is None else saving.mean - PAPER_SAVING
    out["aim"] = bool(non_inferior and deployed is not None and deployed.mean >= AIM_SAVING)
    out["aim_margin"] = None if deployed is None else deployed.mean - AIM_SAVING
    return out


def _pct(e: dict | None) -> str:
    if not e:
        return "n/a"
    return f"{100 * e['mean']:.1f}% [{100 * e['low']:.1f}, {100 * e['high']:.1f}]"


def _points(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:+.1f} points"


def claim_sentences(row: dict) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) for a task's verdict row: the sentences REPRODUCE.md and the report print. Each
    verdict is computed here from the data and says "no" when the data says no."""
    task, londi, best = row["task"], row["londi"], row["best"]
    out = []
    if not londi["families_run"]:
        return [(f"LONDI keeps DEEPTHINK-only's reward on {task} with at least {PAPER_SAVING:.0%} less compute",
                 "not run", "no LONDI setting ran on this task")]
    if londi["chosen"] is None:
        evidence = (f"no LONDI setting kept a lower bound of reward retained >= {RETAINED} on the validation "
                    f"episodes, so none is put forward")
        out.append((f"LONDI keeps DEEPTHINK-only's reward on {task} with at least {PAPER_SAVING:.0%} less compute "
                    f"(the paper's claim)", "no", evidence))
        out.append((f"LONDI saves at least {AIM_SAVING:.0%} of priced compute on {task}, training amortised over "
                    f"{VERDICT_EPISODES:,} episodes, at the same reward (our aim)", "no", evidence))
        return out
    retained = londi["reward_retained"]
    kept = (f"reward retained {retained['mean']:.3f}, lower bound {retained['low']:.3f} "
            f"({_points(londi['retained_margin'])} against {RETAINED})")
    if retained.get("seeds", 0) < 2:
        kept += "; one run seed: the interval is over episodes only, conditional on that one trained Switcher"
    out.append((f"LONDI keeps DEEPTHINK-only's reward on {task} with at least {PAPER_SAVING:.0%} less compute "
                f"(the paper's claim)", "yes" if londi["paper_claim"] else "no",
                f"`{londi['chosen']}` (chosen on validation): {kept}; {_pct(londi['saving'])} less "
                f"{londi['saving_cost'].replace('_s', ' seconds')} ({_points(londi['paper_margin'])} against "
                f"{PAPER_SAVING:.0%}); FLOPs {_pct(londi['saving_flops'])}; wall clock (secondary) "
                f"{_pct(londi['saving_compute_s'])}"))
    out.append((f"LONDI saves at least {AIM_SAVING:.0%} of priced compute on {task}, training amortised over "
                f"{VERDICT_EPISODES:,} episodes, at the same reward (our aim)", "yes" if londi["aim"] else "no",
                f"`{londi['chosen']}`: {_pct(londi['saving_amortised'])} amortised "
                f"({_points(londi['aim_margin'])} against {AIM_SAVING:.0%}); {kept}"))
    if best["chosen"] is not None and best["chosen"] != londi["chosen"]:
        out.append((f"LONDI is the best deployable router on {task} (chosen on validation)", "no",
                    f"`{best['chosen']}` has the larger validation saving: {_pct(best['saving'])} on test, "
                    f"reward retained lower bound {best['reward_retained']['low']:.3f}"))
    elif best["chosen"] is not None:
        held = bool(londi["non_inferior"])
        out.append((f"LONDI is the best deployable router on {task} (chosen on validation)", "yes" if held else "no",
                    "no other family's chosen setting has a larger validation saving"
                    + ("" if held else ", but on the test episodes it does not keep the reward")))
    return out


def verdict_markdown(rows: list[dict]) -> str:
    if not rows:
        return ("## Verdict\n\nNo validation episodes were run, so no setting was chosen and there is no verdict "
                "(run with validation episodes: --valid-episodes N).")
    lines = [f"## Verdict: non-inferiority at {RETAINED:.0%} of DEEPTHINK-only's reward, settings chosen on "
             f"validation episodes", "",
             f"Each router family's setting is chosen on the validation episodes (the largest {VERDICT_COST} saving "
             f"whose lower 95% bound of reward retained is >= {RETAINED}) and reported on the test episodes. "
             f"Savings are priced (calibrated per-call costs); FLOPs beside them; the wall clock is secondary.", "",
             "| task | family | chosen on validation | reward retained (test) | non-inferior | saving (test) | "
             "saving, training amortised over 1,000 |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        for f in row["families"]:
            if f["chosen"] is None:
                lines.append(f"| {row['task']} | {f['family']} | none passed | | | | |")
                continue
            lines.append(f"| {row['task']} | {f['family']} | {f['chosen']} | "
                         f"{Estimate(**f['reward_retained']) if f['reward_retained'] else 'n/a'} | "
                         f"{'yes' if f['non_inferior'] else 'no'} | {_pct(f['saving'])} | "
                         f"{_pct(f['saving_amortised'])} |")
    lines += ["", "| claim | verdict | evidence |", "|---|---|---|"]
    for row in rows:
        for claim, verdict, evidence in claim_sentences(row):
            lines.append(f"| {claim} | **{verdict}** | {evidence} |")
    return "\n".join(lines)


def _p(router: str) -> float | None:
    match = re.fullmatch(r"random_switch\[p=([0-9.]+)\]", router)
    return float(match[1]) if match else None


def _matched(fraction: float, names: list[str], value: Callable[[str], float | None]) -> str | None:
    """The setting among `names` made for `fraction` (its option printed to 3 decimals by bench.reproduce)."""
    made = [n for n in names if value(n) is not None and abs(value(n) - fraction) <= 0.0005 + 1e-9]
    return made[0] if made else None


def _fraction_option(router: str) -> float | None:
    match = re.fullmatch(r"confidence_cascade\[fraction=([0-9.]+)(?:,.*)?\]", router)
    return float(match[1]) if match else None


def head_to_head(episodes: pd.DataFrame, cells: list[Cell], valid_cells: list[Cell] | None = None) -> list[dict]:
    """LONDI against the deployable baselines and the controls, on the same test episodes.

    Each LONDI setting meets the random_switch setting and the calibrated cascade that `make reproduce` ran for it:
    made at its DEEPTHINK fraction on the validation episodes (found by their options; without validation episodes,
    the random setting whose p is nearest its test fraction within MATCH_TOLERANCE). Every other setting of a
    MEETS_LONDI family meets the LONDI setting nearest its test fraction. `same_fraction` says whether the two test
    fractions are within MATCH_TOLERANCE. The differences (LONDI - other) of reward and success pair the episodes on
    (run seed, env seed) and carry two-level 95% intervals (run seeds, then episodes)."""
    if "split" in episodes:
        episodes = episodes[episodes["split"].fillna("test") == "test"]
    valid = {(c.task, c.router): c.values["deepthink_acted_fraction"].mean for c in valid_cells or []
             if "deepthink_acted_fraction" in c.values}
    rows = []
    for task in sorted({c.task for c in cells}):
        here = {c.router: c for c in cells if c.task == task}
        londi = [c for c in here.values() if is_londi(c.router)]
        frac = {name: c.values["deepthink_acted_fraction"].mean for name, c in here.items()}
        pairs, made = [], set()
        randoms = [name for name in here if _p(name) is not None]
        cascades = [name for name in here if _fraction_option(name) is not None]
        for cell in londi:
            target = valid.get((task, cell.router))
            if target is not None:
                for other in (_matched(target, randoms, _p), _matched(target, cascades, _fraction_option)):
                    if other is not None:
                        pairs.append((cell.router, other))
                        made.add(other)
            elif randoms:
                nearest = min(randoms, key=lambda name: abs(_p(name) - frac[cell.router]))
                if abs(_p(nearest) - frac[cell.router]) <= MATCH_TOLERANCE:
                    pairs.append((cell.router, nearest))
        for other in here:
            if londi and other not in made and family(other).startswith(MEETS_LONDI) and not other.endswith(ABLATION):
                pairs.append((min(londi, key=lambda c: abs(frac[c.router] - frac[other])).router, other))
        on_task = episodes[episodes.task == task]
        for mine, theirs in pairs:
            a = by_episode(on_task[on_task.router == mine])
            b = by_episode(on_task[on_task.router == theirs])
            shared = a.index.intersection(b.index).sort_values()
            row = {"task": task, "londi": mine, "other": theirs, "londi_fraction": frac[mine],
                   "other_fraction": frac[theirs], "episodes": len(shared)}
            seeds = shared.get_level_values("seed").to_numpy()
            for metric in ("reward", "success"):
                row[f"{metric}_londi"] = float(a.loc[shared, metric].mean())
                row[f"{metric}_other"] = float(b.loc[shared, metric].mean())
                row[f"{metric}_diff"] = seed_diff_ci(a.loc[shared, metric].to_numpy(), b.loc[shared, metric].to_numpy(),
                                                     seeds, bounded=True).__dict__
            diff = row["reward_diff"]
            row["verdict"] = "LONDI better" if diff["low"] > 0 else "LONDI worse" if diff["high"] < 0 \
                else "no clear difference"
            # Only a pair within MATCH_TOLERANCE is at the same DEEPTHINK fraction; the rest are shown, not judged so.
            row["same_fraction"] = bool(abs(frac[mine] - frac[theirs]) <= MATCH_TOLERANCE)
            rows.append(row)
    return rows


def head_to_head_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["## LONDI head to head at the same DEEPTHINK fraction", "",
             "Same test episodes (paired on run seed and env seed); difference = LONDI - other, 95% two-level "
             "interval (run seeds, then episodes). The random switching and the calibrated cascade made for each "
             "LONDI setting (at its DEEPTHINK fraction on the validation episodes) meet it; every other setting of "
             f"the other families meets the LONDI setting nearest its fraction. Both fractions are the test "
             f"episodes'; a pair more than {MATCH_TOLERANCE} apart is not at the same fraction and its verdict says "
             "so.", "",
             "| task | LONDI setting | fraction | other | fraction | reward LONDI | reward other | reward difference "
             "| success difference | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = r["verdict"] if r.get("same_fraction", True) else \
            f"{r['verdict']} (fractions differ by {abs(r['londi_fraction'] - r['other_fraction']):.3f})"
        lines.append(f"| {r['task']} | {r['londi']} | {r['londi_fraction']:.3f} | {r['other']} | "
                     f"{r['other_fraction']:.3f} | {r['reward_londi']:.3f} | {r['reward_other']:.3f} | "
                     f"{Estimate(**r['reward_diff'])} | {Estimate(**r['success_diff'])} | {verdict} |")
    return "\n".join(lines)


def budget_rows(episodes: pd.DataFrame) -> list[dict]:
    """LONDI-B's DEEPTHINK calls per test episode against its budget, from the episodes: kept iff no episode used
    more calls than the budget."""
    if "split" in episodes:
        episodes = episodes[episodes["split"].fillna("test") == "test"]
    rows = []
    for (task, router), group in episodes.groupby(["task", "router"], sort=True):
        match = re.fullmatch(r"londi_b\[budget=(\d+)[\],].*", router)
        if not match:
            continue
        budget = int(match[1])
        calls = group["deepthink_calls"].to_numpy()
        rows.append({"task": task, "router": router, "budget": budget, "mean_calls": float(calls.mean()),
                     "max_calls": int(calls.max()), "share_of_budget_used": float(calls.mean() / budget),
                     "kept": bool(calls.max() <= budget)})
    return rows


def budget_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["## LONDI-B: DEEPTHINK calls per episode against the budget", "",
             "| task | setting | budget | mean calls | most calls in an episode | budget kept |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['router']} | {r['budget']} | {r['mean_calls']:.2f} | {r['max_calls']} | "
                     f"{'yes' if r['kept'] else 'no'} |")
    return "\n".join(lines)


def ablation_rows(episodes: pd.DataFrame, cells: list[Cell]) -> list[dict]:
    """Each setting run with a random QUICK next to the same setting with the real QUICK, on the same test episodes:
    the paired difference of the DEEPTHINK fraction (random QUICK - real QUICK) with its two-level interval; the
    Switcher noticed the useless QUICK iff the interval is above zero."""
    if "split" in episodes:
        episodes = episodes[episodes["split"].fillna("test") == "test"]
    rows = []
    for c in cells:
        if not c.router.endswith(ABLATION):
            continue
        name = c.router[:-len(ABLATION)]
        base = next((b for b in cells if b.task == c.task and b.router == name), None)
        row = {"task": c.task, "router": name,
               **{f"{m}_{which}": (cell.values[m].__dict__ if cell else None)
                  for m in ("deepthink_acted_fraction", "reward")
                  for which, cell in (("real_quick", base), ("random_quick", c))}}
        on_task = episodes[episodes.task == c.task]
        real, rand = by_episode(on_task[on_task.router == name]), by_episode(on_task[on_task.router == c.router])
        shared = real.index.intersection(rand.index).sort_values()
        if base is not None and len(shared):
            def more(m: dict[str, np.ndarray]) -> np.ndarray:
                return m["a2"] / m["s2"] - m["a1"] / m["s1"]

            diff = seed_ci(more, {"a1": real.loc[shared, "deepthink_acted"].to_numpy(),
                                  "s1": real.loc[shared, "steps"].to_numpy(),
                                  "a2": rand.loc[shared, "deepthink_acted"].to_numpy(),
                                  "s2": rand.loc[shared, "steps"].to_numpy()},
                           shared.get_level_values("seed").to_numpy())
            row["fraction_diff"] = diff.__dict__
            row["calls_more"] = bool(diff.low > 0)
        rows.append(row)
    return rows


def ablation_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    def show(entry: dict | None) -> str:
        return str(Estimate(**entry)) if entry else "not run"
    lines = ["## Ablation: QUICK replaced by a random policy", "",
             "A Switcher that knows QUICK is useless should call DEEPTHINK more: the paired difference of the "
             "DEEPTHINK fraction (random QUICK - real QUICK, same episodes) must be above zero.", "",
             "| task | router | DEEPTHINK fraction, real QUICK | DEEPTHINK fraction, random QUICK | difference | "
             "calls DEEPTHINK more | reward, real QUICK | reward, random QUICK |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        more = "n/a" if "calls_more" not in r else "yes" if r["calls_more"] else "no"
        lines.append(f"| {r['task']} | {r['router']} | {show(r['deepthink_acted_fraction_real_quick'])} | "
                     f"{show(r['deepthink_acted_fraction_random_quick'])} | {show(r.get('fraction_diff'))} | {more} | "
                     f"{show(r['reward_real_quick'])} | {show(r['reward_random_quick'])} |")
    return "\n".join(lines)


def cells_records(cells: list[Cell]) -> list[dict]:
    records = []
    for c in cells:
        record = {"task": c.task, "router": c.router, "episodes": c.episodes, "seeds": c.seeds}
        for name, e in c.values.items():
            record.update({name: e.mean, f"{name}_ci_low": e.low, f"{name}_ci_high": e.high})
        record.update(c.training)
        records.append(record)
    return records


TABLE_DIGITS = "%.7g"
"""Precision of the committed episode tables: integers (steps, calls, seeds) exact, costs to 7 significant digits."""


def episodes_path(out_dir: Path, stem: str) -> Path:
    return out_dir / f"{stem}_episodes.csv.gz"


def training_path(out_dir: Path, stem: str) -> Path:
    return out_dir / f"{stem}_training.csv"


def write_tables(episodes: pd.DataFrame, training: pd.DataFrame, out_dir: Path, stem: str) -> list[Path]:
    """The sweep's every episode (run seed, env seed, split, router, reward, success, steps, calls and cost per model)
    and every router training's bill, as compact tables under results/: what the report is rebuilt from."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [c for c in (*EPISODE_COLUMNS, *EPISODE_METRICS) if c in episodes]
    table = episodes[columns].sort_values(["split", "task", "router", "seed", "episode"], kind="stable")
    paths = [episodes_path(out_dir, stem), training_path(out_dir, stem)]
    # mtime 0: the same episodes give the same bytes (gzip stamps the time otherwise).
    table.to_csv(paths[0], index=False, float_format=TABLE_DIGITS, compression={"method": "gzip", "mtime": 0})
    training.sort_values(["task", "router", "seed"], kind="stable").to_csv(paths[1], index=False,
                                                                           float_format=TABLE_DIGITS)
    return paths


def read_tables(out_dir: Path, stem: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = episodes_path(out_dir, stem)
    if not path.exists():
        raise ValueError(f"no episode table {path}: a report is rebuilt from the tables `make reproduce` writes "
                         f"(results/<profile>/<suite>_episodes.csv.gz); run it, or give --sweep to read MLflow")
    episodes = pd.read_csv(path)
    train = training_path(out_dir, stem)
    training = pd.read_csv(train) if train.exists() else pd.DataFrame(columns=list(TRAINING_COLUMNS))
    return episodes, training


@dataclass
class SuiteReport:
    """Everything a suite's report says, computed from its episode and training tables."""

    cells: list[Cell]
    valid_cells: list[Cell]
    selection: list[dict]
    verdicts: list[dict]
    head_to_head: list[dict]
    budgets: list[dict]
    ablation: list[dict]
    costs: pd.DataFrame
    pooled: dict | None = None
    """LONDI's verdict pooled over the sweep tasks (bench.reporting.pooled); None with fewer than two."""


def analyse(episodes: pd.DataFrame, training: pd.DataFrame) -> SuiteReport:
    cells = summarize(episodes, training)
    valid_cells = summarize(episodes, split="valid")
    selection = select_settings(valid_cells)
    rows = verdicts(cells, selection)
    cost = VERDICT_COST if VERDICT_COST in episodes and episodes[VERDICT_COST].notna().any() else "flops"
    pooled = pooled_londi(episodes, rows, training, cost, REFERENCE, RETAINED, PAPER_SAVING, AIM_SAVING,
                          VERDICT_EPISODES) if rows else None
    return SuiteReport(cells, valid_cells, selection, rows, head_to_head(episodes, cells, valid_cells),
                       budget_rows(episodes), ablation_rows(episodes, cells), model_costs(episodes), pooled)


def pooled_claims(pooled: dict | None) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) of LONDI pooled over the sweep tasks, each task's setting chosen on its own
    validation episodes: the paper's claim and the aim, as for one task."""
    if not pooled:
        return []
    where = ", ".join(pooled["tasks"])
    claims = (f"LONDI keeps DEEPTHINK-only's reward pooled over {where} (each weighing the same) with at least "
              f"{PAPER_SAVING:.0%} less compute (the paper's claim)",
              f"LONDI saves at least {AIM_SAVING:.0%} of priced compute pooled over {where}, training amortised over "
              f"{VERDICT_EPISODES:,} episodes per task, at the same reward (our aim)")
    if "reward_retained" not in pooled:
        return [(claim, "no", pooled["evidence"]) for claim in claims]
    retained = Estimate(**pooled["reward_retained"])
    chosen = "; ".join(f"`{router}` on {task}" for task, router in pooled["chosen"].items())
    kept = (f"reward retained {retained} ({_points(pooled['retained_margin'])} against {RETAINED} for the lower "
            f"bound); {pooled['reward_retained']['seeds']} run seeds")
    return [(claims[0], "yes" if pooled["paper_claim"] else "no",
             f"{chosen} (each chosen on validation): {kept}; {_pct(pooled['saving'])} less "
             f"{pooled['cost'].replace('_s', ' seconds')} ({_points(pooled['paper_margin'])} against "
             f"{PAPER_SAVING:.0%})"),
            (claims[1], "yes" if pooled["aim"] else "no",
             f"{_pct(pooled['saving_amortised'])} amortised ({_points(pooled['aim_margin'])} against "
             f"{AIM_SAVING:.0%}); {kept}")]


def pooled_markdown(pooled: dict | None) -> str:
    if not pooled:
        return ""
    lines = ["## Verdict pooled over the sweep tasks", "",
             "Each task's LONDI setting is the one chosen on its own validation episodes; pooled, every task weighs "
             "the same (sums of per-task means), with a two-level interval (run seeds drawn once for all tasks, then "
             "episodes within each task and seed, paired with DEEPTHINK-only's).", "",
             "| claim | verdict | evidence |", "|---|---|---|"]
    lines += [f"| {claim} | **{verdict}** | {evidence} |" for claim, verdict, evidence in pooled_claims(pooled)]
    return "\n".join(lines)


def write_results(episodes: pd.DataFrame, training: pd.DataFrame | None, out_dir: Path, stem: str,
                  context: dict, curves: pd.DataFrame | None = None) -> tuple[list[Path], SuiteReport]:
    """Write the suite's episode, training and learning-curve tables, then, computed from those tables read back,
    `<stem>.md`, `<stem>.csv`, `<stem>.json` and the plots under out_dir; return their paths and the report."""
    if training is None:
        training = pd.DataFrame(columns=list(TRAINING_COLUMNS))
    paths = write_tables(episodes, training, out_dir, stem)
    curves_table = write_curves(pd.DataFrame(columns=list(CURVE_COLUMNS)) if curves is None else curves, out_dir,
                                stem)
    paths += [curves_table] if curves_table else []
    written, report = write_report(*read_tables(out_dir, stem), out_dir, stem, context)
    return paths + written, report


def write_report(episodes: pd.DataFrame, training: pd.DataFrame, out_dir: Path, stem: str,
                 context: dict) -> tuple[list[Path], SuiteReport]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = analyse(episodes, training)
    curves = read_curves(out_dir, stem)
    learning = flatness(curves)
    costs_section = costs_table_markdown(report.cells)
    seeds_section = per_seed_markdown(report.cells)
    sections = [table_markdown(report.cells),
                "## Savings against DEEPTHINK-only by cost measure\n\n"
                + "\n".join(f"- `{name}`: {what}" for name, what in COSTS.items()) + "\n\n" + costs_section
                if costs_section else "",
                verdict_markdown(report.verdicts), pooled_markdown(report.pooled),
                head_to_head_markdown(report.head_to_head),
                budget_markdown(report.budgets), ablation_markdown(report.ablation), flatness_markdown(learning),
                "## Reward per run seed\n\n" + seeds_section if seeds_section else "",
                "## Validation episodes (where settings are chosen)\n\n" + table_markdown(report.valid_cells)
                if report.valid_cells else "",
                "## Cost per decision\n\n" + costs_markdown(report.costs)]
    markdown = (
        f"# {stem}\n\nMean [95% interval] per test episode: a two-level bootstrap, run seeds resampled, then "
        f"episodes within each (the number of seeds is in brackets after the episodes). Costs are per episode "
        f"(QUICK, DEEPTHINK and router calls); `priced_s` prices every call from the calibration, `compute_s` is the "
        f"wall clock (secondary). Rebuild it from the tables beside it: `python -m bench.report --tables "
        f"{out_dir} --stem {stem}`.\n\n"
        + "".join(f"- {k}: {v}\n" for k, v in context.items())
        + "\n" + "\n\n".join(filter(None, sections)) + "\n"
    )
    paths = [out_dir / f"{stem}.md", out_dir / f"{stem}.csv", out_dir / f"{stem}.json"]
    hindsight_text, hindsight, hindsight_plots = limit_section(episodes, report, out_dir, stem)
    if hindsight_text:
        markdown += "\n" + hindsight_text
    paths[0].write_text(markdown)
    pd.DataFrame(cells_records(report.cells)).to_csv(paths[1], index=False)
    paths[2].write_text(json.dumps(
        {"context": context, "cells": cells_records(report.cells), "valid_cells": cells_records(report.valid_cells),
         "per_seed_reward": [{"task": c.task, "router": c.router, **{str(k): v for k, v in c.per_seed.items()}}
                             for c in report.cells],
         "selection": report.selection, "verdicts": report.verdicts,
         "claims": [{"task": row["task"], "claim": claim, "verdict": verdict, "evidence": evidence}
                    for row in report.verdicts for claim, verdict, evidence in claim_sentences(row)]
                   + [{"task": "pooled", "claim": claim, "verdict": verdict, "evidence": evidence}
                      for claim, verdict, evidence in pooled_claims(report.pooled)],
         "pooled": report.pooled,
         "head_to_head": report.head_to_head, "budgets": report.budgets, "ablation": report.ablation,
         "model_costs": report.costs.to_dict(orient="records"), "hindsight": hindsight, "learning": learning},
        indent=1, default=_json_default))
    paths.append(plot_cost_reward(report.cells, out_dir / f"{stem}_cost_reward.png"))
    learning_plot = out_dir / f"{stem}_learning.png"
    learning_plot.unlink(missing_ok=True)
    if plot_curves(curves, learning_plot):
        paths.append(learning_plot)
    return paths + hindsight_plots, report


def limit_section(episodes: pd.DataFrame, report: SuiteReport, out_dir: Path, stem: str) -> tuple[str, dict, list]:
    """The hindsight section, where the search's results for this suite's test episodes lie beside its tables
    (`<stem>_hindsight.jsonl`, written by bench.reproduce): the minimum, each router's regret, LONDI's verdict against
    the minimum, the area per family, the frontier plot."""
    from bench.envs.tasks import get_task
    from bench.reporting.hindsight import hindsight_section, read_frontiers

    frontiers = read_frontiers(out_dir, stem)
    if not frontiers:
        return "", {}, []
    test = episodes[episodes["split"].fillna("test") == "test"] if "split" in episodes else episodes
    # Sampled models leave the deterministic space the search covers: their episodes are not judged against it.
    test = real_pair(test)
    test = test[~test.router.str.contains(SAMPLED, regex=False)]
    londi = {row["task"]: row["londi"]["chosen"] for row in report.verdicts}
    for task in frontiers:  # none kept the reward on validation: the best there is judged, and labelled so
        if londi.get(task) is None:
            tried = [c for c in report.valid_cells if c.task == task and is_londi(c.router)
                     and "reward_retained" in c.values]
            if tried:
                londi[task] = max(tried, key=lambda c: c.values["reward_retained"].mean).router + BEST_EFFORT
    return hindsight_section(test, frontiers, {task: get_task(task).max_steps for task in frontiers}, londi, family,
                             out_dir, stem, include=lambda name: name not in REFERENCES)


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def rebuild_from_tables(out_dir: Path, stem: str) -> list[Path]:
    """Rebuild a suite's tables, verdicts and plot from its committed episode and training tables, without MLflow:
    the context (how the sweep ran) is kept from the report's JSON."""
    previous = out_dir / f"{stem}.json"
    context = json.loads(previous.read_text())["context"] if previous.exists() else {}
    paths, _ = write_report(*read_tables(out_dir, stem), out_dir, stem, context)
    return paths


def print_sweep(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> list[Cell]:
    episodes = episodes_frame(sweep, tracking_uri, experiment)
    cells = summarize(episodes)
    print(f"\nsweep {sweep}: mean [95% CI] per episode\n")
    print(table_markdown(cells))
    return cells


def rebuild_results(sweep: str, profile: str | None = None, results_dir: Path = Path("results"),
                    tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                    overwrite: bool = False, report_as: str | None = None) -> list[Path]:
    """Rebuild a sweep's comparison table, verdicts and plot in results/<profile>/ from MLflow alone.

    The profile is the sweep's own (its runs record it). Results already there that another profile or another
    commit made are not overwritten unless `overwrite`: rebuilding a smoke sweep must not replace the committed
    cpu results."""
    runs = eval_runs(sweep, tracking_uri, experiment)
    if runs.empty:
        raise ValueError(f"no finished evaluation runs with tag londi.sweep={sweep!r} in experiment "
                         f"{experiment!r} at {get_client(tracking_uri).tracking_uri}: check the sweep name and the "
                         f"tracking URI")
    ran = sorted(set(runs["profile"])) if "profile" in runs else []
    if len(ran) != 1:
        raise ValueError(f"sweep {sweep!r} has runs of profiles {ran or 'unknown'}: cannot tell where its results go")
    if profile is not None and profile != ran[0]:
        raise ValueError(f"sweep {sweep!r} ran the {ran[0]} profile, not {profile}: drop --profile (the sweep's own "
                         f"is used) or give another sweep")
    commits = set(runs["git_commit"]) if "git_commit" in runs else set()
    out = results_dir / ran[0]
    everything = episodes_frame(sweep, tracking_uri, experiment)
    suites = sorted({task.split("/")[0] for task in everything["task"]})
    def stem(suite: str) -> str:  # as bench.reproduce --report-as names a side study's files
        return suite if report_as is None else report_as + (f"_{suite}" if len(suites) > 1 else "")

    for suite in suites:
        previous = out / f"{stem(suite)}.json"
        if previous.exists() and not overwrite:
            made = json.loads(previous.read_text()).get("context", {})
            made_by = made.get("sweep (MLflow tag londi.sweep)", "?")
            other_profile = made.get("profile", ran[0]) != ran[0]
            other_commit = made.get("git commit") not in commits
            if made_by != sweep and (other_profile or other_commit):
                ran_at = ", ".join(sorted(commits)) or "?"
                raise ValueError(
                    f"{previous} holds results of the {made.get('profile', '?')} profile made at commit "
                    f"{made.get('git commit', '?')} (sweep {made_by}), and sweep {sweep!r} ran at {ran_at}: write "
                    f"elsewhere with --results-dir DIR, or replace them with --overwrite")
    paths: list[Path] = []
    training = training_frame(sweep, tracking_uri, experiment)
    curves = curves_frame(sweep, tracking_uri, experiment)
    for suite in suites:
        episodes = everything[everything["task"].str.startswith(f"{suite}/")]
        previous = out / f"{stem(suite)}.json"
        context = json.loads(previous.read_text())["context"] if previous.exists() else {}
        if context.get("sweep (MLflow tag londi.sweep)") != sweep:
            context = {"profile": ran[0], "sweep (MLflow tag londi.sweep)": sweep,
                       "git commit": ", ".join(sorted(commits)),
                       "command": f"python -m bench.reporting.report --sweep {sweep}"}
        trained = training[training["task"].str.startswith(f"{suite}/")]
        written, report = write_results(episodes, trained, out, stem(suite), context,
                                        curves[curves["task"].str.startswith(f"{suite}/")])
        print(f"## {suite}\n\n" + table_markdown(report.cells) + "\n\nwrote " + ", ".join(map(str, written)))
        paths += written
    return paths


def main() -> None:
    """`python -m bench.reporting.report --sweep S` (also `python -m bench.report`)."""
    import tyro

    from bench.common.errors import user_errors
    from bench.common.tracking import check_tracking

    def rebuild(sweep: str | None = None, tables: Path | None = None, stem: tuple[str, ...] = (),
                profile: str | None = None, results_dir: Path = Path("results"),
                tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, overwrite: bool = False,
                report_as: str | None = None) -> None:
        """Rebuild a sweep's comparison tables, verdicts and plot: from its committed episode tables (--tables, no
        MLflow needed) or from the MLflow store (--sweep).

        Args:
            sweep: the sweep's name (MLflow tag londi.sweep), printed by every run.
            tables: a results folder holding <stem>_episodes.csv.gz (e.g. results/cpu): rebuild from it alone.
            stem: with --tables, the reports to rebuild (babyai, scienceworld, ...); unset: every table there.
            profile: the results subfolder; unset: the sweep's own profile (read from its runs; another is refused).
            results_dir: where results go.
            tracking_uri: MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).
            experiment: MLflow experiment name.
            overwrite: replace results there that another profile or commit made (refused without it).
            report_as: the file name a side study was written under (bench.reproduce --report-as), not the suite's.
        """
        if (sweep is None) == (tables is None):
            raise ValueError("give --tables DIR (rebuild from the committed episode tables) or --sweep NAME (from "
                             "MLflow), one of them")
        if tables is not None:
            stems = stem or tuple(sorted(p.name.removesuffix("_episodes.csv.gz")
                                         for p in tables.glob("*_episodes.csv.gz")))
            if not stems:
                raise ValueError(f"no episode tables (*_episodes.csv.gz) in {tables}: give the folder `make "
                                 f"reproduce` wrote them to, e.g. results/cpu")
            for name in stems:
                written = rebuild_from_tables(tables, name)
                print("wrote " + ", ".join(map(str, written)))
            return
        check_tracking(tracking_uri)
        rebuild_results(sweep, profile, results_dir, tracking_uri, experiment, overwrite, report_as)

    with user_errors():
        tyro.cli(rebuild)


if __name__ == "__main__":
    main()
