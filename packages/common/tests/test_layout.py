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
