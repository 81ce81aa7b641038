"""The offline model pair of a profile: demonstrations, training and the on-disk cache.

A trained model lives under `<cache>/models/<profile>/<role>-<key>`, where the key hashes the
recipe and the demonstrations it was cloned from, so changing either trains a new model and an
unchanged one is reused. `make models` forces retraining. Each training is also an MLflow run
(its recipe as params, the loss curve as a metric), so its cost is on record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from bench import demos as demo_lib
from bench.lm import LONDI_META, ActionLM
from bench.profiles import Profile
from bench.tasks import BABYAI_LEVELS, BABYAI_MAX_STEPS
from bench.tracking import RunLogger
from bench.dagger import train_with_dagger
from bench.train import ModelRecipe

FORMAT_VERSION = 4  # bump when the text format or training code changes what a recipe produces


def cache_dir() -> Path:
    return Path(os.environ.get("LONDI_CACHE", Path.cwd() / ".cache" / "londi"))


def _demo_config(profile: Profile) -> dict:
    return {
        "levels": list(BABYAI_LEVELS.values()),
        "demo_seeds": profile.demo_seeds,
        "heldout_seeds": profile.heldout_seeds,
        "max_steps": BABYAI_MAX_STEPS,
        "format": FORMAT_VERSION,
    }


def model_dir(profile: Profile, recipe: ModelRecipe) -> Path:
    key = json.dumps({"recipe": asdict(recipe), "demos": _demo_config(profile)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "models" / profile.name / f"{recipe.role}-{digest}"


def load_demos(profile: Profile) -> tuple[list[demo_lib.Demo], list[demo_lib.Demo]]:
    """Training and held-out demonstrations, collected once per profile and reused."""
    levels = list(BABYAI_LEVELS.values())
    total = profile.demo_seeds + profile.heldout_seeds
    config = {k: v for k, v in _demo_config(profile).items() if k != "heldout_seeds"} | {"seeds": total}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "demos" / f"babyai-{total}x{len(levels)}-{digest}.jsonl.gz"
    demos = demo_lib.collect(levels, range(total), BABYAI_MAX_STEPS, path)
    train_demos = [d for d in demos if d.seed < profile.demo_seeds]
    heldout = [d for d in demos if d.seed >= profile.demo_seeds]
    return train_demos, heldout


def ensure_models(profile: Profile, retrain: bool = False, tracking_uri: str | None = None) -> tuple[Path, Path]:
    """Paths of the profile's QUICK and DEEPTHINK, training whichever is not cached yet."""
    paths = []
    demos: tuple[list[demo_lib.Demo], list[demo_lib.Demo]] | None = None
    for recipe in (profile.quick, profile.deepthink):
        out = model_dir(profile, recipe)
        if retrain and out.exists():
            shutil.rmtree(out)
        if not (out / LONDI_META).exists():
            demos = demos or load_demos(profile)
            train_pairs = sum(len(d.actions) for d in demos[0])
            name = f"{profile.name}-{recipe.role}"
            params = {**asdict(recipe), "profile": profile.name, "demo_pairs": train_pairs,
                      **{f"demos.{k}": v for k, v in _demo_config(profile).items()}}
            with RunLogger(f"train__{name}", params, tags={"londi.kind": "train", "londi.role": recipe.role},
                           uri=tracking_uri) as run:
                tmp = out.with_name(out.name + ".partial")
                for stale in out.parent.glob(tmp.name + "*"):
                    shutil.rmtree(stale)
                meta = train_with_dagger(recipe, demos[0], demos[1], list(BABYAI_LEVELS.values()),
                                         BABYAI_MAX_STEPS, tmp, name=name, device=profile.device)
                for stage in out.parent.glob(tmp.name + ".*"):  # the intermediate DAgger checkpoints
                    shutil.rmtree(stage)
                tmp.rename(out)  # a half-written model never looks cached
                for row in meta["log"]:
                    run.log_metrics({"train_loss": row["loss"]}, step=row["step"])
                run.log_metrics({k: meta[k] for k in ("train_s", "final_loss", "heldout_step_accuracy",
                                                     "non_embedding_params", "epochs")})
                for k, stage in enumerate(meta["stages"]):
                    rollouts = stage.get("rollouts", {})
                    run.log_metrics({"stage_heldout_step_accuracy": stage["heldout_step_accuracy"],
                                     **({"dagger_rollout_success": rollouts["success"],
                                         "dagger_learner_agreement": rollouts["learner_agreement"]}
                                        if rollouts else {})}, step=k)
                run.log_file(out / LONDI_META)
        paths.append(out)
    return paths[0], paths[1]


def load_pair(quick: str | Path, deepthink: str | Path, device: str = "cpu") -> tuple[ActionLM, ActionLM]:
    return ActionLM.load(quick, device=device), ActionLM.load(deepthink, device=device)


if __name__ == "__main__":
    import tyro

    from bench.profiles import get_profile

    def main(profile: str = "cpu", retrain: bool = True, tracking_uri: str | None = None) -> None:
        """Train the profile's offline QUICK and DEEPTHINK (`make models`) and print where they are.

        Args:
            profile: smoke, cpu or paper.
            retrain: train again even if cached.
            tracking_uri: MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).
        """
        for path in ensure_models(get_profile(profile), retrain=retrain, tracking_uri=tracking_uri):
            meta = json.loads((path / LONDI_META).read_text())
            print(f"{meta['role']}: {path} ({meta['non_embedding_params']} non-embedding params, "
                  f"{meta['train_s']} s, held-out step accuracy {meta['heldout_step_accuracy']:.3f})")

    from bench.cli import user_errors

    with user_errors():
        tyro.cli(main)
