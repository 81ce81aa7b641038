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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.common.stats import Estimate, gap_recovered_ci, mean_ci, ratio_ci
from bench.common.tracking import DEFAULT_EXPERIMENT, EPISODE_PREFIX, get_client

EPISODE_METRICS = (
    "env_seed", "reward", "success", "steps", "deepthink_calls", "deepthink_fraction", "deepthink_acted", "quick_calls",
    "flops", "flops_quick", "flops_deepthink", "flops_router", "compute_s",
    "compute_s_quick", "compute_s_deepthink", "compute_s_router",
)
TABLE_METRICS = ("reward", "success", "steps", "deepthink_calls", "deepthink_fraction", "deepthink_acted_fraction",
                 "flops", "compute_s")
REFERENCE = "deepthink_only"
ABLATION = "@quick=random"
"""Suffix of a setting run with QUICK replaced by a random policy (the paper's ablation): not in the verdicts."""


def finished_eval_runs(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                       where: str = "") -> list:
    """The sweep's FINISHED evaluation runs (MLflow Run objects), optionally filtered further (`where`)."""
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment {experiment!r} at {client.tracking_uri}")
    return client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`londi.sweep` = '{sweep}' and tags.`londi.kind` = 'eval' "
                      f"and attributes.status = 'FINISHED'{f' and {where}' if where else ''}",
        max_results=10000,
    )


def eval_runs(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    runs = finished_eval_runs(sweep, tracking_uri, experiment)
    rows = [{"run_id": r.info.run_id, "status": r.info.status, **r.data.params,
             **{f"metric.{k}": v for k, v in r.data.metrics.items()}} for r in runs]
    return pd.DataFrame(rows)


def episodes_frame(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """One row per logged episode of the sweep: task, router, seed, episode and its metrics."""
    client = get_client(tracking_uri)
    runs = eval_runs(sweep, tracking_uri, experiment)
    if runs.empty:
        raise ValueError(f"no finished evaluation runs with tag londi.sweep={sweep!r} in experiment "
                         f"{experiment!r} at {client.tracking_uri}: check the sweep name and the tracking URI")
    rows: dict[tuple[str, int], dict] = {}
    for run in runs.itertuples():
        for metric in EPISODE_METRICS:
            for point in client.get_metric_history(run.run_id, EPISODE_PREFIX + metric):
                row = rows.setdefault((run.run_id, point.step), {
                    "run_id": run.run_id, "task": run.task, "router": run.exp_name, "router_class": run.router,
                    "seed": int(run.seed),
                    "episode": point.step,
                })
                row[metric] = point.value
    return pd.DataFrame(list(rows.values()))


@dataclass
class Cell:
    task: str
    router: str
    episodes: int
    seeds: int
    values: dict[str, Estimate]


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


def summarize(episodes: pd.DataFrame) -> list[Cell]:
    """Mean and 95% interval per (task, router) of every table metric, plus savings vs DEEPTHINK-only.

    `deepthink_fraction` is pooled (all DEEPTHINK calls / all steps), as DESIGN.md defines it.
    Savings, `reward_retained` and `gap_recovered` pair each episode with the reference's episode
    of the same run seed and env seed, so they compare the same episodes only.
    """
    cells = []
    for (task, router), group in episodes.groupby(["task", "router"], sort=True):
        values = {m: mean_ci(group[m].to_numpy()) for m in TABLE_METRICS if m != "deepthink_acted_fraction"}
        # Pooled: all DEEPTHINK calls (or steps where DEEPTHINK's action was taken) over all steps. They
        # differ for a router that consults DEEPTHINK without always following it (the oracle).
        values["deepthink_fraction"] = ratio_ci(group["deepthink_calls"].to_numpy(), group["steps"].to_numpy(),
                                                paired=True)
        values["deepthink_acted_fraction"] = ratio_ci(group["deepthink_acted"].to_numpy(),
                                                      group["steps"].to_numpy(), paired=True)
        # References are the real pair's runs: an ablation's QUICK-only (random QUICK) is no floor.
        on_task = real_pair(episodes[episodes.task == task])
        reference = on_task[on_task.router_class == REFERENCE]
        if len(reference) and router not in set(reference.router):
            mine, theirs = by_episode(group), by_episode(reference)
            shared = mine.index.intersection(theirs.index).sort_values()
            if len(shared):
                mine, theirs = mine.loc[shared], theirs.loc[shared]
                for cost in ("flops", "compute_s"):
                    ratio = ratio_ci(mine[cost].to_numpy(), theirs[cost].to_numpy(), paired=True)
                    values[f"saving_{cost}"] = Estimate(1 - ratio.mean, 1 - ratio.high, 1 - ratio.low, ratio.n)
                values["reward_retained"] = ratio_ci(mine["reward"].to_numpy(), theirs["reward"].to_numpy(),
                                                     paired=True)
                quick = on_task[on_task.router_class == QUICK_REFERENCE]
                if len(quick) and router not in set(quick.router):
                    floor = by_episode(quick)
                    common = shared.intersection(floor.index).sort_values()
                    if len(common):
                        values["gap_recovered"] = gap_recovered_ci(
                            mine.loc[common, "reward"].to_numpy(), floor.loc[common, "reward"].to_numpy(),
                            theirs.loc[common, "reward"].to_numpy())
        cells.append(Cell(task, router, len(group), group["seed"].nunique(), values))
    return cells


def model_costs(episodes: pd.DataFrame) -> pd.DataFrame:
    """FLOPs and milliseconds per decision of each model, over every call the sweep made with the real pair."""
    episodes = real_pair(episodes)
    rows = []
    for role in ("quick", "deepthink"):
        calls = episodes[f"{role}_calls"].sum()
        if calls:
            rows.append({"model": role, "decisions": int(calls),
                         "flops_per_decision": episodes[f"flops_{role}"].sum() / calls,
                         "ms_per_decision": 1000 * episodes[f"compute_s_{role}"].sum() / calls})
    return pd.DataFrame(rows)


def costs_markdown(costs: pd.DataFrame) -> str:
    if costs.empty:
        return "(no model calls)"
    lines = ["| model | decisions | FLOPs per decision | ms per decision |", "|---|---|---|---|"]
    for row in costs.itertuples():
        lines.append(f"| {row.model} | {row.decisions} | {row.flops_per_decision:.4g} | {row.ms_per_decision:.3f} |")
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
                ax.errorbar([x.mean for x in xs], [y.mean for y in ys],
                            xerr=[[x.mean - x.low for x in xs], [x.high - x.mean for x in xs]],
                            yerr=[[y.mean - y.low for y in ys], [y.high - y.mean for y in ys]],
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


def plot_where_deepthink(results_by_task: dict[str, dict[str, list]], path: Path) -> Path:
    """The paper's picture of where the Switcher calls DEEPTHINK, one row per task: per setting (LONDI-B's
    budgets), the share of episodes in which DEEPTHINK acted at each step of the task (left) and its share of the
    steps spent in each room (right)."""
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
    columns = list(TABLE_METRICS)
    for extra in ("saving_flops", "saving_compute_s", "reward_retained", "gap_recovered"):
        if any(extra in c.values for c in cells):
            columns.append(extra)
    header = "| task | router | episodes | " + " | ".join(columns) + " |"
    lines = [header, "|" + "---|" * (3 + len(columns))]
    for c in cells:
        shown = [str(c.values[m]) if m in c.values else "" for m in columns]
        lines.append(f"| {c.task} | {c.router} | {c.episodes} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


PAPER_SAVING = 0.30  # LONDI's claim: up to 30% less GPU at the same task performance
RETAINED = 0.95  # "the same performance": at least this share of DEEPTHINK-only's reward
NOT_DEPLOYABLE = ("oracle",)
LONDI_PREFIX = "londi"
MATCH_TOLERANCE = 0.02
"""A random_switch setting is 'at the same DEEPTHINK fraction' as a LONDI setting within this much."""


def is_londi(router: str) -> bool:
    return router.startswith(LONDI_PREFIX) and not router.endswith(ABLATION)


def family(router: str) -> str:
    """The router a setting belongs to: `londi_sac[c=0.1]` -> londi_sac (ablation runs form their own)."""
    return router.removesuffix(ABLATION).split("[")[0] + (ABLATION if router.endswith(ABLATION) else "")


def saving(cell: Cell) -> float:
    """What a router saves against DEEPTHINK-only for the verdict: the smaller of its compute-second and FLOPs
    savings. The clock is what the paper counts (GPU time), but on a shared 2-core machine its readings are noisy
    (a router calling DEEPTHINK on every step has "saved" half the seconds of DEEPTHINK-only on ScienceWorld, with
    JVMs working beside the model calls); the FLOPs are exact. A saving counts where both show it."""
    return min(cell.values["saving_compute_s"].mean, cell.values["saving_flops"].mean)


def _best(group: list[Cell]) -> dict | None:
    if not group:
        return None
    top = max(group, key=saving)
    return {"router": top.router, "saving": saving(top), **{k: top.values[k].__dict__ for k in
                                                            ("saving_compute_s", "saving_flops", "reward_retained")}}


def verdicts(cells: list[Cell]) -> list[dict]:
    """Per task: the largest saving (`saving`: compute seconds and FLOPs both) any deployable router reaches while
    keeping at least RETAINED of DEEPTHINK-only's reward (mean), and the same for the LONDI settings alone, next to
    the paper's claim."""
    rows = []
    for task in sorted({c.task for c in cells}):
        eligible = [c for c in cells if c.task == task and "saving_compute_s" in c.values
                    and c.values["reward_retained"].mean >= RETAINED and not c.router.startswith(NOT_DEPLOYABLE)
                    and not c.router.endswith(ABLATION)]

        londi = [c for c in cells if c.task == task and is_londi(c.router)]
        rows.append({"task": task, "best": _best(eligible),
                     "best_londi": _best([c for c in eligible if is_londi(c.router)]),
                     "londi_settings_run": len(londi)})
    return rows


def verdict_markdown(rows: list[dict]) -> str:
    def show(entry: dict | None) -> str:
        if entry is None:
            return "none"
        saving = Estimate(**entry["saving_compute_s"])
        return (f"{entry['router']}: {100 * saving.mean:.1f}% [{100 * saving.low:.1f}, {100 * saving.high:.1f}] "
                f"of compute seconds, {100 * entry['saving_flops']['mean']:.1f}% of FLOPs, "
                f"reward retained {entry['reward_retained']['mean']:.3f}")

    lines = [f"## Verdict: the largest saving at >= {RETAINED:.0%} of DEEPTHINK-only's reward "
             f"(paper: up to {PAPER_SAVING:.0%})", "",
             "A router's saving is the smaller of its compute-second and FLOPs savings against DEEPTHINK-only.", "",
             "| task | best deployable router | best LONDI setting | paper's claim reached by LONDI |",
             "|---|---|---|---|"]
    for row in rows:
        if row["londi_settings_run"] == 0:
            claim = "no LONDI setting run"
        elif row["best_londi"] is None:
            claim = f"no: no LONDI setting kept {RETAINED:.0%} of the reward"
        else:
            reached = row["best_londi"]["saving"] >= PAPER_SAVING
            claim = "yes" if reached else "no: saving under 30%"
        lines.append(f"| {row['task']} | {show(row['best'])} | {show(row['best_londi'])} | {claim} |")
    return "\n".join(lines)


def _p(router: str) -> float | None:
    match = re.fullmatch(r"random_switch\[p=([0-9.]+)\]", router)
    return float(match[1]) if match else None


def head_to_head(episodes: pd.DataFrame, cells: list[Cell]) -> list[dict]:
    """LONDI against the deployable baselines at (nearly) the same DEEPTHINK fraction, on the same episodes.

    Each LONDI setting meets the random_switch setting whose p is nearest its acted fraction (within
    MATCH_TOLERANCE; `make reproduce` runs one at exactly its fraction); each SwiftSage and confidence-cascade
    setting meets the LONDI setting nearest its fraction. The differences (LONDI - other) of reward and
    success pair the episodes by env seed and carry 95% bootstrap intervals."""
    rows = []
    for task in sorted({c.task for c in cells}):
        here = {c.router: c for c in cells if c.task == task}
        londi = [c for c in here.values() if is_londi(c.router)]
        frac = {name: c.values["deepthink_acted_fraction"].mean for name, c in here.items()}
        pairs = []
        randoms = [name for name in here if _p(name) is not None]
        for cell in londi:
            if randoms:
                nearest = min(randoms, key=lambda name: abs(_p(name) - frac[cell.router]))
                if abs(_p(nearest) - frac[cell.router]) <= MATCH_TOLERANCE:
                    pairs.append((cell.router, nearest))
        for other in here:
            if londi and other.startswith(("swiftsage", "confidence_cascade")) and not other.endswith(ABLATION):
                pairs.append((min(londi, key=lambda c: abs(frac[c.router] - frac[other])).router, other))
        on_task = episodes[episodes.task == task]
        for mine, theirs in pairs:
            a = by_episode(on_task[on_task.router == mine])
            b = by_episode(on_task[on_task.router == theirs])
            shared = a.index.intersection(b.index).sort_values()
            row = {"task": task, "londi": mine, "other": theirs, "londi_fraction": frac[mine],
                   "other_fraction": frac[theirs], "episodes": len(shared)}
            for metric in ("reward", "success"):
                row[f"{metric}_londi"] = float(a.loc[shared, metric].mean())
                row[f"{metric}_other"] = float(b.loc[shared, metric].mean())
                row[f"{metric}_diff"] = mean_ci((a.loc[shared, metric] - b.loc[shared, metric]).to_numpy()).__dict__
            rows.append(row)
    return rows


def head_to_head_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["## LONDI head to head at the same DEEPTHINK fraction", "",
             "Same episodes (paired by env seed); difference = LONDI - other, 95% bootstrap interval. "
             "Random switching is matched to each LONDI setting's fraction; SwiftSage and the cascade meet the "
             "LONDI setting nearest theirs.", "",
             "| task | LONDI setting | fraction | other | fraction | reward LONDI | reward other | reward difference "
             "| success difference | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = Estimate(**r["reward_diff"])
        verdict = "LONDI better" if diff.low > 0 else "LONDI worse" if diff.high < 0 else "no clear difference"
        lines.append(f"| {r['task']} | {r['londi']} | {r['londi_fraction']:.3f} | {r['other']} | "
                     f"{r['other_fraction']:.3f} | {r['reward_londi']:.3f} | {r['reward_other']:.3f} | {diff} | "
                     f"{Estimate(**r['success_diff'])} | {verdict} |")
    return "\n".join(lines)


def ablation_rows(cells: list[Cell]) -> list[dict]:
    """Each setting run with a random QUICK next to the same setting with the real QUICK."""
    rows = []
    for c in cells:
        if c.router.endswith(ABLATION):
            base = next((b for b in cells if b.task == c.task and b.router == c.router[:-len(ABLATION)]), None)
            rows.append({"task": c.task, "router": c.router[:-len(ABLATION)],
                         **{f"{m}_{which}": (cell.values[m].__dict__ if cell else None)
                            for m in ("deepthink_acted_fraction", "reward")
                            for which, cell in (("real_quick", base), ("random_quick", c))}})
    return rows


def ablation_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    def show(entry: dict | None) -> str:
        return str(Estimate(**entry)) if entry else "not run"
    lines = ["## Ablation: QUICK replaced by a random policy", "",
             "A Switcher that knows QUICK is useless should call DEEPTHINK more.", "",
             "| task | router | DEEPTHINK fraction, real QUICK | DEEPTHINK fraction, random QUICK | reward, real QUICK "
             "| reward, random QUICK |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['router']} | {show(r['deepthink_acted_fraction_real_quick'])} | "
                     f"{show(r['deepthink_acted_fraction_random_quick'])} | {show(r['reward_real_quick'])} | "
                     f"{show(r['reward_random_quick'])} |")
    return "\n".join(lines)


def cells_records(cells: list[Cell]) -> list[dict]:
    records = []
    for c in cells:
        record = {"task": c.task, "router": c.router, "episodes": c.episodes, "seeds": c.seeds}
        for name, e in c.values.items():
            record.update({name: e.mean, f"{name}_ci_low": e.low, f"{name}_ci_high": e.high})
        records.append(record)
    return records


def write_results(cells: list[Cell], costs: pd.DataFrame, out_dir: Path, stem: str, context: dict,
                  episodes: pd.DataFrame | None = None) -> list[Path]:
    """Write `<stem>.md`, `<stem>.csv` and `<stem>.json` under out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    matches = head_to_head(episodes, cells) if episodes is not None else []
    ablations = ablation_rows(cells)
    sections = [table_markdown(cells), verdict_markdown(verdicts(cells)), head_to_head_markdown(matches),
                ablation_markdown(ablations), "## Cost per decision\n\n" + costs_markdown(costs)]
    markdown = (
        f"# {stem}\n\nMean [95% bootstrap interval] per episode, episodes of all seeds pooled. "
        f"flops and compute_s are per episode (QUICK, DEEPTHINK and router calls).\n\n"
        + "".join(f"- {k}: {v}\n" for k, v in context.items())
        + "\n" + "\n\n".join(filter(None, sections)) + "\n"
    )
    paths = [out_dir / f"{stem}.md", out_dir / f"{stem}.csv", out_dir / f"{stem}.json"]
    paths[0].write_text(markdown)
    pd.DataFrame(cells_records(cells)).to_csv(paths[1], index=False)
    paths[2].write_text(json.dumps({"context": context, "cells": cells_records(cells), "verdicts": verdicts(cells),
                                    "head_to_head": matches, "ablation": ablations,
                                    "model_costs": costs.to_dict(orient="records")}, indent=1))
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
    for suite in suites:
        episodes = everything[everything["task"].str.startswith(f"{suite}/")]
        cells = summarize(episodes)
        previous = out / f"{stem(suite)}.json"
        context = json.loads(previous.read_text())["context"] if previous.exists() else {}
        if context.get("sweep (MLflow tag londi.sweep)") != sweep:
            context = {"profile": ran[0], "sweep (MLflow tag londi.sweep)": sweep,
                       "git commit": ", ".join(sorted(commits)),
                       "command": f"python -m bench.reporting.report --sweep {sweep}"}
        written = write_results(cells, model_costs(episodes), out, stem(suite), context, episodes)
        written.append(plot_cost_reward(cells, out / f"{stem(suite)}_cost_reward.png"))
        print(f"## {suite}\n\n" + table_markdown(cells) + "\n\nwrote " + ", ".join(map(str, written)))
        paths += written
    return paths


def main() -> None:
    """`python -m bench.reporting.report --sweep S` (also `python -m bench.report`)."""
    import tyro

    from bench.common.errors import user_errors
    from bench.common.tracking import check_tracking

    def rebuild(sweep: str, profile: str | None = None, results_dir: Path = Path("results"),
                tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, overwrite: bool = False,
                report_as: str | None = None) -> None:
        """Rebuild a sweep's comparison table, verdicts and plot in results/<profile>/ from MLflow alone.

        Args:
            sweep: the sweep's name (MLflow tag londi.sweep), printed by every run.
            profile: the results subfolder; unset: the sweep's own profile (read from its runs; another is refused).
            results_dir: where results go.
            tracking_uri: MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).
            experiment: MLflow experiment name.
            overwrite: replace results there that another profile or commit made (refused without it).
            report_as: the file name a side study was written under (bench.reproduce --report-as), not the suite's.
        """
        check_tracking(tracking_uri)
        rebuild_results(sweep, profile, results_dir, tracking_uri, experiment, overwrite, report_as)

    with user_errors():
        tyro.cli(rebuild)


if __name__ == "__main__":
    main()
