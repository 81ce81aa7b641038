"""The offline model pair of a profile: demonstrations, training and the on-disk cache.

A trained model lives under `<cache>/models/<profile>/<role>-<key>`, where the key hashes the
recipe and the demonstrations it was cloned from, so changing either trains a new model and an
unchanged one is reused. The cpu profile's pair is also committed under `checkpoints/<profile>/`
(a few MB, with the command and log that made it): a fresh clone uses it when its key matches the
code's, and trains otherwise. `make models` forces retraining into the cache (which is then used
before the committed copy). Each training is also an MLflow run (its recipe as params, the loss
curve and each DAgger round as metrics), so its cost is on record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import tyro

import bench.models.demos as demo_lib
from bench.common.errors import user_errors
from bench.common.provenance import REPO_ROOT, cache_dir, git_commit
from bench.common.tracking import RunLogger, check_tracking
from bench.envs.tasks import (
    BABYAI_LEVELS,
    BABYAI_MAX_STEPS,
    SCIENCEWORLD_DEMO_ONLY,
    SCIENCEWORLD_TASKS,
    SCIENCEWORLD_UNREPLAYABLE_GOLD,
)
from bench.models.dagger import train_with_dagger
from bench.models.hub import require_hub_model
from bench.models.lm import LONDI_META, ActionLM
from bench.models.loader import load_lm, load_model
from bench.models.profiles import Profile, get_profile, with_pair
from bench.models.train import ModelRecipe, key_fields, step_accuracy, train

SUITES = ("babyai", "scienceworld")
SCIENCEWORLD_FORMAT = 3  # bump when ScienceWorld's text format or its demonstrations change

FORMAT_VERSION = 4  # bump when the text format or training code changes what a recipe produces


CHECKPOINTS = REPO_ROOT / "checkpoints"
"""Committed checkpoints: `checkpoints/<profile>/<role>-<key>`, the same key as the cache."""


def committed_dir(profile: Profile, recipe: ModelRecipe, suite: str = "babyai") -> Path:
    return CHECKPOINTS / profile.name / model_dir(profile, recipe, suite).name


def recipes(profile: Profile, suite: str) -> tuple[ModelRecipe, ModelRecipe]:
    """QUICK's and DEEPTHINK's recipes of one suite."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; suites: {', '.join(SUITES)}")
    return (profile.quick, profile.deepthink) if suite == "babyai" else (profile.sw_quick, profile.sw_deepthink)


def _demo_config(profile: Profile, suite: str = "babyai") -> dict:
    if suite == "scienceworld":
        from bench.envs.scienceworld_text import SIMPLIFICATIONS

        return {"tasks": list(profile.sw_demo_tasks or SCIENCEWORLD_TASKS) + list(profile.sw_extra_demo_tasks),
                "demo_variations": profile.sw_demo_variations,
                "heldout_variations": profile.sw_heldout_variations, "simplifications": SIMPLIFICATIONS,
                "format": SCIENCEWORLD_FORMAT} | ({"rename": sorted(demo_lib.SAME_KIND)} if profile.sw_rename else {})
    return {
        "levels": list(BABYAI_LEVELS.values()),
        "demo_seeds": profile.demo_seeds,
        "heldout_seeds": profile.heldout_seeds,
        "max_steps": BABYAI_MAX_STEPS,
        "format": FORMAT_VERSION,
    }


def _key(profile: Profile, recipe: ModelRecipe, suite: str = "babyai") -> str:
    key = json.dumps({"recipe": key_fields(asdict(recipe)), "demos": _demo_config(profile, suite)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def model_dir(profile: Profile, recipe: ModelRecipe, suite: str = "babyai") -> Path:
    prefix = ("" if suite == "babyai" else f"{suite}-") + ("" if recipe.arch == "t5" else f"{recipe.arch}-")
    return cache_dir() / "models" / profile.name / f"{prefix}{recipe.role}-{_key(profile, recipe, suite)}"


def stage_dir(profile: Profile, recipe: ModelRecipe, rounds: int) -> Path:
    """The checkpoint after the first `rounds` DAgger rounds of `recipe`: keyed like a model whose recipe
    stops there, so a recipe that adds rounds reuses every stage the two have in common."""
    prefix = dataclasses.replace(recipe, dagger_betas=recipe.dagger_betas[:rounds])
    return cache_dir() / "models" / profile.name / "stages" / f"{recipe.role}-{_key(profile, prefix)}"


def load_demos(profile: Profile, progress: bool = True) -> tuple[list[demo_lib.Demo], list[demo_lib.Demo]]:
    """Training and held-out demonstrations, collected once per profile and reused."""
    levels = list(BABYAI_LEVELS.values())
    total = profile.demo_seeds + profile.heldout_seeds
    config = {k: v for k, v in _demo_config(profile).items() if k != "heldout_seeds"} | {"seeds": total}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "demos" / f"babyai-{total}x{len(levels)}-{digest}.jsonl.gz"
    demos = demo_lib.collect(levels, range(total), BABYAI_MAX_STEPS, path, progress=progress)
    train_demos = [d for d in demos if d.seed < profile.demo_seeds]
    heldout = [d for d in demos if d.seed >= profile.demo_seeds]
    return train_demos, heldout


SCIENCEWORLD_DEMO_STEPS = 10 * max(steps for *_, steps, _ in SCIENCEWORLD_TASKS.values())


def scienceworld_demo_jobs(profile: Profile) -> dict[str, list[tuple[str, int]]]:
    """(task, variation) of the gold paths: the first training variations of each task, and dev ones held out."""
    jobs: dict[str, list[tuple[str, int]]] = {"train": [], "heldout": []}
    for task in _demo_config(profile, "scienceworld")["tasks"]:
        train_n, dev_n, *_ = SCIENCEWORLD_TASKS.get(task) or SCIENCEWORLD_DEMO_ONLY[task]
        jobs["train"] += [(task, v) for v in range(min(train_n, profile.sw_demo_variations))]
        jobs["heldout"] += [(task, v) for v in range(train_n, train_n + min(dev_n, profile.sw_heldout_variations))]
    return jobs


def load_scienceworld_demos(profile: Profile, progress: bool = True) -> tuple[list[demo_lib.Demo], list[demo_lib.Demo]]:
    """Gold paths of the first training variations of every ScienceWorld task, and of dev variations held out."""
    # The gold paths played are the same with or without renaming: their file is keyed without it.
    config = {k: v for k, v in _demo_config(profile, "scienceworld").items() if k != "rename"}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    jobs = scienceworld_demo_jobs(profile)
    paths = {part: cache_dir() / "demos" / f"scienceworld-{part}-{digest}.jsonl.gz" for part in jobs}
    train_demos = demo_lib.collect_gold(jobs["train"], SCIENCEWORLD_DEMO_STEPS, paths["train"], progress)
    if profile.sw_rename:
        train_demos = train_demos + demo_lib.renamed(train_demos)
    return train_demos, demo_lib.collect_gold(jobs["heldout"], SCIENCEWORLD_DEMO_STEPS, paths["heldout"], progress)


def _train_suite_model(profile: Profile, suite: str, recipe: ModelRecipe, demos, out: Path, name: str,
                       progress: bool = True) -> dict:
    if suite == "babyai":
        return train_with_dagger(recipe, demos[0], demos[1], list(BABYAI_LEVELS.values()), BABYAI_MAX_STEPS, out,
                                 name=name, device=profile.device, progress=progress,
                                 stage_dir=lambda k: stage_dir(profile, recipe, k))
    return train(recipe, list(demo_lib.pairs(demos[0], recipe.context)), list(demo_lib.pairs(demos[1], recipe.context)),
                 out, name=name, device=profile.device, progress=progress)


def check_models_available(profile: Profile, suite: str, retrain: bool = False) -> None:
    """Refuse at once, naming the model, when a pair that still has to be trained starts from a hub checkpoint this
    machine cannot get (the paper profile without the hub): before any sweep is started or run logged."""
    for recipe in recipes(profile, suite):
        trained = (model_dir(profile, recipe, suite) / LONDI_META).exists() or (
            committed_dir(profile, recipe, suite) / LONDI_META).exists()
        if recipe.init_from and (retrain or not trained) and not Path(recipe.init_from).exists():
            require_hub_model(recipe.init_from, role=f"{profile.name} {recipe.role}'s starting checkpoint")


def ensure_models(profile: Profile, retrain: bool = False, tracking_uri: str | None = None,
                  suite: str = "babyai", progress: bool = True) -> tuple[Path, Path]:
    """Paths of the profile's QUICK and DEEPTHINK for `suite`: cached, else committed, else trained now (cached)."""
    paths = []
    demos: tuple[list[demo_lib.Demo], list[demo_lib.Demo]] | None = None
    for recipe in recipes(profile, suite):
        out = model_dir(profile, recipe, suite)
        if retrain:
            for path in [out] + [stage_dir(profile, recipe, k) for k in range(len(recipe.dagger_betas) + 1)]:
                shutil.rmtree(path, ignore_errors=True)
        committed = committed_dir(profile, recipe, suite)
        if not retrain and not (out / LONDI_META).exists() and (committed / LONDI_META).exists():
            paths.append(committed)
            continue
        if not (out / LONDI_META).exists():
            demos = demos or (load_demos(profile, progress) if suite == "babyai"
                              else load_scienceworld_demos(profile, progress))
            train_pairs = sum(len(d.actions) for d in demos[0])
            name = f"{profile.name}-{recipe.role}" if suite == "babyai" else f"{profile.name}-{suite}-{recipe.role}"
            params = {**asdict(recipe), "profile": profile.name, "suite": suite, "demo_pairs": train_pairs,
                      **{f"demos.{k}": v for k, v in _demo_config(profile, suite).items()}}
            with RunLogger(f"train__{name}", params, tags={"londi.kind": "train", "londi.role": recipe.role,
                                                           "londi.suite": suite}, uri=tracking_uri) as run:
                tmp = out.with_name(out.name + ".partial")
                for stale in out.parent.glob(tmp.name + "*"):
                    shutil.rmtree(stale)
                meta = _train_suite_model(profile, suite, recipe, demos, tmp, name, progress)
                tmp.rename(out)  # a half-written model never looks cached
                for row in meta["log"]:
                    run.log_metrics({"train_loss": row["loss"]}, step=row["step"])
                run.log_metrics({k: meta[k] for k in ("train_s", "final_loss", "heldout_step_accuracy",
                                                     "non_embedding_params", "epochs")})
                for k, stage in enumerate(meta.get("stages", [])):
                    rollouts = stage.get("rollouts", {})
                    run.log_metrics({"stage_heldout_step_accuracy": stage["heldout_step_accuracy"],
                                     **({"dagger_rollout_success": rollouts["success"],
                                         "dagger_learner_agreement": rollouts["learner_agreement"]}
                                        if rollouts else {})}, step=k)
                run.log_file(out / LONDI_META)
        paths.append(out)
    return paths[0], paths[1]


def training_notes(profile: Profile, paths: list[Path]) -> str:
    """TRAINING.md for committed checkpoints: the command, the machine, and each stage's numbers."""
    import platform

    import torch

    lines = [f"# The {profile.name} profile's offline pairs", "",
             f"Copied here by `python -m bench.models --profile {profile.name} --commit` (what `make models` runs, "
             f"plus the copy; `--suites` picks the suite, `--pair causal` the decoder-only pair, whose folders start "
             f"with its architecture), these notes written at git {git_commit()} on {platform.machine()} with "
             f"{os.cpu_count()} CPUs, torch {torch.__version__}. A pair copied at an earlier commit keeps its "
             "weights and its training seconds, measured on the machine that trained it: the cache key in its "
             "folder name (recipe and demonstrations) says it is still the code's. The full loss curves are in each "
             "model's londi.json and in the MLflow training runs.", ""]
    for path in paths:
        meta = json.loads((path / LONDI_META).read_text())
        arch = meta.get("recipe", {}).get("arch", "t5")
        lines += [f"## {meta['name']} ({arch}): `{path.name}`", "",
                  f"context `{meta['context']}`, {meta['non_embedding_params']} non-embedding parameters, "
                  f"{meta.get('total_steps', meta['recipe']['steps'])} training steps, {meta['train_s']} s in all, "
                  f"held-out step accuracy against the expert (BabyAIBot; ScienceWorld's gold paths on dev variations) "
                  f"{meta['heldout_step_accuracy']:.3f}"
                  + (f" ({meta['heldout_replayable_accuracy']:.3f} on the {meta['heldout_replayable_pairs']} held-out "
                     f"pairs whose gold paths replay the same every time, measured at {meta['heldout_remeasured']})"
                     if "heldout_remeasured" in meta else "") + ".", ""]
        if not meta.get("stages"):  # behaviour cloning alone (ScienceWorld's pairs)
            lines += [f"Behaviour cloning only: {meta['train_pairs']} (prompt, action) pairs, final loss "
                      f"{meta['final_loss']}.", ""]
            continue
        lines += ["| stage | train pairs | train s | final loss | held-out step accuracy | rollout success (beta) "
                  "| learner agrees with bot |", "|---|---|---|---|---|---|---|"]
        for stage in meta.get("stages", []):
            rollouts = stage.get("rollouts")
            extra = (f"{rollouts['success']:.3f} ({rollouts['beta']}) | {rollouts['learner_agreement']:.3f}"
                     if rollouts else "- | -")
            lines.append(f"| {stage['stage']} | {stage['train_pairs']} | {stage['train_s']} | {stage['final_loss']} "
                         f"| {stage['heldout_step_accuracy']:.3f} | {extra} |")
        lines.append("")
    return "\n".join(lines)


def load_pair(quick: str | Path, deepthink: str | Path, device: str = "cpu") -> tuple[ActionLM, ActionLM]:
    """The two models by hub name or local path; `random` is a uniformly random policy (the ablation)."""
    return load_model(quick, device=device), load_model(deepthink, device=device)


def remeasure(profile: Profile, suite: str, paths: Sequence[Path]) -> None:
    """Measure the pair's held-out step accuracy on the held-out expert paths that replay the same every time (not
    SCIENCEWORLD_UNREPLAYABLE_GOLD's), into its londi.json beside the figure recorded at training: what
    tests/test_checkpoints.py, which plays the held-out paths again, can compare exactly."""
    if suite == "scienceworld":
        heldout = load_scienceworld_demos(profile, progress=False)[1]
    else:
        heldout = load_demos(profile, progress=False)[1]
    heldout = [d for d in heldout if d.level not in SCIENCEWORLD_UNREPLAYABLE_GOLD]
    commit = git_commit()  # before the first record is written (which would make the tree dirty)
    for recipe, path in zip(recipes(profile, suite), paths, strict=True):
        meta = json.loads((path / LONDI_META).read_text())
        held = list(demo_lib.pairs(heldout, recipe.context))
        meta.update(heldout_replayable_accuracy=step_accuracy(load_lm(path), held, generate=recipe.generate),
                    heldout_replayable_pairs=len(held), heldout_remeasured=commit)
        (path / LONDI_META).write_text(json.dumps(meta, indent=1))


def train_pairs(profile: str = "cpu", retrain: bool = True, tracking_uri: str | None = None,
                commit: bool = False, suites: tuple[str, ...] = SUITES, remeasure_heldout: bool = False,
                pair: str = "t5") -> None:
    """Train the profile's offline QUICK and DEEPTHINK (`make models`) and print where they are.

    Args:
        profile: smoke, cpu or paper.
        retrain: train again even if cached.
        tracking_uri: MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).
        commit: also copy the pairs to checkpoints/<profile>/ (replacing that suite's pair there), with TRAINING.md.
        suites: babyai, scienceworld or both.
        remeasure_heldout: measure each pair's held-out step accuracy again (bench.models.cache.remeasure).
        pair: t5 (the profile's pair), causal (the same recipes as decoder-only models) or mixed (T5 QUICK,
            decoder-only DEEPTHINK).
    """
    chosen = with_pair(get_profile(profile), pair)
    check_tracking(tracking_uri)
    target = CHECKPOINTS / chosen.name
    for suite in suites:
        check_models_available(chosen, suite, retrain)
    for suite in suites:
        paths = ensure_models(chosen, retrain=retrain, tracking_uri=tracking_uri, suite=suite)
        if remeasure_heldout:
            remeasure(chosen, suite, paths)
        for path in paths:
            meta = json.loads((path / LONDI_META).read_text())
            print(f"{suite} {meta['role']}: {path} ({meta['non_embedding_params']} non-embedding params, "
                  f"{meta['train_s']} s, held-out step accuracy {meta['heldout_step_accuracy']:.3f})")
        if commit:
            target.mkdir(parents=True, exist_ok=True)
            for recipe, path in zip(recipes(chosen, suite), paths, strict=True):
                if path.parent == target:
                    continue  # the committed pair itself (its londi.json may have been measured again)
                for stale in target.glob(model_dir(chosen, recipe, suite).name.rsplit("-", 1)[0] + "-*"):
                    shutil.rmtree(stale)
                shutil.copytree(path, target / path.name)
    if commit:
        committed = sorted(p.parent for p in target.glob(f"*/{LONDI_META}"))
        (target / "TRAINING.md").write_text(training_notes(chosen, committed))
        print(f"committed to {target}")


def main() -> None:
    """`python -m bench.models` (what `make models` runs)."""
    with user_errors():
        tyro.cli(train_pairs)


if __name__ == "__main__":
    main()
