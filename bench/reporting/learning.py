"""Learning curves of the learned routers: each training episode's reward, DEEPTHINK fraction and steps, as
bench.running.evaluate.train_router logs them; a table beside the sweep's others (what the report is rebuilt from),
a plot, and whether each curve has flattened by the end of its training (issue 18).

A curve is judged on its last two quarters: the change in the DEEPTHINK fraction (what the Switcher's policy sets)
from the third quarter of the training episodes to the fourth, with a two-level interval (run seeds, then episodes).
It is `flat` when the interval lies within +-FLAT_TOLERANCE, `still moving` when it excludes zero, and `undecided`
when the episodes are too few or too noisy to say either. The reward's change is shown beside it, not judged: a
success is 0 or 1, and a few hundred episodes cannot place its change within a tenth."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.stats import Estimate, fmt, seed_diff_ci
from bench.common.tracking import CURVE_METRICS, DEFAULT_EXPERIMENT, TRAIN_EPISODE_PREFIX, finished_runs, get_client

CURVE_COLUMNS = ("task", "router", "seed", "episode", *CURVE_METRICS)
FLAT_TOLERANCE = 0.1
"""Largest change of the DEEPTHINK fraction from the third quarter of training to the fourth called flat."""
MIN_EPISODES = 8
"""Fewest training episodes per seed whose curve is judged (two per quarter)."""
SHOWN = ("reward", "deepthink_fraction")
JUDGED = ("deepthink_fraction",)


def curves_frame(sweep: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """One row per training episode of every learned router of the sweep (its FINISHED training runs)."""
    client = get_client(tracking_uri)
    rows: dict[tuple[str, int], dict] = {}
    for run in finished_runs(sweep, "router_train", tracking_uri, experiment):
        params = run.data.params
        for metric in CURVE_METRICS:
            for point in client.get_metric_history(run.info.run_id, TRAIN_EPISODE_PREFIX + metric):
                row = rows.setdefault((run.info.run_id, point.step), {
                    "task": params["task"], "router": params["exp_name"], "seed": int(params["seed"]),
                    "episode": point.step})
                row[metric] = point.value
    frame = pd.DataFrame(list(rows.values()), columns=list(CURVE_COLUMNS))
    return frame.sort_values(["task", "router", "seed", "episode"], kind="stable").reset_index(drop=True)


def curves_path(out_dir: Path, stem: str) -> Path:
    return out_dir / f"{stem}_curves.csv.gz"


def write_curves(curves: pd.DataFrame, out_dir: Path, stem: str) -> Path | None:
    """The learning curves as a table beside the episodes (none: a stale one is removed, never reported on)."""
    path = curves_path(out_dir, stem)
    if curves.empty:
        path.unlink(missing_ok=True)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    curves.to_csv(path, index=False, float_format="%.7g", compression={"method": "gzip", "mtime": 0})
    return path


def read_curves(out_dir: Path, stem: str) -> pd.DataFrame:
    path = curves_path(out_dir, stem)
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=list(CURVE_COLUMNS))


def curve_verdict(changes: dict[str, Estimate], tolerance: float = FLAT_TOLERANCE) -> str:
    """`flat`: every change's interval within +-tolerance; `still moving`: some interval excludes zero;
    `undecided`: neither (too few or too noisy episodes to tell)."""
    if not changes or any(e.low != e.low or e.high != e.high for e in changes.values()):
        return "undecided"
    if all(-tolerance <= e.low and e.high <= tolerance for e in changes.values()):
        return "flat"
    if any(e.low > 0 or e.high < 0 for e in changes.values()):
        return "still moving"
    return "undecided"


def flatness(curves: pd.DataFrame, tolerance: float = FLAT_TOLERANCE) -> list[dict]:
    """Per task and learned setting: the mean of each judged metric in each quarter of training (over seeds), the
    change from the third quarter to the fourth with its interval, and the verdict."""
    rows = []
    for (task, router), frame in curves.groupby(["task", "router"], sort=True):
        per_seed = frame.groupby("seed").size()
        n = int(per_seed.min())
        row = {"task": task, "router": router, "seeds": len(per_seed), "episodes": n}
        if n < MIN_EPISODES:
            rows.append({**row, "verdict": "undecided", "quarters": {}, "change": {}})
            continue
        edges = [round(n * q / 4) for q in range(5)]
        quarters: dict[str, list[float]] = {}
        third, fourth, seeds = {m: [] for m in SHOWN}, {m: [] for m in SHOWN}, []
        for seed, runs in frame.groupby("seed", sort=True):
            runs = runs.sort_values("episode").iloc[:n]
            size = min(edges[3] - edges[2], edges[4] - edges[3])
            for m in SHOWN:
                third[m] += list(runs[m].iloc[edges[2]:edges[2] + size])
                fourth[m] += list(runs[m].iloc[edges[4] - size:edges[4]])
            seeds += [int(seed)] * size
        ordered = [g.sort_values("episode") for _, g in frame.groupby("seed", sort=True)]
        for m in SHOWN:
            quarters[m] = [float(np.mean([g[m].iloc[edges[q]:edges[q + 1]].mean() for g in ordered]))
                           for q in range(4)]
        change = {m: seed_diff_ci(fourth[m], third[m], seeds, bounded=True) for m in SHOWN}
        rows.append({**row, "quarters": quarters, "change": {m: asdict(e) for m, e in change.items()},
                     "verdict": curve_verdict({m: change[m] for m in JUDGED}, tolerance)})
    return rows


def flatness_markdown(rows: list[dict], tolerance: float = FLAT_TOLERANCE) -> str:
    if not rows:
        return ""
    lines = ["## Learning curves (training episodes)", "",
             "Mean per quarter of each learned setting's training episodes (over its run seeds), and the change from "
             "the third quarter to the fourth with a two-level interval. The verdict is on the DEEPTHINK fraction "
             "(what the Switcher sets; a reward of 0 or 1 per episode is too noisy to judge on a few hundred): "
             f"`flat` when its change lies within +-{tolerance}, `still moving` when it excludes zero, `undecided` "
             "otherwise. The curves are plotted beside this report (`*_learning.png`).", "",
             "| task | setting | seeds | episodes per seed | reward by quarter | DEEPTHINK fraction by quarter "
             "| reward change Q3->Q4 | fraction change Q3->Q4 | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r["quarters"]

        def quarters(m: str, q: dict = q) -> str:
            return " / ".join(f"{v:.3f}" for v in q[m]) if m in q else "-"

        def change(m: str, r: dict = r) -> str:
            e = r["change"].get(m)
            return f"{fmt(e['mean'])} [{fmt(e['low'])}, {fmt(e['high'])}]" if e else "-"

        lines.append(f"| {r['task']} | {r['router']} | {r['seeds']} | {r['episodes']} | {quarters('reward')} | "
                     f"{quarters('deepthink_fraction')} | {change('reward')} | {change('deepthink_fraction')} | "
                     f"{r['verdict']} |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: pd.DataFrame, path: Path) -> Path | None:
    """Per task a row: reward and DEEPTHINK fraction against training episode, a moving mean (a tenth of the
    episodes) of the mean over run seeds, one line per learned setting."""
    if curves.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(curves.task.unique())
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.4 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        frame = curves[curves.task == task]
        for router, runs in frame.groupby("router", sort=True):
            mean = runs.groupby("episode")[list(SHOWN)].mean()
            window = max(1, len(mean) // 10)
            smooth = mean.rolling(window, min_periods=1).mean()
            for ax, metric in zip(axes[row], SHOWN, strict=True):
                ax.plot(smooth.index, smooth[metric], label=f"{router} ({runs.seed.nunique()} seeds)")
        for ax, metric in zip(axes[row], SHOWN, strict=True):
            ax.set_title(f"{task}: {metric.replace('_', ' ')}", fontsize=9, loc="left")
            ax.set_xlabel("training episode")
            ax.grid(alpha=0.3)
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
