"""Every router of the comparison runs on ScienceWorld unchanged: the runner, the models' generated
actions, the metering and the traces are the same code as for BabyAI-Text."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from bench.envs.scienceworld_text import ScienceWorldTextEnv
from bench.envs.tasks import get_task
from bench.models.lm import ActionLM, RandomPolicy
from bench.models.train import build_bpe_tokenizer
from bench.reporting.report import plot_where_deepthink, where_deepthink
from bench.running.cell import train_and_evaluate
from bench.running.routers import router_spec
from bench.running.runner import ModelPair, run_episodes

STEPS = 4


@pytest.fixture(scope="module")
def short_task():
    """power-component with a 4-step limit, so that each router's episode is seconds long."""
    task = get_task("scienceworld/power-component")
    return dataclasses.replace(task, make_env=lambda: ScienceWorldTextEnv("power-component", max_steps=STEPS),
                               max_steps=STEPS)


# quick_only, deepthink_only and londi_b also run in test_reproduce_covers_scienceworld_with_its_own_report.
ROUTERS = ["follow_deepthink_where_they_differ", "swiftsage[warmup=1]", "random_switch[p=0.5]",
           "confidence_cascade[threshold=0.5]", "londi_sac[train_episodes=2]"]


@pytest.mark.parametrize("spec", ROUTERS)
def test_every_router_runs_on_scienceworld(spec: str, short_task, sw_smoke_models: ModelPair,
                                           tracking_uri: str) -> None:
    results = train_and_evaluate(router_spec(spec).make(), short_task, sw_smoke_models, seed=0, episodes=2,
                                 batch_size=2, profile="smoke", sweep="sw-test", exp_name=spec,
                                 tracking_uri=tracking_uri, progress=False)
    assert [r.env_seed for r in results] == short_task.eval_episode_seeds(0, 2) == [15, 16]
    for result in results:
        metrics = result.metrics()
        priced = {k for k in metrics if k.startswith(("priced", "projected"))}
        assert 1 <= result.steps <= STEPS and all(np.isfinite(metrics[k]) for k in set(metrics) - priced)
        assert all(np.isnan(metrics[k]) for k in priced if metrics[k] != 0)  # an unpriced pair: NaN, never free
        assert result.usage["quick"].calls + result.usage["deepthink"].calls >= result.steps
        assert result.deepthink_acted == sum(s["model"] == "deepthink" for s in result.trace)
        assert metrics["flops"] > 0 and 0.0 <= result.reward <= 1.0
        for step in result.trace:
            assert step["room"] and step["action"]  # where it happened and what was played


def test_follow_deepthink_plays_deepthinks_generated_action_where_the_two_differ(short_task,
                                                                                 sw_smoke_models: ModelPair) -> None:
    quick_only, _ = run_episodes(router_spec("quick_only").make(), short_task, sw_smoke_models, [15], batch_size=1,
                                 progress=False)
    followed, _ = run_episodes(router_spec("follow_deepthink_where_they_differ").make(), short_task, sw_smoke_models,
                               [15], batch_size=1, progress=False)
    first_quick, first_followed = quick_only[0].trace[0], followed[0].trace[0]
    assert first_followed["observation"] == first_quick["observation"]
    # At the first step both see the same state: the router acted as QUICK exactly where they agreed.
    quick_action = first_quick.get("generated", first_quick["action"])
    followed_action = first_followed.get("generated", first_followed["action"])
    assert (first_followed["model"] == "quick") == (followed_action == quick_action)


def test_generation_is_metered_per_token(sw_smoke_models: ModelPair) -> None:
    lm = sw_smoke_models.deepthink
    short, long = "Task: turn on the bulb. Room: a workshop.", "Task: turn on the bulb. Room: " + "a table; " * 40
    decision, cost = lm.generate([short, long], max_tokens=6)
    assert len(decision.actions) == 2 and np.all(cost.tokens_out <= 6) and np.all(cost.tokens_out >= 1)
    assert cost.tokens_in[1] > cost.tokens_in[0] and cost.flops[1] > cost.flops[0]
    np.testing.assert_allclose(cost.flops, lm.generation_flops(cost.tokens_in, cost.tokens_out))
    # More generated tokens cost more at the same prompt.
    assert lm.generation_flops(np.array([10]), np.array([5]))[0] > lm.generation_flops(np.array([10]), np.array([2]))[0]
    assert np.all((decision.margin >= 0) & (decision.margin <= 1)) and np.all(decision.entropy >= 0)
    again, _ = lm.generate([short, long], max_tokens=6)
    assert again.actions == decision.actions  # greedy: deterministic


def test_random_policy_picks_among_the_valid_actions(short_task) -> None:
    models = ModelPair(RandomPolicy(context="sw_now"), RandomPolicy(context="sw_history"))
    results, _ = run_episodes(router_spec("quick_only").make(), short_task, models, [15], batch_size=1,
                              progress=False)
    assert all("generated" not in s for s in results[0].trace)  # every action was a valid one, none mapped


def test_subword_tokenizer_spells_unseen_words() -> None:
    tokenizer = build_bpe_tokenizer(["connect battery anode to black wire terminal 1", "go to workshop"] * 5, 120)
    unseen = "focus on baby brown bear"
    ids = tokenizer(unseen)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == unseen
    assert tokenizer.decode(tokenizer("connect battery anode to black wire terminal 1")["input_ids"],
                            skip_special_tokens=True).strip() == "connect battery anode to black wire terminal 1"


TEXTS = ["connect battery anode to black wire terminal 1", "go to workshop", "focus on the red light bulb"] * 3
TOKENIZER_JSON = f"""
import sys
from bench.models.train import build_bpe_tokenizer
sys.stdout.write(build_bpe_tokenizer({TEXTS!r}, 200).backend_tokenizer.to_str())
"""


def test_subword_tokenizer_is_the_same_in_every_process() -> None:
    """The merges and ids do not depend on the process or its hash seed (the tokenizers library's own trainer
    gave a different tokenizer, and so a different model, in every process)."""
    here = build_bpe_tokenizer(TEXTS, 200).backend_tokenizer.to_str()
    there = subprocess.run([sys.executable, "-c", TOKENIZER_JSON], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parent.parent,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout
    assert here == there and '"merges"' in here and "connect</w>" in here


def test_where_deepthink_counts_steps_and_rooms(tmp_path) -> None:
    class Result:
        def __init__(self, trace):
            self.trace, self.level = trace, "power-component"

    results = [Result([{"step": 1, "model": "quick", "room": "hallway"}, {"step": 2, "model": "deepthink",
                                                                          "room": "workshop"}]),
               Result([{"step": 1, "model": "deepthink", "room": "hallway"}])]
    by_step, by_room = where_deepthink(results)
    assert by_step == {1: (1, 2), 2: (1, 1)} and by_room == {"hallway": (1, 2), "workshop": (1, 1)}
    path = plot_where_deepthink({"scienceworld/power-component": {"londi_b[budget=2]": results,
                                                                  "londi_b[budget=4]": results[:1]},
                                 "scienceworld/other": {"londi_b[budget=6]": results[1:]}}, tmp_path / "w.png")
    assert path.stat().st_size > 1000


def test_a_saved_model_generates_like_the_original(sw_smoke_models: ModelPair, tmp_path) -> None:
    lm = sw_smoke_models.quick
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = ActionLM(type(lm.model).from_pretrained(tmp_path), lm.tokenizer, name="again", context=lm.context)
    prompts = ["Task: turn on the red light bulb. Last action: none. Result: Room: This room is called the hallway."]
    assert again.generate(prompts)[0].actions == lm.generate(prompts)[0].actions


def test_reproduce_covers_scienceworld_with_its_own_report(londi_cache, sw_smoke_models: ModelPair, tracking_uri: str,
                                                           tmp_path) -> None:
    """`bench.reproduce` on a ScienceWorld task: its own pair, its own report, and LONDI-B's where-plot."""
    import pandas as pd

    from tests.test_cli import logged_runs, run_module

    results = tmp_path / "results"
    task = "scienceworld/power-component[max_steps=8]"  # short episodes: the subject is the report
    done = run_module("bench.reproduce", "--profile", "smoke", "--results-dir", str(results), "--no-progress",
                      "--tasks", task, "--sweep-tasks", task,
                      "--routers", "quick_only", "deepthink_only", "--learned", "londi_b[budget=2,train_episodes=1]",
                      "--no-match-random", "--no-match-cascade", "--ablation", "--episodes", "2")
    assert done.returncode == 0, done.stderr
    out = results / "smoke"
    for name in ("scienceworld.md", "scienceworld.csv", "scienceworld_cost_reward.png",
                 "scienceworld_londi_where.png", "scienceworld_londi_where.csv", "scienceworld_learning.png"):
        assert (out / name).stat().st_size > 0, name
    # the learning curve: one row per training episode, read back from MLflow; too short to judge
    curves = pd.read_csv(out / "scienceworld_curves.csv.gz")
    assert len(curves) == 1 and curves["router"].tolist() == ["londi_b[budget=2,train_episodes=1]"]
    assert "## Learning curves" in (out / "scienceworld.md").read_text()
    where = pd.read_csv(out / "scienceworld_londi_where.csv")
    assert set(where["by"]) == {"step", "room"} and (where["deepthink_calls"] <= where["steps"]).all()
    assert not (out / "babyai.md").exists()  # no BabyAI task ran: no BabyAI report
    table = pd.read_csv(out / "scienceworld.csv").set_index(["task", "router"])
    assert set(table.index) == {(task, r)
                                for r in ("quick_only", "deepthink_only", "londi_b[budget=2,train_episodes=1]")}
    assert table["episodes"].eq(2).all()
    assert table.loc[(task, "quick_only"), "deepthink_fraction"] == 0
    assert table.loc[(task, "deepthink_only"), "deepthink_fraction"] == 1
    # LONDI-B's budget holds at evaluation: at most 2 DEEPTHINK calls in any episode
    londi_b = table.loc[(task, "londi_b[budget=2,train_episodes=1]")]
    assert londi_b["deepthink_calls_ci_high"] <= 2
    runs = logged_runs(tracking_uri)
    evals = [r for r in runs if r.data.tags.get("londi.kind") == "eval"]
    assert {r.data.params["quick.name"] for r in evals} == {sw_smoke_models.quick.name}
    reports = [r for r in runs if r.data.tags.get("londi.kind") == "report"]
    assert [r.data.tags["londi.suite"] for r in reports] == ["scienceworld"]
    assert any(a.path == "scienceworld_londi_where.png"
               for a in MlflowClient(tracking_uri).list_artifacts(reports[0].info.run_id))


def test_environments_stepped_in_threads_give_the_same_episodes(sw_smoke_models: ModelPair) -> None:
    """ScienceWorld's environments step and reset in threads (one JVM each): the same episodes, step for step,
    as stepping them one after the other, and random switching's draws are unchanged."""
    task = dataclasses.replace(get_task("scienceworld/power-component"),
                               make_env=lambda: ScienceWorldTextEnv("power-component", max_steps=5), max_steps=5)
    assert task.parallel_envs
    seeds = [15, 16, 17, 18]

    def play(parallel: bool) -> list[tuple]:
        results, _ = run_episodes(router_spec("random_switch[p=0.5]").make(),
                                  dataclasses.replace(task, parallel_envs=parallel), sw_smoke_models, seeds,
                                  batch_size=3, seed=1, progress=False)
        return [(r.env_seed, r.reward, [(s["model"], s["action"], s["reward"], s["room"]) for s in r.trace])
                for r in results]

    assert play(True) == play(False)
