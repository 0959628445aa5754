"""The package's shape (docs/layout.md): lower layers never import higher ones, no module outgrows a head, and every
``mlx_style.x.y`` a docstring or comment names exists."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlx_style"
# Each subpackage's layer; a module may import its own layer and those below, never above.
LAYERS = {"nn": 1, "io": 2, "optim": 3, "training": 3, "infer": 3, "bench": 4, "cli": 5, "api": 5, "studio": 5}
BASE = {"errors", "pixels", "timing", "backend", "_blas", "platform"}  # layer 0: below the networks
SIDEWAYS = {("optim", "training"), ("cli", "api"), ("cli", "studio"), ("studio", "api"), ("studio", "cli")}
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_of(dotted: str) -> tuple[str, int] | None:
    parts = dotted.split(".")
    if parts[0] != "mlx_style" or len(parts) < 2:
        return None
    if parts[1] in LAYERS:
        return parts[1], LAYERS[parts[1]]
    if parts[1] in BASE:
        return parts[1], 0
    return parts[1], 6  # api and the top-level command shims: the top


def imports(path: Path) -> list[str]:
    """Every ``mlx_style...`` module imported anywhere in the file (function-level imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]
    return [name for name in found if name.startswith("mlx_style")]


def test_no_module_imports_a_higher_layer():
    problems = []
    for path in modules():
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = layer_of(dotted)
        if own is None or own[1] == 6 or dotted.endswith(("__init__", "__main__")):  # shims: the top
            continue
        for name in imports(path):
            other = layer_of(name)
            if other is None or other[0] == own[0] or other[1] == own[1] == 0:
                continue
            if other[1] > own[1] or (other[1] == own[1] and (own[0], other[0]) not in SIDEWAYS):
                problems.append(f"{dotted} imports {name}")
    assert not problems, "\n".join(sorted(set(problems)))


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        if cut == len(parts):
            return True
        mod = importlib.import_module(module)
        obj = mod
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_named_in_the_text_exists(path):
    named = set(re.findall(r"\bmlx_style(?:\.[A-Za-z_][A-Za-z0-9_]*)+", path.read_text()))
    missing = sorted(n for n in named if not exists(n))
    assert not missing, f"{path.name} names {missing}"
