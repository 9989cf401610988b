"""Errors that the CLI turns into one clear line and a non-zero exit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schema import Agreement

# numpy 2 scalar reprs (np.int32(1), np.float64(0.5)) leak into messages through lists and !r
_NUMPY_REPR = re.compile(r"\bnp\.(?:u?int\d+|float\d+|bool_?|str_|complex\d+)\(([^()]*)\)")


class ModelportError(Exception):
    """An error a user can act on. ``str()`` is one line naming the file."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.message = _NUMPY_REPR.sub(r"\1", " ".join(str(message).split()))  # one line, plain numbers
        self.path = path  # a Path, or a URL string (Path() would fold its "//")
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(ModelportError):
    """A model, image, list, labels or config file that cannot be used."""


class ConfigError(InputError):
    """modelport.toml (or an override) is invalid."""


class ToolchainMissing(ModelportError):
    """The toolchain a step needs is not installed or not usable here."""


class HardwareMissing(ModelportError):
    """The step needs hardware this machine lacks (CUDA GPU, Rockchip board).

    Not a failure: the step is recorded as skipped with this reason.
    """

    exit_code = 0


class AccuracyGateError(ModelportError):
    """A converted model disagrees with the reference beyond the floors (``agreement``: what was measured)."""

    def __init__(self, message: str, path: str | Path | None = None, agreement: Agreement | None = None):
        super().__init__(message, path)
        self.agreement = agreement
