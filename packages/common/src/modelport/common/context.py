"""What every CLI step gets: config, artifact store, eval images, calibration set, labels."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .artifacts import ArtifactStore
from .calibration import CalibrationSet
from .config import Config, load_config
from .images import resolve_images
from .labels import Labels

ENV_NAME = "MODELPORT_ENV"  # set by nox / the images: which toolchain env a result came from


@dataclass
class StepContext:
    config_path: str | None = None
    overrides: list = field(default_factory=list)  # see config.load_config
    artifacts: str | None = None
    force: bool = False

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path, self.overrides)

    @cached_property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.artifacts)

    @cached_property
    def eval_images(self) -> list[Path]:
        return resolve_images(self.config.images.eval)

    @cached_property
    def calibration(self) -> CalibrationSet:
        return CalibrationSet.from_config(self.config)

    @cached_property
    def labels(self) -> Labels:
        return Labels.load(self.store.path("source/labels.txt"))

    @property
    def env(self) -> str:
        return os.environ.get(ENV_NAME, "local")
