"""The core's layout: headless (never imports streamlit), and no part imports a part above it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "genreg_core"
# lowest first; a module may import its own part or a lower one (README, "Layout")
LAYERS = [
    {"config", "paths", "device", "distributed", "lru", "imaging", "plots", "library_log"},
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


def test_home_page_process_exits_cleanly(tmp_path):
    """A process that runs the Home page (whose prefetch starts background work) exits with code 0, not SIGABRT."""
    code = ("from streamlit.testing.v1 import AppTest\n"
            "at = AppTest.from_file('app.py', default_timeout=300).run()\n"
            "assert not at.exception, at.exception\n")
    env = {**os.environ, "GENREG_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])


def test_a_plain_install_ships_the_claims_and_the_models(tmp_path):
    """``pip install .`` (no editable source tree): the Home page's claims and the shipped models load from the
    installed package alone."""
    import shutil

    source, wheels, target = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    for name in ("genreg_core", "genreg_app"):  # built from a copy: setuptools leaves build/ in its source folder
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheels)], check=True,
                   capture_output=True, timeout=300)
    wheel = next(wheels.glob("genreg-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    code = ("import genreg_core, pathlib\n"
            "from genreg_core.analysis.claims import load_claims\n"
            "from genreg_core.diffusion.model import DEFAULT_GENERATOR_DIR\n"
            "claims, meta = load_claims()\n"
            "print(pathlib.Path(genreg_core.__file__).parent, len(claims), DEFAULT_GENERATOR_DIR.is_dir())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(target)!r})\n" + code],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where, n_claims, has_model = done.stdout.split()
    assert where.startswith(str(target)) and int(n_claims) >= 4 and has_model == "True"
