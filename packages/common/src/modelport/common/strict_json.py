"""The one way modelport turns data into a JSON file's text: strict JSON, or an error.

Python's json writes NaN and Infinity, which no other JSON reader accepts (browsers, jq, other
machines' reports), and pydantic's model_dump_json writes them as null, losing them silently.
Every result, manifest and report goes through ``json_text``, so a non-finite number is refused
in one line naming where it is, before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from .errors import ModelportError


def json_text(obj: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """``obj`` as JSON text ending in a newline; ModelportError if it holds NaN or an infinity."""
    try:
        return json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    except ValueError:
        where = next(_non_finite(obj, "$"), None)
        if where is None:
            raise
        raise ModelportError(f"refusing to write {where[1]} at {where[0]}: JSON has no such number") from None


def _non_finite(obj: Any, where: str) -> Iterator[tuple[str, float]]:
    if isinstance(obj, float) and not math.isfinite(obj):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _non_finite(v, f"{where}.{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _non_finite(v, f"{where}[{i}]")
