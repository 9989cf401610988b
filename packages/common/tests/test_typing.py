"""mypy checks every test module, conftest.py, tiny_models.py, noxfile.py and .ci/*.py with the strict flags
(pyproject.toml's [tool.mypy]): a new file joins without anyone having to remember to list it."""

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
MYPY: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]


def checked_files() -> set[Path]:
    """The files `mypy` (no arguments, as `nox -s lint` runs it) checks."""
    out: set[Path] = set()
    for pattern in MYPY["files"]:
        for p in ROOT.glob(pattern):
            out |= set(p.rglob("*.py")) if p.is_dir() else {p}
    return out


def module_name(path: Path) -> str:
    """The module name mypy gives ``path``: relative to the mypy_path entry holding it, else to the checkout."""
    rel = path.relative_to(ROOT)
    for base in MYPY["mypy_path"]:
        if rel.parent == Path(base):
            return rel.stem
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
