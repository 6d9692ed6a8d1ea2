"""The package's shape: every module imports on its own, the module-level imports follow the
layering rule below (so they form no cycle), and no module grows past MAX_LINES.

Layers, lowest first (CONTRIBUTING.md, "Layout"): a module imports, at module level, only
modules of its own layer or a lower one. Registries are looked up by name inside functions
(``config`` validating ``algorithm.name`` or ``env.adapter``), which the rule allows.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bdps_agents

ROOT = Path(bdps_agents.__file__).parent
MAX_LINES = 400

# top-level module or package of bdps_agents -> layer
LAYERS: dict[str, int] = {
    # 0: settings, registries, presets and result tables (no torch)
    "config": 0,
    "legacy": 0,
    "registry": 0,
    "presets": 0,
    "results": 0,
    "experiments": 0,  # data: experiment grids
    "run_rates": 0,  # measured env steps/s: rough durations
    "settings": 0,  # BDPS_* environment variables
    # 1: building blocks: environments, networks, the policy, replay, figures
    "adapters": 1,
    "episode_rule": 1,
    "joint_env": 1,
    "wrapped_env": 1,
    "vector_envs": 1,
    "env_spec": 1,
    "memory": 1,
    "device": 1,
    "networks": 1,
    "policy": 1,
    "replay": 1,
    "exploration": 1,
    "figures": 1,
    # 2: algorithms (and the child process their updates may run in)
    "algorithms": 2,
    "learner_process": 2,
    # 3: running an algorithm on an environment
    "training": 3,
    "pipeline": 3,
    # 4: grids of runs, their figures, episode videos
    "experiment": 4,
    "grid": 4,
    "grid_budget": 4,
    "plotting": 4,
    "render": 4,
    # 5: the command line
    "cli": 5,
    "eval_cli": 5,  # bdps eval, bdps selector-value
    "cli_options": 5,
    "cli_arguments": 5,
    "cli_experiment": 5,
}


def _modules() -> list[str]:
    found = pkgutil.walk_packages([str(ROOT)], prefix="bdps_agents.")
    return sorted(["bdps_agents", *(info.name for info in found)])


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "bdps_agents" else None


def _module_level_imports(module: str) -> set[str]:
    """bdps_agents modules imported by top-level statements (not inside functions), also under
    ``if TYPE_CHECKING`` (annotations follow the rule too)."""
    spec_path = ROOT.joinpath(*module.split(".")[1:])
    path = spec_path / "__init__.py" if spec_path.is_dir() else spec_path.with_suffix(".py")
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("bdps_agents"))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "bdps_agents":  # from bdps_agents import x
                    found.update(f"bdps_agents.{a.name}" for a in node.names)
                elif node.module.startswith("bdps_agents."):
                    found.add(node.module)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return found


MODULES = _modules()


def test_every_module_has_a_layer():
    missing = sorted({_top(m) for m in MODULES if _top(m) and _top(m) not in LAYERS})
    assert not missing, f"give these a layer in LAYERS (and CONTRIBUTING.md): {missing}"


def test_module_level_imports_go_down_the_layers_only():
    wrong = []
    for module in MODULES:
        here = _top(module)
        if here is None:
            continue
        for target in _module_level_imports(module):
            there = _top(target)
            if there is not None and LAYERS.get(there, -1) > LAYERS[here]:
                wrong.append(
                    f"{module} (layer {LAYERS[here]}) imports {target} (layer {LAYERS[there]})"
                )
    assert not wrong, "\n".join(wrong)


def test_the_rule_finds_an_upward_import(tmp_path):
    # planted: a layer-1 module importing the training layer is reported
    assert LAYERS["training"] > LAYERS["replay"]
    tree = ast.parse("from bdps_agents.training import train\n")
    imported = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert any(LAYERS[_top(t)] > LAYERS["replay"] for t in imported if _top(t))


def test_module_level_imports_have_no_cycle():
    graph = {m: {t for t in _module_level_imports(m) if t in MODULES} for m in MODULES}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state:
                cycle = visit(nxt, [*path, node])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for module in MODULES:
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)


def test_no_module_is_longer_than_max_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these (over {MAX_LINES} lines): {long}"


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_on_its_own_and_loads_no_higher_layer(module):
    # a fresh interpreter per module: an import that works only after another module was
    # imported (an import-order cycle) fails here, and so does a lower layer that pulls in a
    # higher one at import time by any route (e.g. the learner process loading training)
    code = f"import {module}, sys; print(*(m for m in sys.modules if m.startswith('bdps_agents')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "No module named 'gfootball'" in proc.stderr:
        pytest.skip("gfootball (the grf extra) is not installed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    here = _top(module)
    if here is None:  # the package itself imports nothing of its own
        assert proc.stdout.split() == ["bdps_agents"]
        return
    above = sorted(
        m for m in proc.stdout.split() if _top(m) and LAYERS.get(_top(m), 99) > LAYERS[here]
    )
    assert not above, f"importing {module} (layer {LAYERS[here]}) loads {above}"
