"""Class labels: one name per line, fitted to the model's output width.

Conventions: as many names as outputs (``background`` anywhere or absent), or one more
name than outputs with ``background`` first or last (the model has no background
output). No labels file at all: classes are named by their index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

BACKGROUND = ("background", "__background__", "unused background")


@dataclass(frozen=True)
class Labels:
    names: tuple[str, ...] = ()  # empty: no labels file, classes named by index
    path: Path | None = None

    @classmethod
    def indices(cls) -> Labels:
        return cls()

    @classmethod
    def load(cls, path: str | Path, num_classes: int | None = None) -> Labels:
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise InputError("labels file not found", path) from None
        except UnicodeDecodeError:
            raise InputError("labels file is not UTF-8 text", path) from None
        names = tuple(line.strip() for line in lines if line.strip())
        if not names:
            raise InputError("labels file is empty", path)
        labels = cls(names, path)
        if num_classes is not None:
            labels.check(num_classes)
        return labels

    @staticmethod
    def _is_background(name: str) -> bool:
        return name.lower() in BACKGROUND

    @property
    def has_background(self) -> bool:
        """``background`` is the first name (the 1001-line ImageNet file)."""
        return bool(self.names) and self._is_background(self.names[0])

    def shift(self, num_classes: int) -> int | None:
        """Index of output 0's name in ``names``, or None when the file fits no convention."""
        if not self.names or num_classes == len(self.names):
            return 0
        if num_classes + 1 == len(self.names):
            if self._is_background(self.names[0]):
                return 1
            if self._is_background(self.names[-1]):
                return 0
        return None

    @property
    def convention(self) -> str:
        if not self.names:
            return "no labels (class indices)"
        where = [i for i, n in enumerate(self.names) if self._is_background(n)]
        if not where:
            return "no background"
        return (
            "background first" if where[0] == 0 else "background last" if where[0] == len(self.names) - 1 else "background inside"
        )

    def check(self, num_classes: int) -> int:
        """The model's output width must fit: N names, or N+1 with background first or last. Returns ``shift``."""
        shift = self.shift(num_classes)
        if shift is None:
            raise InputError(
                f"{len(self.names)} labels fit no convention for a model with {num_classes} outputs "
                f"(expected {num_classes}, or {num_classes + 1} with 'background' first or last)",
                self.path,
            )
        return shift

    def name(self, index: int, num_classes: int | None = None) -> str:
        """Label of output ``index`` (its index when there are no labels)."""
        if not self.names:
            return str(index)
        shift = self.shift(num_classes if num_classes is not None else len(self.names)) or 0
        return self.names[index + shift]
