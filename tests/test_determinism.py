"""Determinism: the same seed on the same machine gives the same metrics, every one of them that is not a
clock reading, and every run records the seeds that made it."""

from __future__ import annotations

from mlflow import MlflowClient

from bench.common.tracking import EPISODE_PREFIX
from bench.envs.tasks import get_task
from bench.models.pair import ModelPair
from bench.running.evaluate import evaluate
from bench.running.routers import router_spec

CLOCKS = ("compute_s", "gpu_", "wall_s")  # seconds measured, not computed: they differ run to run


def logged(client: MlflowClient, run_id: str) -> dict[str, object]:
    """Every summary metric and every per-episode series of a run, clock readings left out."""
    run = client.get_run(run_id)
    values: dict[str, object] = {}
    for name, value in run.data.metrics.items():
        if any(clock in name for clock in CLOCKS):
            continue
        values[name] = (value if not name.startswith(EPISODE_PREFIX)
                        else [(m.step, m.value) for m in client.get_metric_history(run_id, name)])
    return values


def test_the_same_seed_gives_identical_metrics(priced_smoke_models: ModelPair, tracking_uri: str) -> None:
    """A router that draws random numbers (random switching) run twice with seed 5: identical metrics; with
    seed 6 the episodes (and so the env seeds logged) differ."""
    task = get_task("babyai/Mixed")
    client = MlflowClient(tracking_uri)

    def run(seed: int) -> str:
        evaluate(router_spec("random_switch[p=0.5]").make(), task, priced_smoke_models, seed=seed, episodes=6,
                 batch_size=3,
                 profile="smoke", sweep=f"determinism-{seed}", tracking_uri=tracking_uri, progress=False)
        runs = client.search_runs([client.get_experiment_by_name("londi-bench").experiment_id],
                                  f"tags.`londi.sweep` = 'determinism-{seed}'", order_by=["attributes.start_time DESC"])
        return runs[0].info.run_id

    first, second, other = run(5), run(5), run(6)
    a, b = logged(client, first), logged(client, second)
    assert len(a) > 30 and any(name.startswith(EPISODE_PREFIX) for name in a)
    assert a == b
    # The seeds are on record with the run: the run seed and the env seeds it evaluated.
    params = client.get_run(first).data.params
    assert params["seed"] == "5" and params["env_seeds"] == "{}..{}".format(*task.eval_episode_seeds(5, 6)[::5])
    assert client.get_run(other).data.params["env_seeds"] != params["env_seeds"]
    assert logged(client, other)[EPISODE_PREFIX + "env_seed"] != a[EPISODE_PREFIX + "env_seed"]


def test_objects_seeded_with_one_run_seed_draw_independent_numbers() -> None:
    """The router, the random policy and the Switcher's learner all take the run seed; none repeats another's draws."""
    import numpy as np

    from algos.switcher_sac import DiscreteSAC, SACConfig
    from baselines.random_switch import RandomSwitch
    from bench.models.lm import RandomPolicy

    router, policy = RandomSwitch(p=0.5), RandomPolicy()
    router.seed(3)
    policy.seed(3)
    learner = DiscreteSAC(4, SACConfig(seed=3))
    draws = [g.random(6) for g in (router.rng, policy.rng, learner.rng)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.allclose(draws[i], draws[j])
    again = RandomSwitch(p=0.5)
    again.seed(3)
    assert np.array_equal(again.rng.random(6), draws[0])  # and the same seed gives the same stream
