"""Shared fixtures: a real MLflow store in a temp dir and the smoke profile's real (tiny) model pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.models.lm import ActionLM
from bench.models.pair import ModelPair


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LONDI_CACHE holding the smoke profile's demonstrations and trained models (trained once)."""
    cache = tmp_path_factory.mktemp("londi-cache")
    store = tmp_path_factory.mktemp("train-store")
    mp = pytest.MonkeyPatch()
    mp.setenv("LONDI_CACHE", str(cache))
    from bench.models.cache import ensure_models
    from bench.models.profiles import get_profile

    ensure_models(get_profile("smoke"), tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    mp.undo()
    return cache


@pytest.fixture
def londi_cache(smoke_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the harness at the session's smoke cache for one test."""
    monkeypatch.setenv("LONDI_CACHE", str(smoke_cache))
    return smoke_cache


@pytest.fixture(scope="session")
def smoke_model_paths(smoke_cache: Path) -> tuple[Path, Path]:
    from bench.models.cache import model_dir
    from bench.models.profiles import get_profile

    profile = get_profile("smoke")
    mp = pytest.MonkeyPatch()
    mp.setenv("LONDI_CACHE", str(smoke_cache))
    paths = model_dir(profile, profile.quick), model_dir(profile, profile.deepthink)
    mp.undo()
    return paths


@pytest.fixture(scope="session")
def smoke_models(smoke_model_paths: tuple[Path, Path]) -> ModelPair:
    quick, deepthink = smoke_model_paths
    return ModelPair(ActionLM.load(quick), ActionLM.load(deepthink))


@pytest.fixture(scope="session")
def priced_smoke_models(smoke_models: ModelPair, tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    """The smoke pair with price books: a calibration of a second or two (two timed calls a point), so that tests
    of determinism and resumption compare priced seconds too."""
    import dataclasses

    from bench.running.calibrate import CalibrationSettings, price_books

    quick = CalibrationSettings(warmup=0, repeats=2, prompt_episodes=1, router_hidden=(8, 32), router_batches=(1, 4),
                                update_hidden=(8, 32), update_batches=(4, 16), router_inner=2)
    books = price_books("smoke", "babyai", smoke_models, tmp_path_factory.mktemp("calibration"), settings=quick,
                        progress=False)
    return dataclasses.replace(smoke_models, prices=books)


@pytest.fixture(scope="session")
def sw_smoke_models(smoke_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    """The smoke profile's ScienceWorld pair (gold paths of two variations per task, trained in seconds)."""
    from bench.models.cache import ensure_models
    from bench.models.profiles import get_profile

    mp = pytest.MonkeyPatch()
    mp.setenv("LONDI_CACHE", str(smoke_cache))
    store = tmp_path_factory.mktemp("sw-train-store")
    quick, deepthink = ensure_models(get_profile("smoke"), tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
                                     suite="scienceworld")
    mp.undo()
    return ModelPair(ActionLM.load(quick), ActionLM.load(deepthink))


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sqlite MLflow store in a temp dir, also set as MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def cpu_models() -> ModelPair:
    """The committed cpu pair (checkpoints/cpu): real models that disagree where their inputs differ."""
    from bench.models.cache import committed_dir
    from bench.models.profiles import get_profile

    profile = get_profile("cpu")
    return ModelPair(ActionLM.load(committed_dir(profile, profile.quick)),
                     ActionLM.load(committed_dir(profile, profile.deepthink)))


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    """`make bench` keeps each benchmark's statistics, not every round's raw timing (megabytes in results/)."""
    for bench in output_json["benchmarks"]:
        bench["stats"].pop("data", None)
