"""The package's layers: every import of every module points down (or sideways within a layer), none in a circle.

Imports are read from the source (ast), inside functions too, so a deferred import cannot hide an upward one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import bench

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "algos", "baselines")

LAYERS = {
    "bench": 0,  # the package itself: the moved-module aliases, nothing of the layers
    "bench.common": 0,
    "bench.envs": 1,
    "bench.models": 2,
    "bench.running": 3,
    "bench.reporting": 4,
    "bench.cli": 5,
    "bench.reproduce": 5,
    "bench.regress": 5,
    "bench.calibrate": 5,
    "bench.hindsight": 5,
    "bench.rename_effect": 5,
    "bench.scaling": 5,
    "algos": 6,  # routers plug in from outside: they may use any of bench, bench never names them
    "baselines": 6,
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its source), for every module under `packages`."""
    modules = {module_name(p, root): p for package in packages for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from bench.models import demos` imports the module bench.models.demos
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            targets.update(n for n in names if n in modules and n != name)
        graph[name] = targets
    return graph


def layer(module: str) -> int:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                  if layer(target) > layer(source))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each a list of its modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_no_module_imports_a_layer_above_its_own(graph: dict[str, set[str]]) -> None:
    assert upward_imports(graph) == []


def test_no_import_cycle_among_the_project_modules(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_every_module_belongs_to_a_layer(graph: dict[str, set[str]]) -> None:
    flat = sorted(m for m in graph if m.startswith("bench.") and m.count(".") == 1 and m not in LAYERS)
    assert flat == [], "a module directly in bench/ that is not an entry point: put it in its layer's subpackage"


def test_the_project_uses_no_flat_layout_name(graph: dict[str, set[str]]) -> None:
    """The old names are aliases for users' code (bench/__init__.py: MOVED); the harness itself uses the new ones."""
    old = {m: sorted(t for t in _raw_imports(m) if t in bench.MOVED) for m in graph}
    assert {m: names for m, names in old.items() if names} == {}


def _raw_imports(module: str) -> set[str]:
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_checks_say_no_to_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """On a made-up tree: envs importing running is upward, and running <-> models is a cycle."""
    files = {
        "bench/__init__.py": "",
        "bench/envs/__init__.py": "",
        "bench/envs/tasks.py": "def f():\n    from bench.running.runner import run\n",
        "bench/models/__init__.py": "",
        "bench/models/lm.py": "from bench.running import runner\n",
        "bench/running/__init__.py": "",
        "bench/running/runner.py": "import bench.models.lm\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    made_up = import_graph(tmp_path, ("bench",))
    assert upward_imports(made_up) == ["bench.envs.tasks -> bench.running.runner",
                                       "bench.models.lm -> bench.running",
                                       "bench.models.lm -> bench.running.runner"]
    assert cycles(made_up) == [["bench.models.lm", "bench.running.runner"]]


def test_a_module_of_the_flat_layout_still_imports_as_the_module_it_moved_to() -> None:
    import bench.router
    from bench.runner import run_episodes

    import bench.running.router
    from bench.running.runner import run_episodes as moved

    assert bench.router is bench.running.router and run_episodes is moved


def test_code_written_against_the_flat_layout_still_finds_its_names() -> None:
    from bench.evaluate import EvalArgs, evaluate, run_cli, train_and_evaluate  # noqa: F401

    from bench.models import CHECKPOINTS, ensure_models  # noqa: F401  (the old bench/models.py)
    from bench.running.evaluate import evaluate as moved

    assert evaluate is moved


def test_the_commit_is_dirty_for_changed_code_but_not_for_the_harnesss_own_outputs(tmp_path) -> None:
    """bench.common.provenance.git_commit on a throwaway checkout: results/ rewritten by a sweep leave it clean."""
    import subprocess

    from bench.common import provenance

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    for name in ("code.py", "results/table.csv", "REPRODUCE.md"):
        (tmp_path / name).write_text("1\n")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    root = provenance.REPO_ROOT
    try:
        provenance.REPO_ROOT = tmp_path
        clean = provenance.git_commit()
        (tmp_path / "results" / "table.csv").write_text("2\n")
        (tmp_path / "REPRODUCE.md").write_text("2\n")
        assert provenance.git_commit() == clean and len(clean) == 7
        (tmp_path / "code.py").write_text("2\n")
        assert provenance.git_commit() == clean + "-dirty"
    finally:
        provenance.REPO_ROOT = root
