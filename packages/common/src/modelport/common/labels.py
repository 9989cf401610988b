"""Class labels: the 1001-line file with ``background`` first, or a plain 1000-line file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError


@dataclass(frozen=True)
class Labels:
    names: tuple[str, ...]
    path: Path | None = None

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

    @property
    def has_background(self) -> bool:
        return self.names[0].lower() in ("background", "__background__", "unused background")

    def check(self, num_classes: int) -> None:
        """The model's output width must match: N labels, or N+1 with background first."""
        if num_classes == len(self.names):
            return
        if num_classes + 1 == len(self.names) and self.has_background:
            return
        raise InputError(f"{len(self.names)} labels but the model outputs {num_classes} classes", self.path)

    def name(self, index: int, num_classes: int | None = None) -> str:
        """Label of output ``index``; a 1000-wide output with a background-first file is shifted by one."""
        shift = 1 if (num_classes is not None and num_classes + 1 == len(self.names) and self.has_background) else 0
        return self.names[index + shift]
