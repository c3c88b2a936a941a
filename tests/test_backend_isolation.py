"""Only keras_local/backend/ may import jax, tensorflow or torch."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_local"
FORBIDDEN = {"jax", "jaxlib", "tensorflow", "torch", "tf_keras", "tensorflow_gnn"}


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], node.lineno


def test_backend_imports_only_inside_the_backend_package():
    leaks = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "backend":
            continue
        leaks += [f"{relative}:{line} imports {name}" for name, line in _imports(path) if name in FORBIDDEN]
    assert not leaks, "backend imports outside keras_local/backend/: " + "; ".join(leaks)


def test_the_check_catches_a_leak(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nfrom torch import nn\n")
    assert ("torch", 2) in list(_imports(bad))
