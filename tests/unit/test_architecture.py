"""The structure the layer contracts (pyproject.toml, run by ``make lint``) do not cover:
no import cycles between modules, no private name used across modules, function-level
imports only where they are lazy on purpose, ``type: ignore`` only with a reason, and
package docstrings that name only modules that exist."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import grimp
import pytest

import gatehouse

SRC = Path(gatehouse.__file__).parent
TESTS = Path(__file__).parents[1]


def _sources(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.py") if "migrations" not in path.parts)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_itself_back_through_another() -> None:
    """Tarjan's strongly connected components over every import, function-level ones too:
    a cycle hidden by an import inside a function is still a cycle."""
    graph = grimp.build_graph("gatehouse")
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # iterative enough: the graph is a few hundred modules deep at most
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_cycle_check_finds_a_planted_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "planted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from planted import b\n")
    (package / "b.py").write_text("from planted import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("planted")
    assert "planted.b" in graph.find_modules_directly_imported_by("planted.a")  # function-level imports count
    assert "planted.a" in graph.find_modules_directly_imported_by("planted.b")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


def _private_imports(path: Path) -> list[str]:
    """``from gatehouse.x import _name``, and ``module._name`` on a Gatehouse module imported whole."""
    tree = ast.parse(path.read_text())
    found: list[str] = []
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gatehouse"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                elif _is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gatehouse") and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("root", [SRC, TESTS], ids=["src", "tests"])
def test_no_private_name_is_used_across_modules(root: Path) -> None:
    assert [hit for path in _sources(root) for hit in _private_imports(path)] == []


def test_function_level_imports_are_lazy_on_purpose() -> None:
    """An import inside a function must say why it is not at the top (``# lazy: …``, e.g. it
    loads llama.cpp): otherwise it is only hiding a cycle or an upward import."""
    unexplained = []
    for path in _sources(SRC):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if (isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("gatehouse")
                        and "# lazy: " not in lines[inner.lineno - 1]):
                    unexplained.append(f"{path.relative_to(SRC)}:{inner.lineno} {inner.module}")
    assert unexplained == []


IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def test_every_type_ignore_names_its_code_and_its_reason() -> None:
    bare = []
    for path in _sources(SRC):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = IGNORE.search(line)
            if match and (not match["codes"] or not re.match(r"\s+#\s*\S", match["rest"])):
                bare.append(f"{path.relative_to(SRC)}:{number}")
    assert bare == []


def _named_modules(docstring: str) -> set[str]:
    return set(re.findall(r"``([a-z_][a-z0-9_]*)``", docstring))


def test_package_docstrings_name_only_modules_that_exist() -> None:
    """A package's docstring that names ``module`` in double backticks names one of its own
    modules (or something the package exports); a dotted ``gatehouse.x.y`` anywhere in a
    docstring names a module that exists."""
    wrong = []
    for package in [gatehouse, *(importlib.import_module(info.name)
                                 for info in pkgutil.walk_packages(gatehouse.__path__, "gatehouse.") if info.ispkg)]:
        if "migrations" in package.__name__:
            continue
        doc = package.__doc__ or ""
        assert doc.strip(), f"{package.__name__} has no docstring"
        children = {info.name for info in pkgutil.iter_modules(package.__path__)}
        for name in _named_modules(doc):
            if name not in children and not hasattr(package, name) and name != package.__name__.rsplit(".", 1)[-1]:
                wrong.append(f"{package.__name__}: ``{name}``")
    for path in _sources(SRC):
        tree = ast.parse(path.read_text())
        docs = [ast.get_docstring(node) or "" for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)]
        for dotted in set(re.findall(r"``(gatehouse(?:\.[a-z_]+)+)``", "\n".join(docs))):
            if importlib.util.find_spec(dotted) is None:
                wrong.append(f"{path.relative_to(SRC)}: ``{dotted}``")
    assert wrong == []


def test_the_docstring_check_notices_a_module_that_does_not_exist() -> None:
    assert _named_modules("the store (``db``, ``models``) and ``nowhere``") == {"db", "models", "nowhere"}
    assert importlib.util.find_spec("gatehouse.policy.runtime") is None  # the kind of name it catches


ROOT = SRC.parents[1]


def _contract_layers() -> list[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [contract["layers"] for contract in config["contracts"] if contract["type"] == "layers"]
    return list(layers)


def test_the_architecture_page_draws_the_contract_and_names_paths_that_exist() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    drawn = page.split("```", 2)[1].strip().splitlines()
    assert drawn == _contract_layers()  # the contract is the source of truth; the page follows it
    missing = [path for path in re.findall(r"`(src/gatehouse/[\w/.]+)`", page) if not (ROOT / path).exists()]
    assert missing == []
    packages = {line.strip() for layer in drawn for line in layer.split("|")}
    on_disk = {f"gatehouse.{info.name}" for info in pkgutil.iter_modules(gatehouse.__path__)}
    assert packages == on_disk  # every package and top-level module has its place in a layer
