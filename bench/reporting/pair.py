"""The model pair's report: is there a capability gap for a router to exploit?

A router can save compute only if QUICK is good enough on many states and DEEPTHINK solves what
QUICK cannot. This report measures both halves from a sweep that ran `quick_only` and
`deepthink_only` on the same episodes:

- success and reward of each model alone, per task, with 95% bootstrap intervals, and the
  success gap (DEEPTHINK minus QUICK, paired on the environment seed);
- agreement: on every state DEEPTHINK visits (its episodes replayed from their seeds and actions,
  which rebuilds each state exactly), the fraction where QUICK's top action is DEEPTHINK's;
- FLOPs and seconds per decision of each model, as metered in the sweep (batched over the
  profile's environments) and at batch 1 (timed here on the replayed states);
- how each model was trained (steps, seconds, held-out accuracy against BabyAIBot, DAgger rounds);
- the goals of the model-pair issue, each marked met or missed, with the margin.

    python -m bench.reporting.pair --sweep reproduce-cpu-...   # `make reproduce` runs it after the sweep
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.stats import Estimate, fmt, mean_ci, ratio_ci, wilson_ci
from bench.common.tracking import DEFAULT_EXPERIMENT, get_client
from bench.envs.babyai_text import ACTIONS
from bench.envs.contexts import EpisodeHistory, get_context
from bench.envs.tasks import get_task
from bench.models.lm import ActionLM
from bench.reporting.report import by_episode, finished_eval_runs, real_pair

GOAL_TASK = "babyai/Mixed"
# (name, metric, threshold, must): the model-pair issue's goals on the mixed task.
GOALS = (
    ("DEEPTHINK succeeds >= 20 points more often than QUICK", "success_gap", 0.20, True),
    ("QUICK picks DEEPTHINK's action on >= 50% of DEEPTHINK's states", "agreement", 0.50, True),
    ("DEEPTHINK success >= 80%", "deepthink_success", 0.80, False),
    ("success gap >= 25 points", "success_gap", 0.25, False),
    ("agreement >= 60%", "agreement", 0.60, False),
)
FLOPS_RATIO_AIM = 10.0


@dataclass
class TaskPair:
    task: str
    episodes: int
    quick_success: Estimate
    deepthink_success: Estimate
    quick_reward: Estimate
    deepthink_reward: Estimate
    success_gap: Estimate
    agreement: Estimate
    states: int


def deepthink_traces(sweep: str, tracking_uri: str | None, experiment: str = DEFAULT_EXPERIMENT) -> pd.DataFrame:
    """Every DEEPTHINK-only episode of the sweep's BabyAI-Text tasks: task, env seed and the actions it took."""
    client = get_client(tracking_uri)
    runs = finished_eval_runs(sweep, tracking_uri, experiment, where="params.router = 'deepthink_only'")
    # BabyAI-Text only: the report replays BabyAIBot's states (a sweep may hold ScienceWorld runs too).
    runs = [run for run in runs if run.data.params["task"].startswith("babyai/")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            path = Path(client.download_artifacts(run.info.run_id, "episodes.jsonl", tmp))
            for line in path.read_text().splitlines():
                episode = json.loads(line)
                rows.append({"task": run.data.params["task"], "seed": int(run.data.params["seed"]),
                             "env_seed": episode["env_seed"], "level": episode.get("level", ""),
                             "actions": [s["action"] for s in episode["trace"]]})
    if not rows:
        raise ValueError(f"sweep {sweep!r} has no finished deepthink_only runs: the pair report needs them")
    return pd.DataFrame(rows)


def replay(task_name: str, env_seed: int, actions: list[str]) -> list[EpisodeHistory]:
    """The history before each action of an episode, rebuilt by stepping a fresh env with its actions."""
    env = get_task(task_name).make_env()
    try:
        obs, info = env.reset(seed=int(env_seed))
        history = EpisodeHistory([obs], [], [info.get("memory", [])])
        states = []
        for action in actions:
            states.append(history)
            obs, _, terminated, truncated, info = env.step(ACTIONS.index(action))
            if terminated or truncated:
                break
            history = EpisodeHistory(history.observations + [obs], history.actions + [action],
                                     history.memories + [info.get("memory", [])])
        return states
    finally:
        env.close()


def replayed_states(traces: pd.DataFrame) -> list[tuple[int, EpisodeHistory, int]]:
    """(episode row, history, DEEPTHINK's action) for every state of every traced episode."""
    states = []
    for index, row in enumerate(traces.itertuples()):
        for history, action in zip(replay(row.task, row.env_seed, row.actions), row.actions, strict=False):
            states.append((index, history, ACTIONS.index(action)))
    return states


def agreement_per_episode(quick: ActionLM, states: list[tuple[int, EpisodeHistory, int]], episodes: int,
                          batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(states where QUICK's top action is DEEPTHINK's, states) per DEEPTHINK episode."""
    context = get_context(quick.context)
    agree = np.zeros(episodes)
    visited = np.zeros(episodes)
    for start in range(0, len(states), batch_size):
        chunk = states[start:start + batch_size]
        scores, _ = quick.score([context(history) for _, history, _ in chunk], ACTIONS)
        for (episode, _, action), choice in zip(chunk, scores.argmax(axis=1), strict=True):
            agree[episode] += int(choice == action)
            visited[episode] += 1
    return agree, visited


def batch1_seconds(lm: ActionLM, histories: list[EpisodeHistory], calls: int = 50) -> float:
    """Median wall seconds of one decision at batch 1, on `calls` states spread over the given ones."""
    if not histories:
        return float("nan")
    context = get_context(lm.context)
    picks = [context(histories[i]) for i in np.linspace(0, len(histories) - 1, calls).astype(int)]
    lm.score(picks[:1], ACTIONS)  # warm-up
    times = []
    for prompt in picks:
        started = time.perf_counter()
        lm.score([prompt], ACTIONS)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def task_pairs(episodes: pd.DataFrame, traces: pd.DataFrame, agree: np.ndarray, states: np.ndarray) -> list[TaskPair]:
    rows = []
    for task in sorted(set(traces.task)):
        on_task = episodes[episodes.task == task]
        quick = by_episode(on_task[on_task.router_class == "quick_only"])
        deep = by_episode(on_task[on_task.router_class == "deepthink_only"])
        shared = quick.index.intersection(deep.index).sort_values()
        mask = (traces.task == task).to_numpy()
        rows.append(TaskPair(
            task=task, episodes=len(shared),
            quick_success=mean_ci(quick.loc[shared, "success"].to_numpy()),
            deepthink_success=mean_ci(deep.loc[shared, "success"].to_numpy()),
            quick_reward=mean_ci(quick.loc[shared, "reward"].to_numpy()),
            deepthink_reward=mean_ci(deep.loc[shared, "reward"].to_numpy()),
            success_gap=mean_ci(deep.loc[shared, "success"].to_numpy() - quick.loc[shared, "success"].to_numpy()),
            agreement=ratio_ci(agree[mask], states[mask], paired=True),
            states=int(states[mask].sum()),
        ))
    return rows


def level_rows(episodes: pd.DataFrame, traces: pd.DataFrame, task: str = GOAL_TASK) -> list[dict]:
    """Success of each model per level on a mixed task (the level is drawn from the env seed, so both
    models meet the same level on the same seed; the DEEPTHINK traces name it)."""
    on_task = episodes[episodes.task == task]
    levels = traces[traces.task == task].drop_duplicates("env_seed").set_index("env_seed")["level"]
    rows = []
    for level in sorted(set(levels)):
        seeds = levels.index[levels == level]
        row = {"level": level, "episodes": len(seeds)}
        for role in ("quick", "deepthink"):
            frame = by_episode(on_task[on_task.router_class == f"{role}_only"])
            on_level = frame.index.get_level_values("env_seed").isin(seeds)
            row[f"{role}_success"] = wilson_ci(frame.loc[on_level, "success"].to_numpy())
        rows.append(row)
    return rows


def model_rows(episodes: pd.DataFrame, models: dict[str, ActionLM], batch1: dict[str, float]) -> list[dict]:
    rows = []
    for role, lm in models.items():
        calls = episodes[f"{role}_calls"].sum()
        flops, seconds = (episodes[f"{name}_{role}"].sum() / calls if calls else float("nan")
                          for name in ("flops", "compute_s"))
        meta = lm.meta
        stages = meta.get("stages", [])
        rows.append({
            "model": role.upper(), "name": lm.name, "context": lm.context,
            "non_embedding_params": lm.size.non_embedding_params,
            "flops_per_decision": float(flops),
            "ms_per_decision_batched": 1000 * float(seconds),
            "ms_per_decision_batch1": 1000 * batch1[role],
            "train_s": meta.get("train_s"), "train_steps": meta.get("total_steps", meta.get("recipe", {}).get("steps")),
            "heldout_step_accuracy": meta.get("heldout_step_accuracy"),
            "dagger_rollout_success": [round(s["rollouts"]["success"], 3) for s in stages if "rollouts" in s],
        })
    return rows


def goal_rows(pairs: list[TaskPair], models: list[dict]) -> list[dict]:
    goal = next((p for p in pairs if p.task == GOAL_TASK), None)
    rows = []
    if goal is not None:
        values = {"success_gap": goal.success_gap.mean, "agreement": goal.agreement.mean,
                  "deepthink_success": goal.deepthink_success.mean}
        for name, metric, threshold, must in GOALS:
            value = values[metric]
            rows.append({"goal": name, "kind": "must" if must else "aim", "measured": value,
                         "met": bool(value >= threshold), "margin": value - threshold})
    quick, deep = models[0]["flops_per_decision"], models[1]["flops_per_decision"]
    ratio = deep / quick if quick else float("nan")
    rows.append({"goal": f"DEEPTHINK costs about {FLOPS_RATIO_AIM:.0f}x QUICK in FLOPs per decision", "kind": "aim",
                 "measured": ratio, "met": bool(FLOPS_RATIO_AIM / 2 <= ratio <= FLOPS_RATIO_AIM * 2),
                 "margin": ratio - FLOPS_RATIO_AIM})
    return rows


def _pct(e: Estimate) -> str:
    return f"{100 * e.mean:.1f} [{100 * e.low:.1f}, {100 * e.high:.1f}]"


def pair_markdown(pairs: list[TaskPair], levels: list[dict], models: list[dict], goals: list[dict],
                  context: dict) -> str:
    lines = ["# The QUICK/DEEPTHINK pair", ""]
    lines += [f"- {k}: {v}" for k, v in context.items()]
    lines += ["", "## Per task (percent, 95% bootstrap intervals; episodes of all seeds pooled)", "",
              "| task | episodes | QUICK success | DEEPTHINK success | gap (paired) | QUICK reward | DEEPTHINK reward "
              "| agreement on DEEPTHINK's states | states |",
              "|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p.task} | {p.episodes} | {_pct(p.quick_success)} | {_pct(p.deepthink_success)} "
                     f"| {_pct(p.success_gap)} | {fmt(p.quick_reward.mean)} [{fmt(p.quick_reward.low)}, "
                     f"{fmt(p.quick_reward.high)}] | {fmt(p.deepthink_reward.mean)} [{fmt(p.deepthink_reward.low)}, "
                     f"{fmt(p.deepthink_reward.high)}] | {_pct(p.agreement)} | {p.states} |")
    if levels:
        lines += ["", f"## {GOAL_TASK} by level (success, percent)", "",
                  "| level | episodes | QUICK | DEEPTHINK |", "|---|---|---|---|"]
        lines += [f"| {r['level']} | {r['episodes']} | {_pct(r['quick_success'])} | {_pct(r['deepthink_success'])} |"
                  for r in levels]
    lines += ["", "## The models", "",
              "| model | context | non-emb params | FLOPs/decision | ms/decision batched | ms/decision batch 1 "
              "| training steps | training s | held-out step accuracy vs bot | DAgger rollout success by round |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        accuracy = m["heldout_step_accuracy"]
        lines.append(f"| {m['model']} | {m['context']} | {m['non_embedding_params'] / 1e6:.3f}M "
                     f"| {m['flops_per_decision']:.3g} | {m['ms_per_decision_batched']:.2f} "
                     f"| {m['ms_per_decision_batch1']:.2f} | {m['train_steps']} | {m['train_s']} "
                     f"| {'' if accuracy is None else f'{accuracy:.3f}'} "
                     f"| {', '.join(map(str, m['dagger_rollout_success'])) or '-'} |")
    lines += ["", f"## Goals (on {GOAL_TASK})", "",
              "| goal | kind | measured | met | margin |", "|---|---|---|---|---|"]
    for g in goals:
        lines.append(f"| {g['goal']} | {g['kind']} | {g['measured']:.3f} | {'yes' if g['met'] else 'NO'} "
                     f"| {g['margin']:+.3f} |")
    return "\n".join(lines) + "\n"


def plot_pair(pairs: list[TaskPair], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(pairs))
    for offset, label, key in ((-0.2, "QUICK", "quick_success"), (0.2, "DEEPTHINK", "deepthink_success")):
        est = [getattr(p, key) for p in pairs]
        means = np.array([e.mean for e in est])
        err = np.array([[e.mean - e.low for e in est], [e.high - e.mean for e in est]])
        ax.bar(x + offset, means, width=0.4, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, [p.task.split("/")[-1] for p in pairs])
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Each model alone (95% intervals)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_pair_report(episodes: pd.DataFrame, sweep: str, models: dict[str, ActionLM], out_dir: Path,
                      context: dict, tracking_uri: str | None = None,
                      experiment: str = DEFAULT_EXPERIMENT) -> tuple[list[Path], str, dict[str, float]]:
    """Write results/<profile>/pair.{md,json} and pair_success.png; return paths, markdown and metrics."""
    episodes = real_pair(episodes)
    traces = deepthink_traces(sweep, tracking_uri, experiment)
    visited = replayed_states(traces)
    agree, states = agreement_per_episode(models["quick"], visited, len(traces))
    histories = [history for _, history, _ in visited]
    batch1 = {role: batch1_seconds(lm, histories) for role, lm in models.items()}
    pairs = task_pairs(episodes, traces, agree, states)
    model_table = model_rows(episodes, models, batch1)
    goals = goal_rows(pairs, model_table)
    levels = level_rows(episodes, traces)
    markdown = pair_markdown(pairs, levels, model_table, goals, context)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "pair.md"
    md.write_text(markdown)
    js = out_dir / "pair.json"
    js.write_text(json.dumps({
        "context": context,
        "tasks": [{"task": p.task, "episodes": p.episodes, "states": p.states,
                   **{k: getattr(p, k).__dict__ for k in ("quick_success", "deepthink_success", "quick_reward",
                                                           "deepthink_reward", "success_gap", "agreement")}}
                  for p in pairs],
        "levels": [{k: (v.__dict__ if isinstance(v, Estimate) else v) for k, v in r.items()} for r in levels],
        "models": model_table, "goals": goals,
    }, indent=1, default=float))
    png = plot_pair(pairs, out_dir / "pair_success.png")
    metrics = {}
    for p in pairs:
        for key in ("quick_success", "deepthink_success", "success_gap", "agreement"):
            metrics[f"pair.{p.task}.{key}"] = getattr(p, key).mean
    return [md, js, png], markdown, metrics
