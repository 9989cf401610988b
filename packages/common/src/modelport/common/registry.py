"""What the bench and convert registries share: lazy ``"module:Name"`` loading and the legacy CLI flags."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import click

from .log import warn

F = TypeVar("F", bound=Callable[..., Any])  # a click command function


def load(table: Mapping[str, str], name: str, what: str) -> Any:
    """``table[name]`` is ``"pkg.mod"`` or ``"pkg.mod:Name"``; import it only now (toolchains stay lazy)."""
    try:
        module, _, attr = table[name].partition(":")
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; known: {', '.join(table)}") from None
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


def installed(where: str) -> bool:
    """Whether the module of ``"pkg.mod[:Name]"`` is installed here (a descriptor may name another package's module)."""
    try:
        return importlib.util.find_spec(where.partition(":")[0]) is not None
    except ModuleNotFoundError:  # its parent package is not installed in this env
        return False


def legacy_flags(names: Iterable[str]) -> Callable[[F], F]:
    """Hidden ``--tflite``, ``--onnx-int8``, ``--tensorrt-fp16`` ...: the original scripts' flags keep working."""
    names = list(names)

    def decorate(fn: F) -> F:
        for name in reversed(names):
            fn = click.option(f"--{name}", f"flag_{name.replace('-', '_')}", is_flag=True, hidden=True)(fn)
        return fn

    return decorate


def chosen(names: Iterable[str], positional: Iterable[str], flags: Mapping[str, bool]) -> list[str]:
    """Positional names first, then those given as legacy flags, each once."""
    out = list(positional)
    return out + [n for n in names if flags.get(f"flag_{n.replace('-', '_')}") and n not in out]


def may_fail_option(names: Iterable[str]) -> Callable[[F], F]:
    """``--may-fail KEY``: a key whose failure is reported (its row with the reason, a warning) without failing the
    command, for a row known to fall short on some models or machines (an INT8 build below its floors)."""
    return click.option(
        "--may-fail",
        "may_fail",
        multiple=True,
        type=click.Choice(list(names)),
        metavar="KEY",
        help="KEY's failure is a row with its reason and a warning, not a non-zero exit (repeatable).",
    )


def failures(failed: Iterable[str], may_fail: Iterable[str]) -> list[str]:
    """The failed keys that fail the command; each tolerated one is said once as a warning."""
    tolerated = set(may_fail)
    out = []
    for key in failed:
        if key in tolerated:
            warn(f"{key} failed (--may-fail {key}): its row says why; the command goes on")
        else:
            out.append(key)
    return out
