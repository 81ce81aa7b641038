"""Profiles: how big a run is, from the seconds-long smoke test to the paper's GPU setting.

- smoke: tiny models trained in seconds on a few demonstrations; what tests and CI use.
- cpu: the default of `make reproduce`; both offline models trained by the harness on a
  2-core machine without a GPU or the model hub.
- paper: Flan-T5-small and Flan-T5-large from the hub, fine-tuned on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.envs.tasks import SCIENCEWORLD_DEMO_ONLY, TaskSpec, task_names
from bench.models.train import ModelRecipe

FLAN_T5_SHAPES = {
    # google/flan-t5-small and google/flan-t5-large's config.json (gated-GELU feed-forward, untied output layer, a
    # 32128-entry vocabulary): the paper profile's pair, built from their configs where the hub is out of reach.
    "flan-t5-small-shape": dict(d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8, num_decoder_layers=8),
    "flan-t5-large-shape": dict(d_model=1024, d_ff=2816, d_kv=64, num_heads=16, num_layers=24, num_decoder_layers=24),
}

LONDI_SWEEP = (
    "londi_sac[c=0.001]", "londi_sac[c=0.003]", "londi_sac[c=0.01]", "londi_sac[c=0.03]", "londi_sac[c=0.1]",
    "londi_b[budget=2]", "londi_b[budget=4]", "londi_b[budget=6]",
)
"""The LONDI settings of a BabyAI sweep: five costs c and three budgets."""
CPU_LONDI = ("londi_sac[c=0.001]", "londi_sac[c=0.003]", "londi_sac[c=0.01]", "londi_sac[c=0.03]",
             "londi_b[budget=2]", "londi_b[budget=4]")
"""The cpu profile's LONDI settings on babyai/Mixed: LONDI_SWEEP without c = 0.1 and budget 6, which the committed
sweep at 52330e1 showed add no point to the curve (c = 0.1: DEEPTHINK on 1.9% of steps, reward 0.414 against
QUICK-only's 0.372; budget 6: 3.2 calls used on average), so that 5 seeds of every setting fit the time of 3."""


ROUTERS = (
    "quick_only", "deepthink_only", "follow_deepthink_where_they_differ", "swiftsage",
    "random_switch[p=0.25]", "random_switch[p=0.5]", "random_switch[p=0.75]",
    "confidence_cascade[threshold=0.2]", "confidence_cascade[threshold=0.5]", "confidence_cascade[threshold=0.8]",
)
"""The fixed routers of every task: the two models alone, the two baselines that use both, and a sweep of the random
switch's probability and the cascade's threshold."""
CPU_SW_ROUTERS = ("quick_only", "deepthink_only", "follow_deepthink_where_they_differ", "swiftsage",
                  "random_switch[p=0.5]", "confidence_cascade[threshold=0.5]")
"""The cpu profile's fixed routers on ScienceWorld: ROUTERS with one point of the random switch and of the cascade.
Both also run after every learned setting at that setting's own DEEPTHINK fraction (the matched controls the verdict
compares with), and the two sweeps cost a third of the ScienceWorld part's time (find-living-thing and
use-thermometer: 50 episodes each of 20-40 s per 50 here)."""


CPU_CONTROLS = (
    "londi_sac[c=0.01,cues=false]", "londi_sac[c=0]", "stuck_rule",
    "hindsight_supervised[labels=checkpoints/cpu/hindsight,train_episodes=40,threshold=0.5]",
    "hindsight_supervised[labels=checkpoints/cpu/hindsight,train_episodes=40,threshold=0.8]",
)
"""The cpu profile's controls on babyai/Mixed (issue 17): LONDI without the hand-made cues (at the c of the
verdicts' middle setting) and at c = 0, the "DEEPTHINK when stuck" rule, and the supervised router on the committed
search's labels of the sweep's router training episodes (40 per seed; its threshold chosen on validation)."""


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
    sweep_tasks: tuple[str, ...] = ("babyai/Mixed", "scienceworld/power-component")
    """Tasks of the learned routers' sweeps (each setting trains per task and seed), matched random, ablation."""
    router_train_episodes: int = 200
    """Online training episodes of a learned router per task and seed (unless its options say otherwise)."""
    sw_quick: ModelRecipe | None = None
    sw_deepthink: ModelRecipe | None = None
    """ScienceWorld's pair: one model per role for every ScienceWorld task (trained on all of them together)."""
    sw_demo_tasks: tuple[str, ...] | None = None
    """ScienceWorld tasks (simulator names) whose gold paths the pair is cloned from; unset: every registered one."""
    sw_extra_demo_tasks: tuple[str, ...] = ()
    """Further ScienceWorld tasks cloned from but not evaluated (bench.envs.tasks.SCIENCEWORLD_DEMO_ONLY)."""
    sw_demo_variations: int = 40
    """ScienceWorld gold paths per task: its first training variations, at most this many."""
    sw_heldout_variations: int = 5
    """ScienceWorld dev variations per task whose gold paths measure held-out step accuracy."""
    sw_rename: bool = False
    """Add renamed copies of the gold paths (bench.models.demos.renamed): the task's target swapped, everywhere, with
    another object of its kind in view, so that the task's text is the only way to know which one to use (issue 18);
    the held-out paths are not renamed."""
    sw_episodes: int | None = None
    """Evaluation episodes per ScienceWorld task and seed (at most its test variations); unset: `episodes`."""
    sw_seeds: tuple[int, ...] | None = None
    """Run seeds on ScienceWorld tasks; unset: `seeds`."""
    sw_router_train_episodes: int | None = None
    """Training episodes of a learned router on a ScienceWorld task; unset: `router_train_episodes`."""
    sweep_seeds: tuple[int, ...] | None = None
    """Run seeds on the sweep tasks, for every router there (a learned setting trains once per seed: its interval
    covers separately trained routers); unset: the suite's seeds."""
    sw_sweep_seeds: tuple[int, ...] | None = None
    """Run seeds on the ScienceWorld sweep tasks; unset: `sweep_seeds`."""
    valid_episodes: int = 0
    """Validation episodes per sweep task and seed, for every setting (where each router family's setting is
    chosen, apart from the test episodes it is reported on); 0: none, and no setting is chosen."""
    sw_valid_episodes: int | None = None
    """Validation episodes per ScienceWorld sweep task and seed (at most its dev variations); unset: valid_episodes."""
    routers: tuple[str, ...] = ROUTERS
    """Fixed routers of `make reproduce` on every task (`--routers` replaces them on both suites)."""
    sw_routers: tuple[str, ...] | None = None
    """Fixed routers on the ScienceWorld tasks; unset: `routers`."""
    learned: tuple[str, ...] = LONDI_SWEEP
    """Learned router settings of `make reproduce` on the BabyAI sweep tasks (BabyAI pays at most 1 per episode,
    so the paper's c of 0.1-0.5 already prices DEEPTHINK out)."""
    sw_learned: tuple[str, ...] = ("londi_sac[c=0.01]", "londi_b[budget=2]", "londi_b[budget=4]", "londi_b[budget=6]")
    """Learned router settings on the ScienceWorld sweep tasks (LONDI-B's budgets: the paper's picture)."""
    sw_ablation: bool = True
    """Run the paper's ablation (QUICK replaced by a random policy) on the ScienceWorld sweep tasks too."""
    hindsight: bool = False
    """Judge the routers on the BabyAI sweep tasks against the hindsight minimum of their test episodes (searched once
    per pair and kept: bench.running.hindsight; the cpu pair's is committed in checkpoints/cpu/hindsight)."""
    controls: tuple[str, ...] = ()
    """The controls of LONDI on the BabyAI sweep tasks (issue 17): LONDI without its cues and at c = 0, the stuck
    rule, the supervised router on the hindsight search's labels; run like the learned settings, not matched."""
    causal_arch: str = "llama"
    """The decoder-only architecture of the profile's causal and mixed pairs (with_pair)."""
    sampled: tuple[float, ...] = ()
    """Temperatures of QUICK-only and DEEPTHINK-only with sampled actions on the BabyAI sweep tasks (each a family
    whose temperature is chosen on validation like any setting, where one keeps the reward there; every temperature
    meets LONDI in the head-to-head): does any noise break the loops that mixing breaks?"""


    def episodes_for(self, task: TaskSpec) -> int:
        """Evaluation episodes per seed of `task` (ScienceWorld's own number where the profile sets one)."""
        return self.sw_episodes if task.suite == "scienceworld" and self.sw_episodes else self.episodes

    def seeds_for(self, task: TaskSpec) -> tuple[int, ...]:
        return self.sw_seeds if task.suite == "scienceworld" and self.sw_seeds else self.seeds

    def sweep_seeds_for(self, task: TaskSpec) -> tuple[int, ...]:
        """Run seeds of every router on a sweep task."""
        if task.suite == "scienceworld" and self.sw_sweep_seeds:
            return self.sw_sweep_seeds
        return self.sweep_seeds or self.seeds_for(task)

    def train_episodes_for(self, task: TaskSpec) -> int:
        if task.suite == "scienceworld" and self.sw_router_train_episodes:
            return self.sw_router_train_episodes
        return self.router_train_episodes

    def valid_episodes_for(self, task: TaskSpec) -> int:
        if task.suite == "scienceworld" and self.sw_valid_episodes is not None:
            return self.sw_valid_episodes
        return self.valid_episodes

    def routers_for(self, task: TaskSpec) -> tuple[str, ...]:
        """The fixed routers on `task` (ScienceWorld's own where the profile sets them)."""
        return self.sw_routers if task.suite == "scienceworld" and self.sw_routers is not None else self.routers

    def learned_for(self, task: TaskSpec) -> tuple[str, ...]:
        return self.sw_learned if task.suite == "scienceworld" else self.learned


BABYAI_TASKS = tuple(task_names("babyai"))
SW_RELATED_TASKS = tuple(SCIENCEWORLD_DEMO_ONLY)
"""ScienceWorld tasks the cpu and paper pairs are also cloned from (not evaluated)."""
SCIENCEWORLD_TASKS = tuple(task_names("scienceworld"))

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        tasks=("babyai/GoToLocal", "babyai/Mixed"),
        sweep_tasks=("babyai/Mixed",),
        # What a newcomer tries first: the routers given, in seconds; no learned sweep unless asked for (make regress
        # runs the full smoke sweep, with LONDI_SWEEP: bench/regress.py).
        learned=(),
        sw_learned=(),
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
        sw_quick=ModelRecipe(role="quick", context="sw_now", d_model=16, d_ff=32, layers=1, heads=2, steps=80,
                             batch_size=8, lr=3e-3, warmup_steps=5, tokenizer="bpe", generate=True, vocab_size=300),
        sw_deepthink=ModelRecipe(role="deepthink", context="sw_history", d_model=32, d_ff=64, layers=2, heads=2,
                                 steps=60, batch_size=8, lr=3e-3, warmup_steps=5, tokenizer="bpe", generate=True,
                                 vocab_size=300),
        sw_demo_tasks=("power-component",),
        sw_rename=True,
        sw_demo_variations=3,
        sw_heldout_variations=1,
        sw_episodes=2,
    ),
    "cpu": Profile(
        name="cpu",
        tasks=BABYAI_TASKS + SCIENCEWORLD_TASKS,
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
        # ScienceWorld: behaviour cloning on the gold paths of every task's training variations together (and of five
        # related tasks that are not evaluated: more names to learn copying from), a subword vocabulary, actions
        # generated. QUICK reads the room and its last action; DEEPTHINK, ~6x its size, the recent actions with
        # their results and the inventory too (bench/contexts.py). Two attention heads: the prompts are 200-400
        # tokens, and per-head attention is most of a training step on a CPU (4 heads took 1.4-1.8x as long).
        sw_quick=ModelRecipe(role="quick", context="sw_now", d_model=48, d_ff=192, layers=2, heads=2,
                             steps=2000, batch_size=32, lr=1e-3, warmup_steps=100, tokenizer="bpe", generate=True),
        sw_deepthink=ModelRecipe(role="deepthink", context="sw_history", d_model=96, d_ff=384, layers=3, heads=2,
                                 steps=2000, batch_size=32, lr=7e-4, warmup_steps=100, tokenizer="bpe",
                                 generate=True),
        sw_extra_demo_tasks=SW_RELATED_TASKS,
        sw_demo_variations=60,
        sw_heldout_variations=5,
        # power-component trains on light bulbs only and tests on a motor and a buzzer (both in every workshop):
        # renamed copies of its gold paths make the component named in the task the only cue.
        sw_rename=True,
        # Every test variation of power-component (5) and lifespan (32), 50 of find-living-thing's and
        # use-thermometer's; greedy models on a deterministic simulator play a variation the same way every time, so
        # the fixed routers run one seed and the sweep tasks' routers three (three separately trained Switchers).
        sw_episodes=50,
        sw_seeds=(0,),
        sw_routers=CPU_SW_ROUTERS,
        # The paper's two ScienceWorld tasks: power-component for its picture of where LONDI-B calls DEEPTHINK, and
        # lifespan-longest-lived-then-shortest-lived.
        sweep_tasks=("babyai/Mixed", "scienceworld/power-component",
                     "scienceworld/lifespan-longest-lived-then-shortest-lived"),
        # On the first half of the dev variations (TaskSpec.router_seeds), cycled; the learning curves are in the
        # report (in the scratch sweep LONDI-SAC at c = 0.01 was flat from its first 20 of 100 episodes on
        # power-component: DEEPTHINK on 40-49% of training steps by fifths).
        sw_router_train_episodes=60,
        # The verdicts: every setting on the sweep tasks runs 5 seeds (5 separately trained Switchers per learned
        # setting: its interval covers the training seed) and validation episodes where each family's setting is
        # chosen. To stay near an hour the LONDI sweep keeps the part of the curve that moves: c = 0.1 and budget 6
        # left it (DEEPTHINK on 1.9% of steps, near QUICK-only; budget 6 used 3.2 calls of 6), see CPU_LONDI.
        sweep_seeds=(0, 1, 2, 3, 4),
        sw_sweep_seeds=(0, 1, 2),
        valid_episodes=20,
        # the second half of the dev variations: lifespan 15, power-component 2
        sw_valid_episodes=16,
        learned=CPU_LONDI,
        # LONDI-B at the paper's figure's budgets and LONDI-SAC at the c of the BabyAI verdicts' middle setting: in a
        # scratch sweep (2026-12-03, power-component, 3 seeds) c = 0.1 never called DEEPTHINK on the validation
        # variations (c = 0.01: on 15% of their steps) and cost 4 minutes of the half hour. No ablation here:
        # BabyAI's says what a random QUICK does to the Switcher, and on ScienceWorld it cost 4 minutes more.
        sw_learned=("londi_sac[c=0.01]", "londi_b[budget=2]", "londi_b[budget=4]", "londi_b[budget=6]"),
        sw_ablation=False,
        controls=CPU_CONTROLS,
        sampled=(0.3, 1.0),
        hindsight=True,
    ),
    "paper": Profile(
        name="paper",
        tasks=BABYAI_TASKS + SCIENCEWORLD_TASKS,
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
        sw_quick=ModelRecipe(role="quick", context="sw_now", d_model=0, d_ff=0, layers=0, heads=0, steps=3000,
                             batch_size=32, lr=3e-4, warmup_steps=200, init_from="google/flan-t5-small", generate=True),
        sw_deepthink=ModelRecipe(role="deepthink", context="sw_history", d_model=0, d_ff=0, layers=0, heads=0,
                                 steps=3000, batch_size=32, lr=1e-4, warmup_steps=200,
                                 init_from="google/flan-t5-large", generate=True),
        sw_extra_demo_tasks=SW_RELATED_TASKS,
        sw_demo_variations=1000,
        sw_heldout_variations=20,
        device="cuda",
        sweep_tasks=BABYAI_TASKS + SCIENCEWORLD_TASKS,
        valid_episodes=50,
        router_train_episodes=1000,
    ),
}


PAIRS = ("t5", "causal", "mixed")
"""The model pairs of a profile: its T5 pair; the same recipes as decoder-only models (the profile's causal_arch);
and a mixed pair, the T5 QUICK with the decoder-only DEEPTHINK."""


def with_pair(profile: Profile, pair: str) -> Profile:
    """The profile acting with another of its pairs (PAIRS): same recipes, data and schedule, other architectures.
    Each model is cached and committed under its own key, so the pairs live side by side."""
    if pair not in PAIRS:
        raise ValueError(f"unknown model pair {pair!r}; pairs: {', '.join(PAIRS)}")
    if pair == "t5":
        return profile

    def causal(recipe: ModelRecipe | None) -> ModelRecipe | None:
        return None if recipe is None else replace(recipe, arch=profile.causal_arch)

    quick = profile.quick if pair == "mixed" else causal(profile.quick)
    sw_quick = profile.sw_quick if pair == "mixed" else causal(profile.sw_quick)
    return replace(profile, quick=quick, deepthink=causal(profile.deepthink), sw_quick=sw_quick,
                   sw_deepthink=causal(profile.sw_deepthink))


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}") from None
