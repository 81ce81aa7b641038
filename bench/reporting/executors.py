"""The executors study (bench.scaling): its report (results/<profile>/executors.md, and REPRODUCE's section) and its
timeline plot (each configuration's cells on their workers over time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common.tracking import FLUSH_EVERY

PLACE_INVARIANT = ["reward", "success", "steps", "deepthink_calls", "deepthink_fraction", "deepthink_acted_fraction",
                   "flops", "priced_s", "priced_b1_s", "projected_gpu_s"]
"""Report columns (with their intervals) that must not move with where a cell ran; the clock's seconds may."""


def place_invariant(table: Any) -> Any:
    """A report table (pandas) cut to its place-invariant columns, in a fixed row order: what two sweeps of the same
    cells give alike wherever their cells ran."""
    columns = ["task", "router", "episodes"] + [c for c in table.columns if c.split("_ci_")[0] in PLACE_INVARIANT]
    return table[columns].sort_values(["task", "router"]).reset_index(drop=True)


def render(study: dict[str, Any], title: bool = True) -> str:
    configs, b = study["configs"], study["bound"]
    head = "#" if title else "###"
    lines = ([f"# Executors: serial against Ray on this machine ({study['machine']})", ""] if title else []) + [
             f"`{study['command']}` at {study['git_commit']}, {study['date']}.", "",
             "Wall time is this shared machine's clock: a measurement of the executors, not a ranking of routers.", "",
             "| run | wall s | speed-up | same numbers | cells | workers | cell-s | busy | first cell at s "
             "| pair loads (median s) | gap between cells s (median, max) | wait at the barrier s (mean) "
             "| back to driver s | outcome kB (median, max) | cell slowdown | tracking requests / cell |",
             "|" + "---|" * 16]
    for name, c in configs.items():
        same = "" if "same_numbers" not in c else ("yes" if c["same_numbers"] else "**no**")
        lines.append(
            f"| {name} | {c['wall_s']} | {c.get('speed_up', '')} | {same} | {c['cells']} | {c['workers']} | "
            f"{c['cell_seconds']} | {c['busy']} | {c['first_cell_start_s']} | {c['pair_loads']} ({c['pair_load_s']}) | "
            f"{c['gap_between_cells_s_median']}, {c['gap_between_cells_s_max']} | {c.get('barrier_wait_s_mean', '')} | "
            f"{c['return_s_median']} | "
            f"{c['result_kb_median']}, {c['result_kb_max']} | {c.get('cell_slowdown_median', '')} | "
            f"{c['requests_per_cell']} |")
    serial = configs["serial"]
    lines += ["", "Tracking requests of the serial sweep per cell, the driver's reads for the report included: "
              + ", ".join(f"{name} {n / serial['cells']:.1f}" for name, n in serial["requests_by_endpoint"].items())
              + "."]
    if study["write_rate"]:
        lines += ["", "One MLflow server (1 worker, sqlite), requests per second from 1, 4 and 16 client threads of "
                  "one process on the same cores as the server (what a server on a machine of its own sustains is "
                  "at least this): "
                  + "; ".join(f"{kind} ({f'log_batch of {FLUSH_EVERY} metrics' if kind == 'heavy' else 'set_tag'}) "
                              + ", ".join(str(r["requests_per_s"]) for r in study["write_rate"] if r["kind"] == kind)
                              for kind in ("heavy", "light")) + "."]
    if b["server_s_per_cell"] is None:
        tracking = "- Tracking: the server's write rate was not measured (`--no-tracking-bench`): no bound."
    else:
        tracking = (f"- Tracking: a cell makes {b['heavy_requests_per_cell']} heavy requests (every log_batch, of "
                    f"metrics, params or tags, and every artifact upload, each timed as a log_batch of "
                    f"{FLUSH_EVERY} metrics) and {b['light_requests_per_cell']} light ones (the driver's "
                    f"{b['report_reads_per_cell']} reads per cell for the report, once at the end, left out): at most "
                    f"{b['server_s_per_cell']} s of one server at the rates measured here. That is "
                    f"{b['servers_needed']} server(s) for these cells, or one server for cells of at least "
                    f"{b['min_cell_s_for_one_server']} s.")
    loading = (f"- Model loading: {b['pair_load_s']} s once per worker process for this pair"
               if b["pair_load_s"] == b["pair_load_s"] else "- Model loading: no worker loaded a pair in this study")
    lines += ["", f"{head}# What would bound {b['nodes']} nodes x {b['cells_per_node']} cells", "",
              f"- Cells of this sweep's mean length here ({b['mean_cell_s_here']} s) would finish at "
              f"{b['cells_finishing_per_s']} per second.",
              tracking,
              f"- Driver: {b['result_mb_per_s_to_driver']} MB/s of outcomes to receive and unpickle.",
              loading
              + (f"; the paper's pair (Flan-T5 small and large shapes) is {b['paper_pair_gb']} GB and loads in "
                 f"{b['paper_pair_load_s']} s (every weight read once) from this machine's page cache: "
                 f"{b['nodes']} nodes read {round(b['nodes'] * b['paper_pair_gb'])} GB from shared storage once (a "
                 f"node's workers share its page cache), and every worker process holds its own copy in memory."
                 if b.get("paper_pair_gb") else ".")]
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def lane_of(worker: str) -> str:  # node and pid, or the driver
        return worker.replace(" (loaded its pair)", "")

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 1.2 + 1.1 * sum(
        r["timeline"]["worker"].map(lane_of).nunique() for r in runs)), squeeze=False, sharex=True)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        t = run["timeline"]
        lanes = {lane: i for i, lane in enumerate(dict.fromkeys(t["worker"].map(lane_of)))}
        for _, row in t.iterrows():
            lane = lanes[lane_of(row["worker"])]
            learned = any(mark in row["cell"] for mark in ("londi", "fraction=", "hindsight_supervised"))
            ax.barh(lane, row["seconds"], left=row["start_s"], color="tab:orange" if learned else "tab:blue",
                    edgecolor="white", linewidth=0.5)
            if row["load_s"] > 0.01:
                ax.barh(lane, row["load_s"], left=row["start_s"], color="black")
        ax.set_yticks(list(lanes.values()), [lane.removeprefix("node ") for lane in lanes])
        ax.set_xlim(left=0)
        ax.set_title(f"{run['name']}: {run['wall_s']:.0f} s wall", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds from the sweep's start (orange: cells that train; black: loading the pair)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


