"""How a value reads in front of users (terminal, Markdown, HTML): never as Python's ``None``."""

from __future__ import annotations

from collections.abc import Mapping


def shown(value: object, missing: str = "default") -> str:
    """``value`` as text; ``None`` (a setting left to its default, a number never taken) as ``missing``."""
    if value is None:
        return missing
    if isinstance(value, list | tuple):
        return "[" + ", ".join(shown(v, missing) for v in value) + "]"
    return str(value)


def settings_text(settings: Mapping[str, object], fmt: str = "{}={}") -> str:
    """``key=value, ...``; an unset setting reads ``default``."""
    return ", ".join(fmt.format(k, shown(v)) for k, v in settings.items())
