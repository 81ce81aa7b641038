"""The committed cpu pair (checkpoints/cpu) belongs to this code: same recipes, same text format.

A change to the recipes or to what the models read would otherwise leave `make reproduce` on a
fresh clone silently using checkpoints trained on something else. The key check catches a changed
recipe; re-measuring the held-out accuracy on freshly generated demonstrations catches a changed
text format (prompts the model was not trained on score differently).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench.envs.babyai_text import ACTIONS  # noqa: F401  (registers the BabyAI levels)
from bench.envs.tasks import BABYAI_LEVELS, BABYAI_MAX_STEPS, SCIENCEWORLD_UNREPLAYABLE_GOLD
from bench.models.cache import SCIENCEWORLD_DEMO_STEPS, committed_dir, scienceworld_demo_jobs
from bench.models.demos import bot_episode, pairs
from bench.models.lm import LONDI_META, ActionLM
from bench.models.loader import load_lm
from bench.models.profiles import get_profile, with_pair
from bench.models.train import ModelRecipe, key_fields, step_accuracy

STALE = "checkpoints/cpu does not match the code: run `python -m bench.models --profile cpu --commit` and commit it"


@pytest.fixture(scope="module")
def babyai_heldout() -> list:
    """The cpu profile's held-out BabyAIBot episodes, played again now."""
    profile = get_profile("cpu")
    heldout = [bot_episode(level, seed, BABYAI_MAX_STEPS) for level in BABYAI_LEVELS.values()
               for seed in range(profile.demo_seeds, profile.demo_seeds + profile.heldout_seeds)]
    return [d for d in heldout if d is not None]


@pytest.mark.parametrize("pair", ["t5", "causal"])
@pytest.mark.parametrize("role", ["quick", "deepthink"])
def test_committed_cpu_checkpoint_matches_the_recipe_and_the_text_format(role: str, pair: str,
                                                                          babyai_heldout: list) -> None:
    """The T5 pair and the decoder-only pair (`--pair causal`), each model against its recipe and its held-out
    step accuracy measured again."""
    profile = with_pair(get_profile("cpu"), pair)
    recipe = getattr(profile, role)
    path = committed_dir(profile, recipe)
    stale = STALE.replace("--commit", f"--pair {pair} --suites babyai --commit") if pair != "t5" else STALE
    assert (path / LONDI_META).exists(), stale
    meta = json.loads((path / LONDI_META).read_text())
    assert key_fields(meta["recipe"]) == key_fields(json.loads(json.dumps(dataclasses.asdict(recipe)))), stale
    accuracy = step_accuracy(load_lm(path), list(pairs(babyai_heldout, recipe.context)))
    assert accuracy == pytest.approx(meta["heldout_step_accuracy"], abs=0.003), stale


@pytest.fixture(scope="module")
def scienceworld_heldout(tmp_path_factory: pytest.TempPathFactory) -> list:
    """The cpu profile's held-out ScienceWorld gold paths (dev variations), played again now."""
    from bench.models.demos import collect_gold

    path = tmp_path_factory.mktemp("sw-heldout") / "heldout.jsonl.gz"
    jobs = scienceworld_demo_jobs(get_profile("cpu"))["heldout"]
    demos = collect_gold(jobs, SCIENCEWORLD_DEMO_STEPS, path)
    played = [(d.level, d.seed) for d in demos]  # tasks are played side by side; the order is still the jobs'
    assert played == [job for job in jobs if job in set(played)] and len(played) >= 0.9 * len(jobs)
    return demos


@pytest.mark.parametrize("role", ["quick", "deepthink"])
def test_committed_scienceworld_pair_matches_the_recipe_and_the_text_format(role: str, scienceworld_heldout) -> None:
    """The same guard for the ScienceWorld pair: its recipe, and its held-out accuracy re-measured on gold paths
    of the dev variations played again now (a changed observation or context text scores differently)."""
    profile = get_profile("cpu")
    recipe: ModelRecipe = getattr(profile, f"sw_{role}")
    path = committed_dir(profile, recipe, "scienceworld")
    assert (path / LONDI_META).exists(), STALE
    meta = json.loads((path / LONDI_META).read_text())
    assert key_fields(meta["recipe"]) == key_fields(json.loads(json.dumps(dataclasses.asdict(recipe)))), STALE
    # test-conductivity's gold paths differ from one play to the next: the pair's record has its accuracy on the
    # rest (bench.models --remeasure-heldout), which replays exactly.
    replayable = [d for d in scienceworld_heldout if d.level not in SCIENCEWORLD_UNREPLAYABLE_GOLD]
    held = list(pairs(replayable, recipe.context))
    assert len(held) == meta["heldout_replayable_pairs"], STALE
    accuracy = step_accuracy(ActionLM.load(path), held, generate=True)
    assert accuracy == pytest.approx(meta["heldout_replayable_accuracy"], abs=1e-9), STALE
