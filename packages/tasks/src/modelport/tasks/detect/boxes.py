"""The boxes of one photo: what every decoder ends in and every metric starts from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Corner boxes (x1, y1, x2, y2) in the original photo's pixels, best score first."""

    boxes: np.ndarray  # float32 [K, 4]
    scores: np.ndarray  # float32 [K]
    classes: np.ndarray  # int64 [K], 0-based class index (background already removed)

    def __post_init__(self) -> None:
        k = len(self.scores)
        if self.boxes.shape != (k, 4) or self.classes.shape != (k,):
            raise ValueError(f"boxes {self.boxes.shape}, scores {self.scores.shape}, classes {self.classes.shape}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def take(self, index: np.ndarray) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.classes[index])

    def above(self, threshold: float) -> Detections:
        return self.take(np.flatnonzero(self.scores >= threshold))
