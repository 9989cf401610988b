"""mypy checks every test module, conftest.py, tiny_models.py, noxfile.py and .ci/*.py with the strict flags
(pyproject.toml's [tool.mypy]): a new file joins without anyone having to remember to list it."""

import re
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


def pattern(glob: str) -> re.Pattern[str]:
    """A module pattern as mypy reads it: a ``*`` section matches zero or more sections (``a.*`` is ``a`` too)."""
    first, *rest = glob.split(".")
    expr = ".*" if first == "*" else re.escape(first)
    expr += "".join(r"(\..*)?" if part == "*" else re.escape("." + part) for part in rest)
    return re.compile(expr + r"\Z")


def strict(name: str) -> bool:
    """Whether the strict override's module patterns cover module ``name``."""
    override = next(o for o in MYPY["overrides"] if o.get("disallow_untyped_defs"))
    return any(pattern(p).match(name) for p in override["module"])


def test_every_test_module_and_tool_script_is_checked_strictly() -> None:
    wanted = [*ROOT.glob("packages/*/tests/*.py"), *(ROOT / n for n in ("conftest.py", "tiny_models.py", "noxfile.py"))]
    wanted += ROOT.glob(".ci/*.py")
    checked = checked_files()
    assert len(wanted) > 70
    assert [str(p.relative_to(ROOT)) for p in wanted if p not in checked] == []
    assert [module_name(p) for p in wanted if not strict(module_name(p))] == []
    assert strict("modelport.common.config") and not strict("tensorflow")  # the patterns are read as mypy reads them
