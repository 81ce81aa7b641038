"""Profiles: how big a run is, from the seconds-long smoke test to the paper's GPU setting.

- smoke: tiny models trained in seconds on a few demonstrations; what tests and CI use.
- cpu: the default of `make reproduce`; both offline models trained by the harness on a
  2-core machine without a GPU or the model hub.
- paper: Flan-T5-small and Flan-T5-large from the hub, fine-tuned on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.tasks import task_names
from bench.train import ModelRecipe


@dataclass(frozen=True)
class Profile:
    name: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    episodes: int
    """Evaluation episodes per task and seed."""
    batch_size: int
    """Environments run in lockstep (model calls are batched over them)."""
    demo_seeds: int
    """BabyAIBot demonstration episodes per level."""
    heldout_seeds: int
    """Further demonstration episodes per level, held out to measure per-step accuracy."""
    quick: ModelRecipe
    deepthink: ModelRecipe
    device: str = "cpu"
    sweep_tasks: tuple[str, ...] = ("babyai/Mixed",)
    """Tasks of the learned routers' sweeps (each setting trains per task and seed), matched random, ablation."""
    router_train_episodes: int = 200
    """Online training episodes of a learned router per task and seed (unless its options say otherwise)."""


BABYAI_TASKS = tuple(task_names("babyai"))

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        tasks=("babyai/GoToLocal", "babyai/Mixed"),
        seeds=(0,),
        episodes=4,
        batch_size=4,
        demo_seeds=12,
        heldout_seeds=2,
        router_train_episodes=4,
        quick=ModelRecipe(role="quick", context="reflex", d_model=16, d_ff=32, layers=1, heads=2,
                          steps=30, batch_size=16, lr=3e-3, warmup_steps=5),
        deepthink=ModelRecipe(role="deepthink", context="memory", d_model=32, d_ff=64, layers=2, heads=2,
                              steps=30, batch_size=16, lr=3e-3, warmup_steps=5,
                              dagger_betas=(0.0,), dagger_episodes=2, dagger_steps=10),
    ),
    "cpu": Profile(
        name="cpu",
        tasks=BABYAI_TASKS,
        seeds=(0, 1, 2),
        episodes=40,
        batch_size=40,
        demo_seeds=1000,
        heldout_seeds=50,
        # Both models get the same schedule shape: behaviour cloning to convergence, then three
        # DAgger rounds with beta going to 0. What differs is what each is: QUICK a small model that
        # reads the current view and its last action; DEEPTHINK a model ~6x wider and deeper that
        # reads the episode memory too (bench/babyai_memory.py).
        quick=ModelRecipe(role="quick", context="reflex", d_model=48, d_ff=192, layers=2, heads=4,
                          steps=3000, batch_size=64, lr=1e-3, warmup_steps=200,
                          dagger_betas=(0.5, 0.2, 0.0), dagger_episodes=150, dagger_steps=800),
        deepthink=ModelRecipe(role="deepthink", context="memory", d_model=96, d_ff=384, layers=3, heads=4,
                              steps=2500, batch_size=64, lr=5e-4, warmup_steps=300,
                              dagger_betas=(0.5, 0.2, 0.0), dagger_episodes=150, dagger_steps=1000),
    ),
    "paper": Profile(
        name="paper",
        tasks=BABYAI_TASKS,
        seeds=(0, 1, 2, 3, 4),
        episodes=100,
        batch_size=64,
        demo_seeds=1000,
        heldout_seeds=100,
        # The cpu pair's recipe on the paper's models: same inputs, same BC + DAgger schedule.
        quick=ModelRecipe(role="quick", context="reflex", d_model=0, d_ff=0, layers=0, heads=0,
                          steps=3000, batch_size=32, lr=3e-4, warmup_steps=200, init_from="google/flan-t5-small",
                          dagger_betas=(0.5, 0.2, 0.0), dagger_episodes=150, dagger_steps=1000),
        deepthink=ModelRecipe(role="deepthink", context="memory", d_model=0, d_ff=0, layers=0, heads=0,
                              steps=3000, batch_size=32, lr=1e-4, warmup_steps=200,
                              init_from="google/flan-t5-large",
                              dagger_betas=(0.5, 0.2, 0.0), dagger_episodes=150, dagger_steps=1000),
        device="cuda",
        sweep_tasks=BABYAI_TASKS,
        router_train_episodes=1000,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}") from None
