"""The core's layout: headless (never imports streamlit), and no part imports a part above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "genreg_core"
# lowest first; a module may import its own part or a lower one (README, "Layout")
LAYERS = [
    {"config", "paths", "device", "lru", "imaging", "plots"},
    {"data"},
    {"features"},
    {"diffusion"},
    {"evaluation"},
    {"lab"},
    {"training"},
    {"runs"},
    {"analysis"},
    {"cli", "__main__"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    """``genreg_core.diffusion.sampling`` -> ``diffusion``; ``genreg_core.lab`` -> ``lab``."""
    return module.split(".")[1]


def _core_modules() -> list[str]:
    return sorted(".".join(p.relative_to(REPO).with_suffix("").parts) for p in CORE.rglob("*.py")
                  if p.name != "__init__.py")


def _imports(module: str) -> set[str]:
    """Every ``genreg_core`` module named by an import anywhere in ``module`` (lazy imports inside functions too)."""
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {n for n in names if n.startswith("genreg_core.")}


def test_every_core_module_sits_in_a_declared_part():
    parts = {_part(m) for m in _core_modules()}
    assert parts <= set(RANK), f"parts without a layer: {parts - set(RANK)}"
    top = [p for p in CORE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= 10, [p.name for p in top]


def test_no_part_imports_a_part_above_it():
    upward = [f"{m} -> {i}" for m in _core_modules() for i in _imports(m) if RANK[_part(i)] > RANK[_part(m)]]
    assert not upward, upward


def test_the_layering_check_sees_lazy_imports(tmp_path):
    # the check itself: a function-level import is found like a module-level one
    src = "def f():\n    from genreg_core.cli.main import main\n"
    tree = ast.parse(src)
    found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert found == {"genreg_core.cli.main"} and RANK[_part("genreg_core.cli.main")] > RANK["data"]


def test_importing_every_core_module_never_imports_streamlit():
    modules = [m for m in _core_modules() if not m.endswith("__main__")]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
            "print(len(bad)); sys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_test_files_have_unique_basenames():
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)

