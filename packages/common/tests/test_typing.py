"""mypy checks every test module, conftest.py, tiny_models.py, noxfile.py and .ci/*.py with the strict flags
(pyproject.toml's [tool.mypy]): a new file joins without anyone having to remember to list it."""

import tomllib
from pathlib import Path
from typing import Any

from modelport.common import envs

ROOT = Path(__file__).resolve().parents[3]
MYPY: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
# What mypy searches, as `nox -s lint` runs it: MYPYPATH (every package's src/) before pyproject.toml's mypy_path.
BASES = [*envs.source_roots(ROOT), *MYPY["mypy_path"]]


def checked_files() -> set[Path]:
    """The files `mypy` (no arguments, as `nox -s lint` runs it) checks."""
    out: set[Path] = set()
    for pattern in MYPY["files"]:
        for p in ROOT.glob(pattern):
            out |= set(p.rglob("*.py")) if p.is_dir() else {p}
    return out


def module_name(path: Path) -> str:
    """The module name mypy gives ``path``: relative to the deepest search base holding it, else to the checkout."""
    rel = path.relative_to(ROOT)
    for base in sorted(map(Path, BASES), key=lambda b: len(b.parts), reverse=True):
        if rel.is_relative_to(base):
            return ".".join(rel.relative_to(base).with_suffix("").parts)
    return ".".join(rel.with_suffix("").parts)


STRICT = (
    "disallow_untyped_defs",
    "disallow_incomplete_defs",
    "disallow_untyped_calls",
    "disallow_any_generics",
    "check_untyped_defs",
)


def strict(name: str) -> bool:
    """Whether mypy checks module ``name`` with the strict flags: they are global, and no override of a
    module of ours turns one off."""
    if not all(MYPY.get(flag) is True for flag in STRICT):
        return False
    ours = (o for o in MYPY.get("overrides", []) if not o.get("ignore_missing_imports"))
    return not any(o.get(flag) is False for o in ours for flag in STRICT)


def test_every_test_module_and_tool_script_is_checked_strictly() -> None:
    wanted = [*ROOT.glob("packages/*/tests/*.py"), *(ROOT / n for n in ("conftest.py", "tiny_models.py", "noxfile.py"))]
    wanted += ROOT.glob(".ci/*.py")
    checked = checked_files()
    assert len(wanted) > 70
    assert [str(p.relative_to(ROOT)) for p in wanted if p not in checked] == []
    assert [module_name(p) for p in wanted if not strict(module_name(p))] == []
    assert strict("modelport.common.config")


def test_every_package_source_is_checked_strictly_under_its_modelport_name() -> None:
    """Each packages/<name>/src is a search base (derived, so a new backend package edits no mypy_path), and
    each of its modules is checked, strictly, as modelport.<...>; pyproject.toml lists no src/ of its own."""
    packages = sorted(p.parent.name for p in ROOT.glob("packages/*/pyproject.toml"))
    assert len(packages) >= 13 and envs.source_roots(ROOT) == [f"packages/{n}/src" for n in packages]
    assert not [b for b in MYPY["mypy_path"] if b.endswith("/src")]
    sources = [p for n in packages for p in (ROOT / "packages" / n / "src").rglob("*.py")]
    checked = checked_files()
    assert {p.parts[len(ROOT.parts) + 1] for p in sources} == set(packages)  # every package has modules
    assert [str(p) for p in sources if p not in checked] == []
    names = [module_name(p) for p in sources]
    assert [n for n in names if not n.startswith("modelport.")] == []
    assert [n for n in names if not strict(n)] == []
