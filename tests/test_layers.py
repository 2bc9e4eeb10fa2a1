"""The architecture as the tree shows it, held by a test: every module's imports (at the top or inside a function,
read with ``ast``) stay inside what its layer may import, and each subpackage says what that is in its opening
paragraph. A crossed boundary fails naming the file and the line."""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "ablate"
# layer -> the ablate layers it may import (itself included), and the third-party packages it must not
LAYERS = {
    "ground": ({"ground"}, {"torch", "mlflow", "optuna", "hydra", "omegaconf", "pandas", "numpy", "matplotlib",
                            "sqlalchemy", "scipy", "sklearn"}),
    "config": ({"ground", "config"}, {"torch", "mlflow", "optuna", "pandas", "numpy", "matplotlib", "sqlalchemy"}),
    "engine": ({"ground", "config", "engine"}, {"mlflow", "optuna", "hydra", "omegaconf", "pandas", "matplotlib",
                                                "sqlalchemy"}),
    "tracking": ({"ground", "config", "tracking"}, {"torch", "optuna", "hydra", "omegaconf", "pandas",
                                                    "matplotlib"}),
    "analysis": ({"ground", "config", "tracking", "analysis"}, {"torch", "mlflow", "optuna", "hydra", "omegaconf"}),
    "execution": ({"ground", "config", "engine", "tracking", "analysis", "execution"}, {"mlflow"}),
    "commands": ({"ground", "config", "engine", "tracking", "analysis", "execution", "commands"}, {"mlflow"}),
}
GROUND = {"errors", "paths"}  # imported by every layer, importing nothing of ablate
ADAPTER_ONLY = {"hydra", "omegaconf"}  # of the config layer, only its adapter speaks to Hydra and OmegaConf


def layer_of(module: str) -> str:
    """``ablate.engine.trainer`` -> engine; ``ablate.errors`` -> ground; the commands (``ablate.claims``, ...) and
    ``hydra_plugins`` -> commands."""
    parts = module.split(".")
    if parts[0] == "hydra_plugins":
        return "commands"
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) == 1 or parts[1] in GROUND or not _is_module(parts[1]):  # the package itself (its __version__)
        return "ground"
    return "commands"


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports(path: Path, name: str = ""):
    """(line, imported module) for every import in the file (module ``name``, by default its place in the tree),
    relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = (name or module_name(path)).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from ablate import paths` imports the module ablate.paths
                yield node.lineno, f"{base}.{alias.name}" if base in ("ablate", "ablate.engine") else base


def sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(REPO / "hydra_plugins").rglob("*.py")])


def crossings():
    for path in sources():
        yield from file_crossings(path, module_name(path), str(path.relative_to(REPO)))


def file_crossings(path: Path, name: str, shown: str):
    """The boundaries module ``name`` (read from ``path``, named ``shown`` in the messages) crosses."""
    mine = layer_of(name)
    allowed, banned = LAYERS[mine]
    for line, imported in imports(path, name):
        top = imported.split(".")[0]
        where = f"{shown}:{line}"
        if top in ("ablate", "hydra_plugins"):
            theirs = layer_of(imported)
            if theirs not in allowed:
                yield f"{where}: the {mine} layer imports {imported} ({theirs})"
        elif top in banned or (mine == "config" and top in ADAPTER_ONLY and path.name != "adapter.py"):
            yield f"{where}: the {mine} layer imports {top}"


def test_no_module_crosses_its_layers_boundary():
    found = list(crossings())
    assert not found, "\n".join(found)


def test_the_check_can_fail(tmp_path):
    """A crossing planted in the engine is found, with its file and line (the file is written outside the tree:
    the wheel's test, beside this one, lists the tree)."""
    planted = tmp_path / "_planted_for_test.py"
    planted.write_text("import numpy\n\n\ndef f():\n    import mlflow\n    from ablate.execution import runner\n")
    found = list(file_crossings(planted, "ablate.engine._planted_for_test", "ablate/engine/_planted_for_test.py"))
    assert "ablate/engine/_planted_for_test.py:5: the engine layer imports mlflow" in found
    assert "ablate/engine/_planted_for_test.py:6: the engine layer imports ablate.execution (execution)" in found


def test_only_the_tracking_layer_imports_mlflow():
    users = {module_name(p) for p in sources() for _, m in imports(p) if m.split(".")[0] == "mlflow"}
    assert users and all(name.startswith("ablate.tracking") for name in users), users


@pytest.mark.parametrize("package", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_each_subpackage_opens_by_saying_what_it_is_and_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "May import" in doc, f"ablate/{package}/__init__.py"


def test_the_readme_layout_names_the_folders_of_the_tree():
    readme = (REPO / "README.md").read_text()
    for folder in sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")):
        assert f"ablate/{folder}/" in readme, folder


def test_no_function_of_ablate_is_longer_than_50_lines():
    long = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 50:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_no_private_module_of_hydra_is_used():
    private = [f"{p.relative_to(REPO)}:{line}" for p in sources() for line, m in imports(p) if "._internal" in m]
    assert not private, private
