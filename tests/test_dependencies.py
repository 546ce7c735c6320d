"""Every package lightray imports is one it declares: the dev extra (pytest, pytorch-lightning and their
dependencies) must not hide a missing one, as it once hid ``pathspec`` from ``lightray submit``."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# imported only inside a try/except ImportError that names the package to install
OPTIONAL = {
    "tensorboardX": "TensorBoardLogger: tensorboard or tensorboardX",
    "tensorboard": "TensorBoardLogger: tensorboard or tensorboardX",
    "mlflow": "MLFlowLogger: mlflow or mlflow-skinny",
    "matplotlib": "lightray plot: the viz extra",
    "rich": "RichProgressBar / RichModelSummary: the rich extra",
    "wandb": "WandbLogger: the wandb extra",
    "comet_ml": "CometLogger: the comet extra",
}


def declared() -> set[str]:
    """lightray's own requirements, as installed from pyproject.toml (extras such as dev left out)."""
    requires = importlib.metadata.requires("lightray") or []
    return {_normal(re.split(r"[\s\[<>=!~;(]", spec, maxsplit=1)[0]) for spec in requires if "extra ==" not in spec}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported() -> dict[str, list[str]]:
    """Top-level packages imported anywhere in lightray/ (functions included), with where."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "lightray").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("lightray", "__future__"):
                    found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_import_is_a_declared_dependency():
    distributions = importlib.metadata.packages_distributions()
    wanted = declared()
    missing = []
    for module, places in sorted(imported().items()):
        if module in OPTIONAL:
            continue
        names = {_normal(d) for d in distributions.get(module, [module])}
        if not names & wanted:
            missing.append(f"{module} (distribution {sorted(names)}) imported at {', '.join(places[:3])}")
    assert not missing, "imported but not declared in pyproject.toml [project] dependencies:\n" + "\n".join(missing)


def test_optional_imports_are_guarded_with_an_install_hint():
    """Each file that imports an optional package does so first inside a try/except ImportError (its class
    checks when built, with a message naming what to install); later imports in it rely on that check."""
    for module in OPTIONAL:
        places: dict[str, list[int]] = {}
        for place in imported().get(module, []):
            path, line = place.rsplit(":", 1)
            places.setdefault(path, []).append(int(line))
        for path, lines in places.items():
            tree = ast.parse((ROOT / path).read_text())
            guarded = [
                line
                for line in lines
                for node in ast.walk(tree)
                if isinstance(node, ast.Try)
                and any(getattr(inner, "lineno", None) == line for inner in ast.walk(node))
                and any(re.search(r"ImportError|ModuleNotFoundError", ast.unparse(h)) for h in node.handlers)
            ]
            assert guarded, f"{path}: optional {module} is never imported in a try/except ImportError with a hint"


def installed_closure() -> set[str]:
    """The distributions a fresh ``pip install .`` brings: lightray's requirements and theirs, extras followed."""
    from packaging.requirements import Requirement

    found: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [("lightray", frozenset())]
    while todo:
        name, extras = todo.pop()
        key = (_normal(name), extras)
        if key in found:
            continue
        found.add(key)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in wanted):
                todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in found}


BLOCKER = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed by lightray's requirements)")
sys.meta_path.insert(0, Blocker())
from lightray.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_lightray_submit_runs_with_only_the_declared_dependencies(tmp_path):
    """As in a fresh environment with ``pip install .``: every module of a distribution that lightray's
    requirements do not bring (the dev extra's pytest, pytorch-lightning, moto, ...) is made unimportable."""
    import subprocess

    closure = installed_closure()
    distributions = importlib.metadata.packages_distributions()
    blocked = sorted(m for m, dists in distributions.items() if not {_normal(d) for d in dists} & closure)
    assert "pytorch_lightning" in blocked and "pathspec" not in blocked and "torch" not in blocked
    (tmp_path / "train.py").write_text("print('hi')\n")
    argv = ["submit", "--working-dir", str(tmp_path), "--dry-run", "--", "python", "train.py"]
    done = subprocess.run([sys.executable, "-c", BLOCKER, ",".join(blocked), *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"uploading working_dir {tmp_path}: 1 files" in done.stderr
