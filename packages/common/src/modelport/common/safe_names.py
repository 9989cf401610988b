"""Names that arrive from outside (bundle members, result keys, device keys, model names, manifest paths).

Every such name passes here before it becomes part of a path: a relative POSIX path whose every
part is from a small alphabet, with no empty, ``.`` or ``..`` part, so joined to its root it
cannot leave it (``a//b``, ``/x``, ``..``, backslashes, NUL and control characters are refused,
never repaired). A refusal is one InputError naming the input.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from .errors import InputError

# One path part: what modelport itself writes (keys, file names, device slugs), no leading dot
# (hidden and temp files are never exchanged) and short enough for every filesystem.
_PART = re.compile(r"[A-Za-z0-9_@+=-][A-Za-z0-9._@+=-]{0,127}")
# A backend key or device key: the results file name and the merged folder name.
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,95}")
_MAX_DEPTH = 16  # the artifacts layout is a few folders deep; more is not something modelport wrote


def safe_relpath(name: object, what: str, where: str | Path | None = None) -> PurePosixPath:
    """``name`` as a relative path inside any root, or InputError saying which ``what`` is refused."""
    text = name if isinstance(name, str) else None
    parts = text.split("/") if text else []
    if not parts or len(parts) > _MAX_DEPTH or not all(_PART.fullmatch(p) for p in parts):
        raise InputError(
            f"{what} {name!r} is not a safe relative path (parts of letters, digits and ._@+=-, no '..', '//' or leading '/')",
            where,
        )
    return PurePosixPath(*parts)


def inside(root: Path, name: object, what: str, where: str | Path | None = None) -> Path:
    """``root / name`` after checking ``name`` (and that the joined path, resolved, is still under ``root``)."""
    path = root / safe_relpath(name, what, where)
    if not path.resolve().is_relative_to(root.resolve()):  # a symlink already inside root
        raise InputError(f"{what} {name!r} leads outside {root}", where)
    return path


def check_key(name: object, what: str = "key") -> str:
    """A backend or device key (``onnx-int8``, ``x86_64-intel-xeon``); ValueError otherwise (schema validators raise it)."""
    if not isinstance(name, str) or not _KEY.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not lowercase letters, digits and ._- (starting with a letter or digit)")
    return name


def slug(text: str, fallback: str = "model") -> str:
    """Free text (a model's display name) as one safe path part: never empty, never ``.``/``..``."""
    out = re.sub(r"[^A-Za-z0-9._@-]+", "-", text).strip("-.")[:96]
    return out if _PART.fullmatch(out) else fallback
