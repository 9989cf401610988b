"""One package per backend: the shared packages reach backends only through descriptors and entry points,
a backend package never imports another, and each env lists its backend packages' test folders."""

import ast
from pathlib import Path

import pytest

from modelport.common import envs

ROOT = Path(__file__).resolve().parents[3]
SHARED = ("common", "runtime", "convert", "bench", "tasks")  # tasks: what outputs mean, for every backend
BACKENDS = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml") if p.parent.name not in SHARED)


def imported(package: str) -> dict[str, set[str]]:
    """modelport.<name> packages each source file of packages/<package> imports (top level or in a function)."""
    out = {}
    for path in sorted((ROOT / "packages" / package / "src").rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            names |= {m.split(".")[1] for m in mods if m.startswith("modelport.") and m.count(".") >= 1}
        out[str(path.relative_to(ROOT))] = names
    return out


def test_the_backend_packages_are_found() -> None:
    assert {"tflite", "ort", "ncnn", "tensorrt", "openvino", "rknn", "mnn"} <= set(BACKENDS)


@pytest.mark.parametrize("package", SHARED)
def test_a_shared_package_imports_no_backend_package(package: str) -> None:
    bad = {f: sorted(n & set(BACKENDS)) for f, n in imported(package).items() if n & set(BACKENDS)}
    assert not bad


@pytest.mark.parametrize("package", BACKENDS)
def test_a_backend_package_imports_no_other_backend_package(package: str) -> None:
    others = set(BACKENDS) - {package}
    bad = {f: sorted(n & others) for f, n in imported(package).items() if n & others}
    assert not bad


def test_every_env_lists_test_folders_not_file_globs() -> None:
    listed = [arg for env in envs.load(ROOT).envs.values() for arg in env.tests]
    assert all("*" not in arg and (ROOT / arg).is_dir() for arg in listed), listed
    for package in BACKENDS:  # each backend package's tests run once, in its env
        if (ROOT / "packages" / package / "tests").is_dir():
            assert listed.count(f"packages/{package}/tests") == 1, package


def module_name(path: Path) -> str:
    """modelport.x.y for packages/<p>/src/modelport/x/y.py (a package by its __init__.py)."""
    parts = path.relative_to(ROOT).with_suffix("").parts[3:]  # packages, <p>, src
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Name)
        and test.id == "TYPE_CHECKING"
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def module_graph() -> dict[str, set[str]]:
    """Every module under packages/*/src -> the modelport modules it imports, anywhere in the file (top
    level, inside functions and classes); ``if TYPE_CHECKING:`` blocks aside, as they never run.
    ``from modelport.x import y`` is an edge to modelport.x.y when that is a module, else to modelport.x."""
    paths = {module_name(p): p for p in sorted(ROOT.glob("packages/*/src/modelport/**/*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        todo: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
        while todo:
            node = todo.pop()
            if type_checking_only(node):
                todo.extend(node.orelse)  # type: ignore[attr-defined]
                continue
            todo.extend(ast.iter_child_nodes(node))
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("modelport.")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([base] if base else [])])
                if base.startswith("modelport."):
                    for a in node.names:
                        edges.add(f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base)
        graph[name] = {e for e in edges if e in paths and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for group in groups:  # a shortest way back to the group's first module, inside the group
        start = min(group)
        prev: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in prev:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & group):
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        path, v = [start], prev[start]
        while v != start:
            path.append(v)
            v = prev[v]
        out.append([start, *reversed(path[1:]), start])
    return out


def test_the_module_graph_is_read() -> None:
    graph = module_graph()
    assert "modelport.convert.recover" in graph["modelport.ort.recover"]  # from modelport.convert.recover import ...
    assert "modelport.runtime.run" in graph["modelport.runtime.knobs"]  # from .run import prepared_images
    assert "modelport.rknn.convert" in graph["modelport.rknn.recover"]  # from . import convert
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_imports_its_own_caller() -> None:
    """No import cycle, not even one closed by an import inside a function: the module graph has none."""
    found = cycles(module_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)
