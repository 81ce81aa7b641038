"""Tests for bench.models.train and bench.models.cache: the word-level tokenizer, behaviour cloning of real tiny T5s
on real BabyAIBot demonstrations, what a checkpoint records, determinism, and the recipe-keyed cache."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from transformers import AutoModelForSeq2SeqLM

from bench.envs.babyai_text import ACTIONS
from bench.models import cache as models_lib
from bench.models import dagger as dagger_lib
from bench.models.cache import ensure_models, load_demos, model_dir
from bench.models.demos import Demo, pairs
from bench.models.lm import LONDI_META, ActionLM
from bench.models.profiles import Profile, get_profile
from bench.models.train import LOG_EVERY, ModelRecipe, _batch, build_model, build_tokenizer, step_accuracy, train

TINY = ModelRecipe(role="quick", context="reflex", d_model=8, d_ff=16, layers=1, heads=2,
                   steps=6, batch_size=8, lr=3e-3, warmup_steps=2)


@pytest.fixture(scope="module")
def smoke_demos(smoke_cache: Path) -> tuple[list[Demo], list[Demo]]:
    """The smoke profile's (training, held-out) demonstrations, read from the session's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LONDI_CACHE", str(smoke_cache))
        return load_demos(get_profile("smoke"))


@pytest.fixture(scope="module")
def reflex_pairs(smoke_demos: tuple[list[Demo], list[Demo]]) -> list[tuple[str, str]]:
    return list(pairs(smoke_demos[0], "reflex"))


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_covers_every_demonstration_word_and_action(reflex_pairs: list[tuple[str, str]]) -> None:
    prompts = [prompt for prompt, _ in reflex_pairs]
    tokenizer = build_tokenizer(prompts)
    for ids in tokenizer(prompts)["input_ids"]:
        assert tokenizer.unk_token_id not in ids
    # actions are in the vocabulary even when no prompt mentions them
    bare = build_tokenizer(["Mission: go"])
    for action in ACTIONS:
        assert bare.unk_token_id not in bare(action)["input_ids"], action


def test_tokenizer_lower_cases_maps_unknown_words_to_unk_and_appends_eos() -> None:
    tokenizer = build_tokenizer(["Mission: go to the red ball"])
    assert tokenizer("GO To The RED Ball")["input_ids"] == tokenizer("go to the red ball")["input_ids"]
    ids = tokenizer("go to the zebra")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["go", "to", "the", "<unk>", "</s>"]
    assert ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer("turn left.")["input_ids"][-2] == tokenizer.convert_tokens_to_ids(".")  # punctuation split off


def test_batch_masks_label_padding_but_not_prompt_padding() -> None:
    tokenizer = build_tokenizer(["Mission: go to the red ball. You see a wall"])
    prompts = ["Mission: go to the red ball", "You see a wall"]
    batch = _batch(tokenizer, prompts, ["go forward", "toggle"])
    toggle, eos = tokenizer.convert_tokens_to_ids("toggle"), tokenizer.eos_token_id
    assert batch["labels"][1].tolist() == [toggle, eos, -100]
    assert -100 not in batch["labels"][0].tolist()
    assert -100 not in batch["input_ids"].tolist()[1]
    assert batch["input_ids"][1].tolist()[-1] == tokenizer.pad_token_id
    assert batch["attention_mask"][1].tolist()[-1] == 0


def test_training_loss_is_the_per_token_nll_that_scoring_uses(reflex_pairs: list[tuple[str, str]]) -> None:
    """The cloning loss and ActionLM's scores agree, so padding of a short action adds nothing to the loss."""
    one_word = [pair for pair in reflex_pairs if pair[1] in ("drop", "toggle")][:3]
    chunk = one_word + [pair for pair in reflex_pairs if pair[1] == "go forward"][:3]
    assert len(one_word) == 3  # labels of two lengths, so the short ones are padded
    tokenizer = build_tokenizer([prompt for prompt, _ in reflex_pairs])
    torch.manual_seed(0)
    model = build_model(TINY, tokenizer).eval()
    batch = _batch(tokenizer, [p for p, _ in chunk], [a for _, a in chunk])
    with torch.no_grad():
        loss = model(**batch).loss.item()
    scores, _ = ActionLM(model, tokenizer, name="tiny").score([p for p, _ in chunk], ACTIONS)
    expert_logp = sum(scores[i, ACTIONS.index(action)] for i, (_, action) in enumerate(chunk))
    assert loss == pytest.approx(-expert_logp / int((batch["labels"] != -100).sum()), rel=1e-4)


# ---------------------------------------------------------------- training and checkpoints


@pytest.mark.parametrize("role", ["quick", "deepthink"])
def test_smoke_training_reduces_the_loss(smoke_model_paths: tuple[Path, Path], role: str) -> None:
    meta = json.loads((dict(zip(("quick", "deepthink"), smoke_model_paths, strict=True))[role] / LONDI_META)
                      .read_text())
    assert meta["log"][0]["step"] == LOG_EVERY - 1  # each logged loss is the mean of LOG_EVERY steps
    assert meta["log"][-1]["step"] == meta["total_steps"] - 1
    assert meta["log"][0]["loss"] > meta["final_loss"] == meta["log"][-1]["loss"]


@pytest.mark.parametrize("role", ["quick", "deepthink"])
def test_londi_json_records_recipe_cost_and_heldout_accuracy(
    smoke_model_paths: tuple[Path, Path], smoke_demos: tuple[list[Demo], list[Demo]], role: str,
) -> None:
    profile = get_profile("smoke")
    recipe = profile.quick if role == "quick" else profile.deepthink
    path = smoke_model_paths[0] if role == "quick" else smoke_model_paths[1]
    meta = json.loads((path / LONDI_META).read_text())
    assert meta["recipe"] == json.loads(json.dumps(dataclasses.asdict(recipe)))
    assert (meta["name"], meta["role"], meta["context"]) == (f"smoke-{role}", role, recipe.context)
    assert meta["train_s"] > 0
    # behaviour cloning trains on the demonstrations; DAgger rounds add the states the learner visited
    assert meta["stages"][0]["train_pairs"] == len(list(pairs(smoke_demos[0], recipe.context)))
    assert meta["train_pairs"] >= meta["stages"][0]["train_pairs"]
    # the recorded accuracy is the saved model's, on demonstrations it was not trained on
    heldout = list(pairs(smoke_demos[1], recipe.context))
    assert {demo.seed for demo in smoke_demos[1]}.isdisjoint(demo.seed for demo in smoke_demos[0])
    assert len(heldout) > 0
    lm = ActionLM.load(path)
    assert meta["heldout_step_accuracy"] == pytest.approx(step_accuracy(lm, heldout))
    assert meta["non_embedding_params"] == lm.size.non_embedding_params


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return AutoModelForSeq2SeqLM.from_pretrained(path).state_dict()


def test_same_recipe_and_seed_train_identical_weights(reflex_pairs: list[tuple[str, str]], tmp_path: Path) -> None:
    train_pairs, heldout = reflex_pairs[:80], reflex_pairs[80:100]
    first = train(TINY, train_pairs, heldout, tmp_path / "a", name="a")
    second = train(TINY, train_pairs, heldout, tmp_path / "b", name="b")
    other_seed = train(dataclasses.replace(TINY, seed=1), train_pairs, heldout, tmp_path / "c", name="c")
    a, b, c = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert first["log"] == second["log"]
    assert first["heldout_step_accuracy"] == second["heldout_step_accuracy"]
    assert any(not torch.equal(a[key], c[key]) for key in a)  # the seed is what makes them equal
    assert other_seed["recipe"]["seed"] == 1


# ---------------------------------------------------------------- the model cache


def _tiny_profile(**changes: object) -> Profile:
    profile = Profile(
        name="tiny", tasks=("babyai/GoToLocal",), seeds=(0,), episodes=2, batch_size=2,
        demo_seeds=2, heldout_seeds=1,
        quick=TINY, deepthink=dataclasses.replace(TINY, role="deepthink", context="history", d_model=16),
    )
    return dataclasses.replace(profile, **changes)


def _train_runs(tracking_uri: str) -> int:
    client = MlflowClient(tracking_uri)
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  "tags.`londi.kind` = 'train'"))


def test_ensure_models_trains_once_then_reuses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking_uri: str,
) -> None:
    monkeypatch.setenv("LONDI_CACHE", str(tmp_path / "cache"))
    profile = _tiny_profile()
    quick, deepthink = ensure_models(profile, tracking_uri=tracking_uri)
    assert (quick, deepthink) == (model_dir(profile, profile.quick), model_dir(profile, profile.deepthink))
    assert quick.parent == tmp_path / "cache" / "models" / "tiny"
    models = sorted(p.name for p in quick.parent.iterdir() if p.name != "stages")
    assert models == sorted([quick.name, deepthink.name])  # no .partial
    assert (ActionLM.load(quick).context, ActionLM.load(deepthink).context) == ("reflex", "history")
    assert _train_runs(tracking_uri) == 2
    written = {path: (path.stat().st_mtime_ns, (path / LONDI_META).stat().st_mtime_ns) for path in (quick, deepthink)}

    def refuse(*args: object, **kwargs: object) -> dict:
        raise AssertionError("a cached model was trained again")

    with monkeypatch.context() as no_training:
        no_training.setattr(models_lib, "train_with_dagger", refuse)
        assert ensure_models(profile, tracking_uri=tracking_uri) == (quick, deepthink)
    assert {path: (path.stat().st_mtime_ns, (path / LONDI_META).stat().st_mtime_ns)
            for path in (quick, deepthink)} == written
    assert _train_runs(tracking_uri) == 2

    (quick / "stale-marker").write_text("from the earlier training")
    assert ensure_models(profile, retrain=True, tracking_uri=tracking_uri) == (quick, deepthink)
    assert not (quick / "stale-marker").exists()
    assert (quick / LONDI_META).stat().st_mtime_ns != written[quick][1]
    assert _train_runs(tracking_uri) == 4


def test_model_dir_is_keyed_by_recipe_and_demonstrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONDI_CACHE", str(tmp_path))
    profile = _tiny_profile()
    base = model_dir(profile, profile.quick)
    assert base == model_dir(_tiny_profile(), dataclasses.replace(TINY))  # equal recipes, equal key
    assert base.name.startswith("quick-")
    changed = [
        model_dir(profile, dataclasses.replace(TINY, lr=1e-3)),
        model_dir(profile, dataclasses.replace(TINY, seed=1)),
        model_dir(profile, dataclasses.replace(TINY, context="history")),
        model_dir(_tiny_profile(demo_seeds=3), profile.quick),
        model_dir(_tiny_profile(heldout_seeds=2), profile.quick),
    ]
    assert len({base, *changed}) == 1 + len(changed)
    # evaluation settings do not change what is trained
    assert model_dir(_tiny_profile(episodes=7, seeds=(0, 1)), profile.quick) == base


def test_unknown_profile_error_lists_known_profiles() -> None:
    with pytest.raises(ValueError, match=r"unknown profile 'gpu'; known profiles: smoke, cpu, paper"):
        get_profile("gpu")


def test_committed_checkpoints_are_used_when_the_cache_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking_uri: str,
) -> None:
    monkeypatch.setenv("LONDI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models_lib, "CHECKPOINTS", tmp_path / "checkpoints")
    profile = _tiny_profile()
    trained = ensure_models(profile, tracking_uri=tracking_uri)
    committed = tmp_path / "checkpoints" / "tiny"
    committed.mkdir(parents=True)
    for path in trained:
        shutil.copytree(path, committed / path.name)
    shutil.rmtree(tmp_path / "cache" / "models")

    def refuse(*args: object, **kwargs: object) -> dict:
        raise AssertionError("a committed model was trained again")

    with monkeypatch.context() as no_training:
        no_training.setattr(models_lib, "train_with_dagger", refuse)
        assert ensure_models(profile, tracking_uri=tracking_uri) == tuple(committed / p.name for p in trained)
    # Retraining goes to the cache, which is then preferred to the committed copy.
    assert ensure_models(profile, retrain=True, tracking_uri=tracking_uri) == trained
    assert ensure_models(profile, tracking_uri=tracking_uri) == trained
    # A changed recipe has another key: the committed pair no longer matches and is not used.
    changed = _tiny_profile(quick=dataclasses.replace(TINY, steps=TINY.steps + 1))
    assert ensure_models(changed, tracking_uri=tracking_uri)[0].parent == tmp_path / "cache" / "models" / "tiny"


def test_adding_dagger_rounds_trains_only_the_new_ones_and_matches_training_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking_uri: str,
) -> None:
    one_round = dataclasses.replace(TINY, dagger_betas=(0.5,), dagger_episodes=1, dagger_steps=4)
    two_rounds = dataclasses.replace(one_round, dagger_betas=(0.5, 0.0))
    # Afresh: the two-round recipe in an empty cache.
    monkeypatch.setenv("LONDI_CACHE", str(tmp_path / "fresh"))
    fresh = ensure_models(_tiny_profile(quick=two_rounds), tracking_uri=tracking_uri)[0]
    # Extended: the one-round recipe first, then the two-round one reuses its stages.
    monkeypatch.setenv("LONDI_CACHE", str(tmp_path / "extended"))
    ensure_models(_tiny_profile(quick=one_round), tracking_uri=tracking_uri)
    trainings: list[int] = []
    real_train = dagger_lib.train

    def counting(*args: object, **kwargs: object) -> dict:
        trainings.append(kwargs.get("steps") or TINY.steps)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(dagger_lib, "train", counting)
    extended = ensure_models(_tiny_profile(quick=two_rounds), tracking_uri=tracking_uri)[0]
    assert trainings == [two_rounds.dagger_steps]  # only the second round was trained
    assert fresh.name == extended.name
    for name, tensor in _weights(fresh).items():
        assert torch.equal(tensor, _weights(extended)[name]), name
    meta = json.loads((extended / LONDI_META).read_text())
    assert [s["stage"] for s in meta["stages"]] == ["bc", "dagger0", "dagger1"]
    assert meta == json.loads((fresh / LONDI_META).read_text()) | {k: meta[k] for k in ("train_s", "wall_s")} | {
        "stages": meta["stages"]}
