"""The layering rules of docs/architecture.md, checked on the imports of the package itself.

Evaluation, export and the checkpoint format do not import training; SSL methods do not know SSPS or
the data loaders; a loss imports no model or data code; the SSPS sampler sees indices and embeddings,
not methods, encoders or datasets.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ssps"


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` names anywhere in the file, function-level (lazy) imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            # `from ssps import dist` imports the module ssps.dist
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "ssps" or n.startswith("ssps.")}


def files(*parts: str) -> list[Path]:
    out = []
    for part in parts:
        target = PACKAGE / part
        out += sorted(target.glob("*.py")) if target.is_dir() else [target]
    return out


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for path in paths:
        hits = sorted(m for m in imported_modules(path) if m.startswith(forbidden))
        if hits:
            bad[str(path.relative_to(PACKAGE.parent))] = hits
    return bad


def test_importing_evaluation_and_checkpoints_does_not_import_training():
    code = (
        "import importlib, pkgutil, sys\n"
        "import ssps.checkpoint, ssps.eval, ssps.export, ssps.info\n"
        "for pkg in (ssps.eval, ssps.export):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "print(' '.join(sorted(k for k in sys.modules if k.split('.')[:2] == ['ssps', 'train'])))\n"
    )
    # A fresh interpreter: this test process has imported training long ago. timeout: never hang CI.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_no_evaluation_export_or_checkpoint_code_imports_training():
    paths = files("eval", "export", "checkpoint.py", "embedder.py", "info.py")
    assert offenders(paths, ("ssps.train",)) == {}


def test_methods_do_not_know_ssps_or_the_data():
    assert offenders(files("methods"), ("ssps.sampling", "ssps.data", "ssps.train")) == {}


def test_losses_see_tensors_only():
    allowed = {"ssps", "ssps.dist"}  # dist: gathering tensors across ranks
    assert imported_modules(PACKAGE / "methods" / "losses.py") <= allowed


def test_the_sampler_sees_indices_and_embeddings():
    forbidden = ("ssps.methods", "ssps.encoders", "ssps.data", "ssps.train", "ssps.embedder")
    assert offenders(files("sampling"), forbidden) == {}


def test_the_rules_catch_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ssps.train.trainer import train\n")
    assert imported_modules(bad) == {"ssps.train.trainer", "ssps.train.trainer.train"}


def test_no_module_outside_the_encoders_is_over_300_lines():
    """docs/architecture.md: modules are split along their seams; only the encoder definitions may be long."""
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if p.parent.name != "encoders" and (n := len(p.read_text().splitlines())) > 300
    }
    assert long == {}
