"""REPRODUCE.md, generated: every number in it is read from results/ (and the committed models' own
records in checkpoints/), none is typed by hand.

The text is the Jinja template `bench/reporting/REPRODUCE.md.j2`; its expressions call the helpers below
(`v`, `ci`, `pct`, `cell`, `ctx`, ...), which read `results/<profile>/<suite>.json`, `pair.json`,
`results/switching_mdp.json`, `results/benchmarks.json`, `results/smoke/reference.json` and the
committed models' `londi.json`. The claims table at the top is built here, one `Claim` per claim of
the paper, each with the command that checks it, what the cpu profile measured and whether that
meets it. `make reproduce` (cpu profile) regenerates the file; `make docs` does it alone, and the
test suite fails when REPRODUCE.md differs from what the results say.

    python -m bench.reporting.reproduce_doc            # write REPRODUCE.md
    python -m bench.reporting.reproduce_doc --check    # exit 1 when REPRODUCE.md is stale
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import tyro

from bench.common.provenance import REPO_ROOT
from bench.models.profiles import get_profile
from bench.reporting.report import PAPER_SAVING

ROOT = REPO_ROOT
TEMPLATE = Path(__file__).resolve().parent / "REPRODUCE.md.j2"
OUTPUT = ROOT / "REPRODUCE.md"


@dataclass
class Results:
    """Read access to one profile's results, for the template."""

    results: Path = ROOT / "results"
    profile: str = "cpu"
    checkpoints: Path = ROOT / "checkpoints"

    # ------------------------------------------------------------------ files
    def suite(self, suite: str) -> dict[str, Any]:
        return _json(self.results / self.profile / f"{suite}.json")

    def cell(self, suite: str, task: str, router: str) -> dict[str, Any]:
        for cell in self.suite(suite)["cells"]:
            if cell["task"] == task and cell["router"] == router:
                return cell
        raise KeyError(f"no cell ({task}, {router}) in results/{self.profile}/{suite}.json")

    def cells(self, suite: str, task: str) -> list[dict[str, Any]]:
        return [c for c in self.suite(suite)["cells"] if c["task"] == task]

    def ctx(self, suite: str, key: str) -> Any:
        context = self.suite(suite)["context"]
        for name, value in context.items():
            if name == key or name.startswith(key):
                return value
        raise KeyError(f"no {key!r} in the context of results/{self.profile}/{suite}.json")

    def verdict(self, suite: str, task: str) -> dict[str, Any]:
        return next(v for v in self.suite(suite)["verdicts"] if v["task"] == task)

    def h2h(self, suite: str, londi: str, other: str) -> dict[str, Any]:
        """The head-to-head row of `londi` against the router whose name starts with `other`."""
        for row in self.suite(suite)["head_to_head"]:
            if row["londi"] == londi and row["other"].startswith(other):
                return row
        raise KeyError(f"no head-to-head of {londi} against {other}*")

    def ablation(self, suite: str, router: str) -> dict[str, Any]:
        return next(r for r in self.suite(suite)["ablation"] if r["router"] == router)

    def model_cost(self, suite: str, model: str) -> dict[str, Any]:
        return next(r for r in self.suite(suite)["model_costs"] if r["model"] == model)

    def pair(self, task: str) -> dict[str, Any]:
        return next(t for t in _json(self.results / self.profile / "pair.json")["tasks"] if t["task"] == task)

    def pair_context(self, key: str) -> Any:
        return _json(self.results / self.profile / "pair.json")["context"][key]

    def mdp(self) -> dict[str, Any]:
        return _json(self.results / "switching_mdp.json")

    def bench(self, name: str) -> dict[str, Any]:
        for row in _json(self.results / "benchmarks.json")["benchmarks"]:
            if row["name"] == name:
                return row
        raise KeyError(f"no benchmark {name} in results/benchmarks.json")

    def bench_date(self) -> str:
        return _json(self.results / "benchmarks.json")["datetime"][:10]

    def regress(self) -> dict[str, Any]:
        return _json(self.results / "smoke" / "reference.json")

    def gpu_check(self) -> dict[str, Any]:
        return _json(self.results / "gpu_check_h200.json")

    def gpu_prompt_tokens(self, suite: str) -> int:
        """Prompt length of the Flan-T5-shape calls of `suite` in the GPU check."""
        return next(row["prompt_tokens"] for row in self.gpu_check()["flan_t5_shapes"] if row.get("suite") == suite
                    and "prompt_tokens" in row)

    def model(self, suite: str, role: str) -> dict[str, Any]:
        """The committed model's own record (checkpoints/<profile>/<dir>/londi.json)."""
        prefix = f"{role}-" if suite == "babyai" else f"{suite}-{role}-"
        dirs = sorted(p for p in (self.checkpoints / self.profile).glob(f"{prefix}*") if (p / "londi.json").exists())
        if len(dirs) != 1:
            raise KeyError(f"expected one committed {suite} {role} model in checkpoints/{self.profile}, found {dirs}")
        return _json(dirs[0] / "londi.json")


@cache
def _json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: REPRODUCE.md is generated from it (run make reproduce)")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------- formatting
def num(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage number (0.55 -> 55.0)."""
    return "n/a" if x != x else f"{100 * x:.{digits}f}"


def interval(e: dict[str, float], digits: int = 3, percent: bool = False) -> str:
    show: Callable[[float], str] = (lambda x: pct(x, digits)) if percent else (lambda x: num(x, digits))
    return f"{show(e['mean'])} [{show(e['low'])}, {show(e['high'])}]"


def flat(cell: dict[str, Any], metric: str) -> dict[str, float]:
    """A results cell's metric as an interval (cells store metric, metric_ci_low, metric_ci_high)."""
    return {"mean": cell[metric], "low": cell[f"{metric}_ci_low"], "high": cell[f"{metric}_ci_high"]}


def sci(x: float, digits: int = 2) -> str:
    return f"{x:.{digits - 1}e}".replace("e+0", "e").replace("e+", "e")


def thousands(x: float) -> str:
    return f"{x:,.0f}"


# ---------------------------------------------------------------------- the claims table
@dataclass
class Claim:
    claim: str
    command: str
    measured: Callable[[Results], str]
    verdict: Callable[[Results], str]


def _londi_verdict(r: Results, suite: str, task: str) -> dict[str, Any] | None:
    try:
        return r.verdict(suite, task)["best_londi"]
    except (StopIteration, FileNotFoundError):
        return None


def _claim_30(r: Results) -> str:
    best = _londi_verdict(r, "babyai", "babyai/Mixed")
    if best is None:
        return "no LONDI setting keeps >= 95% of DEEPTHINK-only's reward on babyai/Mixed"
    random_best = r.cell("babyai", "babyai/Mixed", "random_switch[p=0.5]")
    return (f"babyai/Mixed: `{best['router']}` keeps {interval(best['reward_retained'])} of DEEPTHINK-only's reward "
            f"with {pct(r.cell('babyai', 'babyai/Mixed', best['router'])['deepthink_acted_fraction'])}% of steps on "
            f"DEEPTHINK: {interval(best['saving_compute_s'], 1, True)}% less compute time, "
            f"{pct(best['saving_flops']['mean'])}% fewer FLOPs (Switcher included). Random switching at p = 0.5 "
            f"keeps {num(random_best['reward_retained'])} with {pct(random_best['saving_compute_s'])}% less, so the "
            f"head-to-head row below is the real test")


def _verdict_30(r: Results) -> str:
    best = _londi_verdict(r, "babyai", "babyai/Mixed")
    return "**yes**" if best and best["saving"] >= PAPER_SAVING else "no"


def _londi_settings(r: Results, suite: str, task: str) -> list[dict[str, Any]]:
    return [c for c in r.cells(suite, task) if c["router"].startswith("londi") and "@" not in c["router"]]


def _claim_h2h(r: Results) -> str:
    rows = [row for row in r.suite("babyai")["head_to_head"] if row["other"].startswith("random_switch")]
    ahead = [row for row in rows if row["reward_diff"]["low"] > 0]
    best = max(rows, key=lambda row: row["reward_diff"]["mean"])
    named = ", ".join(f"`{row['londi']}` +{num(row['reward_diff']['mean'])}" for row in ahead)
    return (f"babyai/Mixed, paired on episodes: ahead of random switching at its own DEEPTHINK fraction in "
            f"{sum(row['reward_diff']['mean'] > 0 for row in rows)} of {len(rows)} settings, with an interval above 0 "
            f"in {len(ahead)} ({named}); largest: `{best['londi']}` {interval(best['reward_diff'])}")


def _verdict_h2h(r: Results) -> str:
    rows = [row for row in r.suite("babyai")["head_to_head"] if row["other"].startswith("random_switch")]
    ahead = sum(row["reward_diff"]["low"] > 0 for row in rows)
    return "**yes**" if ahead > len(rows) / 2 else ("partly" if ahead else "no")


def _budgets(r: Results) -> list[tuple[int, dict[str, Any]]]:
    cells = [c for c in _londi_settings(r, "babyai", "babyai/Mixed") if c["router"].startswith("londi_b[budget=")]
    return sorted((int(c["router"].split("=")[1].rstrip("]").split(",")[0]), c) for c in cells)


def _claim_budget(r: Results) -> str:
    return ("masked at evaluation, checked by tests/test_londi_sac.py (a Switcher that always wants DEEPTHINK stops "
            "at the budget in every episode); babyai/Mixed calls per episode (mean): "
            + ", ".join(f"budget {b}: {num(c['deepthink_calls'], 1)}" for b, c in _budgets(r)))


def _verdict_budget(r: Results) -> str:
    return "**yes**" if all(c["deepthink_calls"] <= b for b, c in _budgets(r)) else "no"


def _costs(r: Results) -> list[tuple[float, dict[str, Any]]]:
    cells = [c for c in _londi_settings(r, "babyai", "babyai/Mixed") if c["router"].startswith("londi_sac[c=")]
    return sorted((float(c["router"].split("=")[1].rstrip("]")), c) for c in cells)


def _claim_cost(r: Results) -> str:
    return ("babyai/Mixed, c -> DEEPTHINK fraction (reward): "
            + ", ".join(f"{c:g} -> {num(cell['deepthink_fraction'])} ({num(cell['reward'])})" for c, cell in _costs(r))
            + f"; on the switching chain the learned choice equals the DP optimum on {_mdp_matching(r)} states")


def _verdict_cost(r: Results) -> str:
    fractions = [cell["deepthink_fraction"] for _, cell in _costs(r)]
    return "**yes**" if all(a >= b for a, b in zip(fractions, fractions[1:], strict=False)) else "no"


def _mdp_matching(r: Results) -> str:
    rows = r.mdp()["rows"]
    matched = sum(int(row["states_matching"].split("/")[0]) for row in rows)
    total = sum(int(row["states_matching"].split("/")[1]) for row in rows)
    return f"{matched} of {total}"


def _londi_ablations(r: Results) -> list[dict[str, Any]]:
    """The ablation rows of LONDI settings (quick_only's is the random policy alone)."""
    return [row for row in r.suite("babyai")["ablation"] if row["router"].startswith("londi")]


def _claim_ablation(r: Results) -> str:
    rows = _londi_ablations(r)
    return "; ".join(f"babyai/Mixed `{row['router']}`: DEEPTHINK on "
                     f"{interval(row['deepthink_acted_fraction_real_quick'])} of steps with the real QUICK, "
                     f"{interval(row['deepthink_acted_fraction_random_quick'])} with a random one" for row in rows)


def _verdict_ablation(r: Results) -> str:
    rows = _londi_ablations(r)
    more = [row["deepthink_acted_fraction_random_quick"]["mean"] > row["deepthink_acted_fraction_real_quick"]["mean"]
            for row in rows]
    return "**yes**" if rows and all(more) else "no"


def _claim_sw(r: Results) -> str:
    parts = []
    for cell in r.suite("scienceworld")["cells"]:
        if cell["router"] == "deepthink_only":
            quick = r.cell("scienceworld", cell["task"], "quick_only")
            parts.append(f"{cell['task'].split('/')[1]} {num(quick['reward'])} / {num(cell['reward'])}")
    tasks = sorted({c["task"] for c in r.suite("scienceworld")["cells"]})
    best = [(t, _londi_verdict(r, "scienceworld", t)) for t in tasks]
    kept = [f"`{b['router']}` on {t}" for t, b in best if b is not None]
    unsolved = [t.split("/")[1] for t in tasks if r.cell("scienceworld", t, "deepthink_only")["reward"] == 0]
    return ("QUICK-only / DEEPTHINK-only reward: " + ", ".join(parts)
            + ("; LONDI at >= 95% of DEEPTHINK-only: " + ", ".join(kept) if kept else
               "; no LONDI setting keeps >= 95% of DEEPTHINK-only's reward")
            + (f" (DEEPTHINK-only scores 0 on {', '.join(unsolved)})" if unsolved else ""))


def _verdict_sw(r: Results) -> str:
    """yes where LONDI saves >= 30% at >= 95% of DEEPTHINK-only's reward on every task it ran on; partly on some."""
    runs = [v for v in r.suite("scienceworld")["verdicts"] if v["londi_settings_run"]]
    held = [v for v in runs if v["best_londi"] and v["best_londi"]["saving"] >= PAPER_SAVING]
    episodes = {r.cell("scienceworld", v["task"], "deepthink_only")["episodes"] for v in held}
    if not held:
        solved = any(r.cell("scienceworld", v["task"], "deepthink_only")["reward"] > 0 for v in runs)
        return "no" if solved else "not testable yet (the pair)"
    scope = f" ({' / '.join(map(str, sorted(episodes)))} episodes per task: wide intervals)"
    return ("**yes**" if len(held) == len(runs) else f"partly: on {len(held)} of the {len(runs)} LONDI tasks") + scope


CLAIMS = [
    Claim("The Switcher calls DEEPTHINK only where needed: up to 30% less GPU at the same task performance",
          "`make reproduce`: the verdict table of results/cpu/babyai.md", _claim_30, _verdict_30),
    Claim("LONDI beats switching without a policy at the same number of calls (the harness's control)",
          "`make reproduce`: the head-to-head table (random switching at each setting's own fraction)",
          _claim_h2h, _verdict_h2h),
    Claim("LONDI-B keeps its budget of DEEPTHINK calls", "`make test` (tests/test_londi_sac.py); the budget sweep",
          _claim_budget, _verdict_budget),
    Claim("A higher cost c gives fewer DEEPTHINK calls (c trades reward for calls)",
          "the c sweep of `make reproduce`; `python -m algos.switching_mdp`", _claim_cost, _verdict_cost),
    Claim("Plug and play with other LMs and encoders",
          "`--quick` / `--deepthink` with any Hugging Face seq2seq checkpoint; `londi_sac[encoder=transformer]`",
          lambda r: "tested, not measured: T5 and BART configurations act through the same `ActionLM` "
                    "(tests/test_lm.py), the paper's transformer encoder trains (tests/test_londi_sac.py); no "
                    "comparison of LMs or encoders in results/ yet",
          lambda r: "partly"),
    Claim("With a random QUICK, LONDI calls DEEPTHINK more", "`make reproduce`: the ablation table (`--quick random`)",
          _claim_ablation, _verdict_ablation),
    Claim("The same on ScienceWorld (the paper's main results)",
          "`make reproduce`: results/cpu/scienceworld.md", _claim_sw, _verdict_sw),
]


def claims_table(r: Results) -> str:
    lines = ["| claim | how it is checked | measured on the cpu profile | holds? |", "|---|---|---|---|"]
    for claim in CLAIMS:
        lines.append(f"| {claim.claim} | {claim.command} | {claim.measured(r)} | {claim.verdict(r)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- tables
def router_table(r: Results, suite: str, task: str, routers: list[str] | None = None, londi: bool = False) -> str:
    """Rows of `task`: the routers given (else every non-LONDI, non-ablation one), or LONDI's settings."""
    cells = r.cells(suite, task)
    if londi:
        cells = [c for c in cells if c["router"].startswith("londi")]
    elif routers is not None:
        cells = [r.cell(suite, task, name) for name in routers]
    else:  # the baselines: not LONDI, not the ablation, not the random switching matched to a LONDI setting
        matched = {row["other"] for row in r.suite(suite)["head_to_head"] if row["other"].startswith("random_switch")}
        cells = [c for c in cells if not c["router"].startswith("londi") and "@" not in c["router"]
                 and c["router"] not in matched]
    head = ("| router | reward | success | DEEPTHINK acts | calls / episode | saving (compute s) | saving (FLOPs) "
            "| reward retained |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        def opt(key: str, c: dict[str, Any] = c) -> str:
            return num(c[key]) if key in c and c[key] == c[key] else "-"

        name = c["router"].replace("@quick=random", ", random QUICK")
        lines.append(f"| {name} | {num(c['reward'])} | {num(c['success'])} | {num(c['deepthink_acted_fraction'])} | "
                     f"{num(c['deepthink_calls'], 2)} | {opt('saving_compute_s')} | {opt('saving_flops')} | "
                     f"{opt('reward_retained')} |")
    return "\n".join(lines)


def gpu_shape_table(r: Results) -> str:
    """Per decision at the paper's model sizes on the lent GPU (scripts/gpu_check.py --flan-t5-shapes): seconds,
    NVML GPU-seconds, energy and FLOPs of QUICK's and DEEPTHINK's shapes, and DEEPTHINK's multiple of each."""
    rows = r.gpu_check()["flan_t5_shapes"]
    calls = {(row["model"], row["suite"], row["batch"]): row for row in rows if "model" in row}
    lines = ["| suite, batch | QUICK (Flan-T5-small shape): ms / GPU-s / J per call | DEEPTHINK (Flan-T5-large shape) "
             "| DEEPTHINK / QUICK: seconds, GPU-s, energy, FLOPs |", "|---|---|---|---|"]

    def cost(row: dict[str, Any]) -> str:
        return (f"{row['ms_per_call_metered']:.1f} / {row['gpu_s'] / row['calls']:.4f} / "
                f"{row['gpu_energy_j'] / row['calls']:.1f}")

    for ratio in (row for row in rows if "ratio" in row):
        small, large = (calls[(f"flan-t5-{size}-shape", ratio["suite"], ratio["batch"])] for size in ("small", "large"))
        lines.append(f"| {ratio['suite']}, {ratio['batch']} | {cost(small)} | {cost(large)} | "
                     f"{ratio['ms_per_call_metered']:.1f}x, {ratio['gpu_s']:.1f}x, {ratio['gpu_energy_j']:.1f}x, "
                     f"{ratio['flops_per_call']:.1f}x |")
    return "\n".join(lines)


def pair_table(r: Results) -> str:
    lines = ["| task | QUICK success | DEEPTHINK success | gap | agreement |", "|---|---|---|---|---|"]
    for row in _json(r.results / r.profile / "pair.json")["tasks"]:
        name = row["task"].split("/")[1]
        cells = [interval(row["quick_success"], 1, True), interval(row["deepthink_success"], 1, True),
                 interval(row["success_gap"], 1, True), pct(row["agreement"]["mean"])]
        if name == "Mixed":
            name, cells = f"**{name}**", [f"**{c}**" for c in cells]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


HELDOUT_LEVELS = "heldout_levels"
"""results/<profile>/heldout_levels.json: the pair on BabyAI levels it never saw (bench.reproduce --report-as)."""


def heldout_levels_table(r: Results) -> str:
    """QUICK-only and DEEPTHINK-only on levels the pair never saw: success and reward with their intervals."""
    path = r.results / r.profile / f"{HELDOUT_LEVELS}.json"
    if not path.exists():
        return ("Not measured yet at this commit (`results/cpu/heldout_levels.json` is missing; the command above "
                "writes it).")
    made = _json(path)
    lines = ["| level (never seen by the pair) | QUICK-only success | DEEPTHINK-only success | QUICK-only reward "
             "| DEEPTHINK-only reward | episodes each |", "|---|---|---|---|---|---|"]
    for task in dict.fromkeys(c["task"] for c in made["cells"]):
        quick, deep = (next(c for c in made["cells"] if c["task"] == task and c["router"] == router)
                       for router in ("quick_only", "deepthink_only"))
        lines.append(f"| {task} | {interval(flat(quick, 'success'))} | {interval(flat(deep, 'success'))} | "
                     f"{interval(flat(quick, 'reward'))} | {interval(flat(deep, 'reward'))} | {quick['episodes']} |")
    context = made["context"]
    lines += ["", f"Made at git {context['git commit']} by `{context['command']}` (sweep "
                  f"{context['sweep (MLflow tag londi.sweep)']}, seeds {context['seeds']})."]
    return "\n".join(lines)


def benchmark_table(r: Results) -> str:
    rows = _json(r.results / "benchmarks.json")["benchmarks"]
    lines = ["| benchmark | mean | median | rounds | details |", "|---|---|---|---|---|"]
    for row in rows:
        stats = row["stats"]
        extra = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row["extra_info"].items())
        lines.append(f"| {row['name'].removeprefix('test_')} | {_seconds(stats['mean'])} | "
                     f"{_seconds(stats['median'])} | {stats['rounds']} | {extra} |")
    return "\n".join(lines)


def _seconds(s: float) -> str:
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def render(results: Results | None = None) -> str:
    r = results or Results()
    _json.cache_clear()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    cpu = get_profile("cpu")
    helpers = {"r": r, "num": num, "pct": pct, "interval": interval, "flat": flat, "sci": sci, "thousands": thousands,
               "claims_table": lambda: claims_table(r), "pair_table": lambda: pair_table(r),
               "router_table": lambda *a, **k: router_table(r, *a, **k), "benchmark_table": lambda: benchmark_table(r),
               "gpu_shape_table": lambda: gpu_shape_table(r), "heldout_levels_table": lambda: heldout_levels_table(r),
               "mdp_matching": lambda: _mdp_matching(r), "minutes": lambda s: f"{s / 60:.1f}",
               "cpu": cpu, "sw_sweep": [t for t in cpu.sweep_tasks if t.startswith("scienceworld/")]}
    return env.get_template(TEMPLATE.name).render(**helpers)


@dataclass
class Args:
    """Write REPRODUCE.md from results/ (or check that it is up to date)."""

    check: bool = False
    """exit 1, writing nothing, when REPRODUCE.md differs from what results/ gives"""


def main(args: Args) -> int:
    text = render()
    if args.check:
        if OUTPUT.read_text() != text:
            print("REPRODUCE.md is stale: regenerate it with make docs (python -m bench.reporting.reproduce_doc)",
                  file=sys.stderr)
            return 1
        print("REPRODUCE.md matches results/")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    from bench.common.errors import user_errors

    with user_errors():
        sys.exit(main(tyro.cli(Args)))
