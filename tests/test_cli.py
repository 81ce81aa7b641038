"""Tests of the command lines a user runs: a baseline's --help, `python -m bench.reproduce --profile
smoke` end to end (with a user router from its own file), and its errors for unknown names."""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import tyro
from mlflow import MlflowClient

from bench.cli import EvalArgs
from bench.common.errors import user_errors
from bench.envs.tasks import task_names

REPO = Path(__file__).resolve().parent.parent
USER_ROUTER = '''
import numpy as np

from bench.running.router import Router, StepView


class EvenSteps(Router):
    """DEEPTHINK on even steps, QUICK on odd ones."""

    name = "even_steps"

    def route(self, view: StepView) -> np.ndarray:
        return view.steps % 2 == 0
'''


def run_module(module: str, *args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # carries LONDI_CACHE and MLFLOW_TRACKING_URI set by the fixtures
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (REPO, extra_path) if p is not None)
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def logged_runs(uri: str) -> list:
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists():
        return []
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def in_process(module: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`python -m <module> <args>` run in this process (no interpreter start): exit status, stdout, stderr.

    Only for commands that end before they run anything (help, bad input): the real command line of each
    entry point is exercised by a subprocess test too."""
    entry = importlib.import_module(module)
    with pytest.raises(SystemExit) as ended:
        with user_errors():
            parsed = tyro.cli(entry.Args, args=list(args))
            entry.main(parsed)
    out = capsys.readouterr()
    return ended.value.code or 0, out.out, out.err


def test_baseline_help_shows_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = in_process("baselines.quick_only", "--help", capsys=capsys)
    assert status == 0
    for field in dataclasses.fields(EvalArgs):
        assert f"--{field.name.replace('_', '-')}" in out, field.name
    assert "babyai/Mixed" in out  # the default task is shown


@pytest.mark.parametrize(("module", "options"), [
    ("baselines.random_switch", ("--p",)),
    ("baselines.confidence_cascade", ("--measure", "--threshold")),
    ("baselines.follow_deepthink_where_they_differ", ()),
    ("baselines.stuck_rule", ("--seen", "--still")),
    ("algos.hindsight_supervised", ("--labels", "--threshold", "--epochs", "--train-episodes")),
    ("baselines.swiftsage", ("--warmup", "--patience", "--window", "--max-deepthink")),
    ("algos.londi_sac", ("--c", "--train-episodes", "--encoder", "--load")),
    ("algos.londi_b", ("--budget", "--penalty", "--c", "--train-episodes", "--encoder", "--load")),
])
def test_every_router_file_is_a_command_line_with_its_options(module: str, options: tuple[str, ...],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = in_process(module, "--help", capsys=capsys)
    assert status == 0
    for option in ("--task", "--seeds", "--episodes", *options):
        assert option in out, option


def test_reproduce_smoke_writes_the_report_with_a_user_router(londi_cache: Path, tracking_uri: str,
                                                              tmp_path: Path) -> None:
    """The whole comparison on the smoke profile: baselines and a user's router on every task; on the sweep
    task (Mixed) the learned routers, random switching at each one's DEEPTHINK fraction, and the ablation."""
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "mymod.py").write_text(USER_ROUTER)
    results = tmp_path / "results"
    done = run_module("bench.reproduce", "--profile", "smoke", "--results-dir", str(results), "--no-progress",
                      "--routers", "quick_only", "deepthink_only", "mymod:EvenSteps", "random_switch[p=0.25]",
                      "--learned", "londi_sac[c=0.01]", "londi_b[budget=2]",
                      "--ablation", "quick_only", "londi_sac[c=0.01]", extra_path=user_dir)
    assert done.returncode == 0, done.stderr

    tasks = ("babyai/GoToLocal", "babyai/Mixed")
    for task in tasks:
        for router in ("quick_only", "deepthink_only", "even_steps", "random_switch[p=0.25]"):
            assert f"| {task} | {router} | 4 (1) |" in done.stdout
    out = results / "smoke"
    for name in ("babyai.md", "babyai.csv", "babyai.json", "babyai_cost_reward.png"):
        assert (out / name).stat().st_size > 0, name

    table = pd.read_csv(out / "babyai.csv").set_index(["task", "router"])
    routers = ("quick_only", "deepthink_only", "even_steps", "random_switch[p=0.25]")
    learned = ("londi_sac[c=0.01]", "londi_b[budget=2]")
    ablation = ("quick_only@quick=random", "londi_sac[c=0.01]@quick=random")
    # Each learned setting is met by random switching with p = its DEEPTHINK fraction (3 decimals), and by the
    # confidence cascade calibrated to that fraction.
    fractions = [table.loc[("babyai/Mixed", r), "deepthink_acted_fraction"] for r in learned]
    matched = {f"random_switch[p={float(f'{p:.3f}')}]" for p in fractions}
    matched |= {f"confidence_cascade[fraction={float(f'{p:.3f}')},train_episodes=20]" for p in fractions}
    assert set(table.index) == ({(t, r) for t in tasks for r in routers}
                                | {("babyai/Mixed", r) for r in (*learned, *ablation, *matched)})
    for task in tasks:
        assert table.loc[(task, "even_steps"), "deepthink_fraction"] == pytest.approx(0.5, abs=0.05)
        assert table.loc[(task, "quick_only"), "deepthink_fraction"] == 0
        assert table.loc[(task, "deepthink_only"), "deepthink_fraction"] == 1
        assert 0 < table.loc[(task, "even_steps"), "saving_flops"] < table.loc[(task, "quick_only"), "saving_flops"]
    assert table.loc[("babyai/Mixed", "quick_only@quick=random"), "flops"] == 0  # a random QUICK costs nothing

    runs = logged_runs(tracking_uri)
    evals = [r for r in runs if r.data.tags.get("londi.kind") == "eval"]
    assert len(evals) == 8 + len(learned) + len(matched) + len(ablation)
    assert all(r.info.status == "FINISHED" for r in evals)
    random_runs = [r for r in evals if r.data.params["exp_name"] == "random_switch[p=0.25]"]
    assert len(random_runs) == 2 and all(r.data.params["router.p"] == "0.25" for r in random_runs)
    assert {r.data.params["quick.name"] for r in evals if r.data.params["exp_name"] in ablation} == {"random"}
    trained = [r for r in runs if r.data.tags.get("londi.kind") == "router_train"]
    # The matched cascades train too: they calibrate their threshold on training episodes, which they pay for.
    cascades = sorted(m for m in matched if m.startswith("confidence_cascade"))
    assert sorted(r.data.params["exp_name"] for r in trained) == sorted([*learned, ablation[1], *cascades])
    # ... and their bill is their episodes' model calls (no updates of their own): priced, in the amortised saving.
    bills = pd.read_csv(out / "babyai_training.csv").set_index("router").loc[cascades]
    assert bills["train_priced_s"].gt(0).all() and bills["train_flops"].gt(0).all()
    assert table.loc[[("babyai/Mixed", c) for c in cascades], "saving_amortised_1000"].notna().all()
    assert sum(r.data.tags.get("londi.kind") == "report" for r in runs) == 1
    markdown = (out / "babyai.md").read_text()
    assert "## LONDI head to head at the same DEEPTHINK fraction" in markdown
    assert "## Ablation: QUICK replaced by a random policy" in markdown


def test_unknown_task_fails_before_any_run(londi_cache: Path, tracking_uri: str, tmp_path: Path) -> None:
    done = run_module("bench.reproduce", "--profile", "smoke", "--tasks", "babyai/Nope",
                      "--results-dir", str(tmp_path))
    assert done.returncode != 0
    assert "unknown task 'babyai/Nope'" in done.stderr
    assert all(name in done.stderr for name in task_names())
    assert logged_runs(tracking_uri) == []


def test_unknown_router_fails_before_any_run(londi_cache: Path, tracking_uri: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = in_process("bench.reproduce", "--profile", "smoke", "--routers", "quick_only", "nope",
                                "--results-dir", str(tmp_path), capsys=capsys)
    assert status == 2
    assert "unknown router 'nope'" in err
    assert "quick_only" in err and "deepthink_only" in err and "module:Class" in err
    assert logged_runs(tracking_uri) == []


@pytest.mark.parametrize("args, message", [
    (("--tasks", "babyai/Nope"), "unknown task 'babyai/Nope'"),
    (("--episodes", "0"), "--episodes must be a positive number"),
    (("--seeds", "-1"), "run seed -1"),
    (("--profile", "huge"), "unknown profile 'huge'; known profiles: smoke, cpu, paper"),
    (("--learned", "londi_sac[c=-0.5]"), "the DEEPTHINK cost c must be >= 0, got -0.5"),
    (("--learned", "londi_b[budget=-1]"), "budget must be >= 0 DEEPTHINK calls per episode"),
    (("--learned", "londi_sac[encoder=lstm]"), "unknown encoder 'lstm'; choose one of words, transformer"),
    (("--learned", "londi_sac[load=/no/such/switcher]"), "no saved Switcher at /no/such/switcher"),
    (("--train-episodes", "0"), "--train-episodes must be >= 1"),
    (("--checkpoint-s", "-1"), "--checkpoint-s must be >= 0 seconds"),
    (("--tracking-uri", "http://127.0.0.1:9"),
     "cannot reach the MLflow tracking store at http://127.0.0.1:9 (ConnectionRefusedError: [Errno 111] Connection "
     "refused); start the server"),
    (("--resume", "no-such-sweep"), "no stopped sweep 'no-such-sweep'"),
    (("--device", "cuda:99"), "--device cuda:99: "),
    (("--routers", "quick_only", "random_switch[p=0.3]", "random_switch[p=0.3]"),
     "--routers gives random_switch[p=0.3] more than once"),
    (("--device", "tpu"), "--device 'tpu' is not a torch device"),
    (("--sampled", "0"), "--sampled 0.0: a sampling temperature must be > 0"),
    (("--controls", "stuck_rule", "stuck_rule"), "--controls on babyai/Mixed gives stuck_rule more than once"),
    (("--controls", "hindsight_supervised[threshold=2]"), "threshold must be a probability in [0, 1], got 2.0"),
    (("--pair", "causal"), "name it with --report-as NAME"),
    (("--pair", "bert", "--report-as", "x"), "unknown model pair 'bert'; pairs: t5, causal, mixed"),
    (("--deepthink", "http://127.0.0.1:9/v1", "--report-as", "x"), "cannot reach the model server at "
     "http://127.0.0.1:9/v1"),
    (("--executor", "dask"), "--executor 'dask': choose one of serial, ray"),
    (("--ray-workers", "0"), "--ray-workers must be >= 1"),
])
def test_bad_input_is_one_error_line_and_exit_2(args: tuple[str, ...], message: str, londi_cache: Path,
                                                 tracking_uri: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    sweeps = londi_cache / "sweeps"
    before = sorted(sweeps.glob("*")) if sweeps.exists() else []
    status, _, err = in_process("bench.reproduce", "--profile", "smoke", *args, "--results-dir", str(tmp_path),
                                capsys=capsys)
    assert status == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err
    assert logged_runs(tracking_uri) == []
    assert (sorted(sweeps.glob("*")) if sweeps.exists() else []) == before  # no sweep left behind


def test_a_hub_model_without_the_hub_is_refused_before_any_sweep_starts(londi_cache: Path, tracking_uri: str,
                                                                        tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The paper profile starts from Flan-T5 on the hub: without it, one line naming the model and the ways out."""
    from bench.models.hub import hub_unavailable

    if hub_unavailable("google/flan-t5-small") is None:
        pytest.skip("the hub (or a cached Flan-T5) is here: nothing to refuse")
    status, _, err = in_process("bench.reproduce", "--profile", "paper", "--tasks", "babyai/GoToLocal", "--learned",
                                "--ablation", "--routers", "quick_only", "--results-dir", str(tmp_path), capsys=capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1 and "'google/flan-t5-small'" in errors[0] and "HF_HUB_OFFLINE" in err
    assert logged_runs(tracking_uri) == [] and not (londi_cache / "models" / "paper").exists()


def test_missing_model_path_names_the_fix(londi_cache: Path, tracking_uri: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    done = run_module("baselines.quick_only", "--profile", "smoke", "--task", "babyai/GoToLocal",
                      "--quick", str(missing), "--deepthink", str(missing), "--episodes", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(missing) in done.stderr and "make models" in done.stderr


def test_reproduce_reports_only_the_suites_that_ran(londi_cache: Path, tracking_uri: str, tmp_path: Path,
                                                     sw_smoke_models) -> None:
    """A sweep task of the other suite with no learned setting and no ablation runs nothing there: its suite gets
    no report (it crashed drawing a plot of no tasks), the suite that ran gets its own."""
    from bench import reproduce

    args = tyro.cli(reproduce.Args, args=["--profile", "smoke", "--tasks", "babyai/GoToLocal", "--routers",
                                          "quick_only", "--sweep-tasks", "scienceworld/power-component", "--learned",
                                          "--no-match-random", "--ablation", "--no-progress",
                                          "--results-dir", str(tmp_path)])
    cells = reproduce.main(args)
    assert [(c.task, c.router) for c in cells] == [("babyai/GoToLocal", "quick_only")]
    # No scienceworld report (its sweep task ran nothing); the calibration beside the reports prices every call.
    assert sorted(p.name for p in (tmp_path / "smoke").glob("*.md")) == ["babyai.md", "calibration.md"]


def test_a_router_command_with_a_hub_model_and_no_hub_is_one_line_at_once(
        londi_cache: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m baselines.quick_only --quick google/flan-t5-small` where the hub does not answer."""
    from baselines.quick_only import Args, QuickOnly
    from bench.cli import run_cli
    from bench.models.hub import is_cached

    name = "google/flan-t5-small"
    if is_cached(name):
        pytest.skip(f"{name} is in this machine's Hugging Face cache")
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # nothing listens there: the hub is unreachable
    started = time.perf_counter()
    with pytest.raises(SystemExit) as ended:
        run_cli(QuickOnly, Args(profile="smoke", task="babyai/GoToLocal", quick=name, episodes=1, progress=False))
    err = capsys.readouterr().err
    assert ended.value.code == 2 and time.perf_counter() - started < 30
    assert err.count("error: ") == 1 and "Traceback" not in err and f"'{name}'" in err and "unreachable" in err
    assert logged_runs(tracking_uri) == []


def test_the_reports_command_line_reruns_the_same_sweep() -> None:
    """The `command:` of a report's header is the sweep's own command: read back, it gives the same options."""
    import shlex

    from bench.reproduce import RERUN_SKIPS, Args, command_line

    ran = Args(profile="smoke", tasks=("babyai/GoToObj", "babyai/Mixed[levels=GoToObj+Unlock]"),
               routers=("quick_only", "random_switch[p=0.3]", "mymod:EvenSteps[k=3]"), learned=(), ablation=(),
               match_random=False, seeds=(0, 2), episodes=5, results_dir=Path("/tmp/my results"),
               checkpoint_s=0.0, progress=False, resume="last")
    line = command_line(ran)
    assert line.startswith("python -m bench.reproduce --profile smoke ") and "--resume" not in line
    again = tyro.cli(Args, args=shlex.split(line)[3:])
    assert dataclasses.replace(again, **{k: getattr(ran, k) for k in RERUN_SKIPS}) == ran
    assert command_line(Args()) == "python -m bench.reproduce"


def test_a_router_that_raises_gets_the_resume_hint(londi_cache: Path, tracking_uri: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from bench.reproduce import Args, main

    (tmp_path / "broken_router.py").write_text(
        "from bench.router import Router\n\n"
        "class Broken(Router):\n    name = 'broken'\n\n    def route(self, view):\n"
        "        raise RuntimeError('my bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="my bug"):
        main(Args(profile="smoke", tasks=("babyai/GoToLocal",), routers=("quick_only", "broken_router:Broken"),
                  learned=(), ablation=(), episodes=2, seeds=(0,), results_dir=tmp_path / "results", progress=False,
                  state_dir=tmp_path / "sweeps"))
    err = capsys.readouterr().err
    sweep = re.search(r"--resume (reproduce-smoke-\S+)` continues where it stopped", err)
    assert "failed: RuntimeError: my bug" in err and sweep is not None
    assert (tmp_path / "sweeps" / sweep.group(1) / "args.json").exists()  # what the hint resumes is there
    statuses = sorted(r.info.status for r in logged_runs(tracking_uri))
    assert statuses == ["FAILED", "FINISHED"]  # quick_only finished and is kept; the broken run says it failed


def readme_router() -> str:
    """The README's example router, exactly as printed there."""
    text = (REPO / "README.md").read_text()
    start = text.index("```python\n# my_routers.py\n") + len("```python\n")
    return text[start:text.index("```", start)]


def test_the_readmes_router_runs_as_written_on_both_suites(londi_cache: Path, tracking_uri: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, sw_smoke_models) -> None:
    from bench.envs.tasks import get_task
    from bench.reproduce import Args, main
    from bench.running.runner import run_episodes

    (tmp_path / "my_routers.py").write_text(readme_router())
    monkeypatch.syspath_prepend(str(tmp_path))
    started = time.perf_counter()
    cells = main(Args(profile="smoke", routers=("quick_only", "deepthink_only", "my_routers:UnsureQuick[margin=0.3]",
                                                "my_routers:UnsureQuick[margin=0.3,every=4]"),
                      results_dir=tmp_path / "results", progress=False))
    wall_s = time.perf_counter() - started
    fraction = {(c.task, c.router): c.values["deepthink_fraction"].mean for c in cells}
    assert set(fraction) == {(task, router) for task in ("babyai/GoToLocal", "babyai/Mixed") for router in (
        "quick_only", "deepthink_only", "unsure_quick[margin=0.3]", "unsure_quick[margin=0.3,every=4]")}
    for task in ("babyai/GoToLocal", "babyai/Mixed"):  # DEEPTHINK on steps 0, 4, 8, ... at least
        assert fraction[(task, "unsure_quick[margin=0.3,every=4]")] >= 0.25
    runs = logged_runs(tracking_uri)
    params = [r.data.params for r in runs if r.data.params.get("exp_name", "").startswith("unsure")]
    assert params and all(p["router.margin"] == "0.3" for p in params)
    assert {p.get("router.every") for p in params} == {"0", "4"}
    assert wall_s < 120, f"the smoke example took {wall_s:.0f} s"
    assert not (REPO / "results" / "smoke" / "babyai.md").exists()  # nothing written into the tracked tree

    from my_routers import UnsureQuick  # on ScienceWorld, where the models generate their actions

    task = get_task("scienceworld/power-component[max_steps=3]")
    results, _ = run_episodes(UnsureQuick(margin=0.3), task, sw_smoke_models, task.eval_episode_seeds(0, 2),
                              batch_size=2, progress=False)
    assert [r.steps for r in results] and all(0 < r.steps <= 3 for r in results)


def test_no_progress_means_no_bar_at_all(tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """With --no-progress neither the demonstrations, the training, the episodes nor MLflow's artifact transfers
    draw a bar (a fresh cache: the smoke pair is trained here)."""
    from bench.reproduce import Args, main

    monkeypatch.setenv("LONDI_CACHE", str(tmp_path / "cache"))
    main(Args(profile="smoke", tasks=("babyai/GoToLocal",), routers=("quick_only", "deepthink_only"), episodes=2,
              results_dir=tmp_path / "results", progress=False))
    err = capsys.readouterr().err
    assert (tmp_path / "cache" / "models" / "smoke").exists()  # it did train
    assert "it/s]" not in err and "%|" not in err, err[-2000:]


@pytest.mark.parametrize("module, argv, spec", [
    ("algos.londi_b", [], "londi_b"),
    ("algos.londi_b", ["--budget", "4", "--c", "0.0"], "londi_b[budget=4,c=0.0]"),
    ("algos.londi_b", ["--encoder", "transformer", "--budget=2"], "londi_b[budget=2,encoder=transformer]"),
    ("algos.londi_sac", ["--no-greedy", "--load", "/tmp/switcher", "--seeds", "0", "1"],
     "londi_sac[greedy=false,load=/tmp/switcher]"),
    ("baselines.random_switch", ["--p", "0.3", "--task", "babyai/GoToLocal"], "random_switch[p=0.3]"),
    ("baselines.swiftsage", ["--patience", "5"], "swiftsage[patience=5]"),
])
def test_a_router_command_names_its_setting_as_reproduce_names_the_spec(module: str, argv: list[str],
                                                                        spec: str) -> None:
    from bench.cli import setting_label
    from bench.running.routers import router_spec

    entry = importlib.import_module(module)
    args = tyro.cli(entry.Args, args=argv)
    expected = router_spec(spec)
    assert setting_label(expected.cls, args, argv) == expected.label


@pytest.mark.parametrize("module", ["baselines.quick_only", "baselines.deepthink_only",
                                    "baselines.follow_deepthink_where_they_differ",
                                    "baselines.random_switch", "baselines.confidence_cascade", "baselines.swiftsage",
                                    "algos.londi_sac", "algos.londi_b"])
def test_every_router_command_says_what_it_is_in_its_help(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    entry = importlib.import_module(module)
    status, out, _ = in_process(module, "--help", capsys=capsys)
    first_line = " ".join(entry.Args.__doc__.split())[:40]
    assert status == 0 and first_line in " ".join(out.split())


def test_the_fixed_and_learned_routers_of_each_suite_come_from_the_profile_unless_given() -> None:
    from bench.envs.tasks import get_task
    from bench.models.profiles import CPU_SW_ROUTERS, ROUTERS, get_profile
    from bench.reproduce import Args, Plan

    cpu = get_profile("cpu")
    babyai, power = get_task("babyai/Mixed"), get_task("scienceworld/power-component")
    plan = Plan(Args(), cpu, (babyai.name, power.name))
    assert [s.label for s in plan.routers_for(babyai)] == list(ROUTERS)
    assert [s.label for s in plan.routers_for(power)] == list(CPU_SW_ROUTERS) != list(ROUTERS)
    assert plan.ablation_for(power) == [] and [s.label for s in plan.ablation_for(babyai)][0] == "quick_only"
    given = Plan(Args(routers=("quick_only",), ablation=("quick_only",)), cpu, (power.name,))
    assert [s.label for s in given.routers_for(babyai)] == [s.label for s in given.routers_for(power)] == ["quick_only"]
    assert [s.label for s in given.ablation_for(power)] == ["quick_only"]
