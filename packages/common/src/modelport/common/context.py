"""What every CLI step gets: config, artifact store, eval images, calibration set, labels."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .artifacts import ArtifactStore
from .calibration import CalibrationSet, size_warning
from .config import Config, load_config
from .contract import CONTRACT, Contract, read_contract
from .errors import InputError
from .images import resolve_images
from .labels import Labels
from .log import set_tool_log, warn

LABELS = "source/labels.txt"
TOOL_LOG = "logs/toolchain.log"  # what in-process toolchains print (log.captured), kept off the terminal
_WARNED: set[tuple[str, int]] = set()  # a search's variants each get a context: say a small set once
ENV_NAME = "MODELPORT_ENV"  # set by nox / the images: which toolchain env a result came from


@dataclass
class StepContext:
    config_path: str | None = None
    overrides: list[str | tuple[str, Any]] = field(default_factory=list)  # see config.load_config
    artifacts: str | None = None
    force: bool = False

    @cached_property
    def raw_config(self) -> Config:
        """The config as written (file, env vars, overrides), before the source model completes it."""
        return load_config(self.config_path, self.overrides)

    @cached_property
    def config(self) -> Config:
        """The config with [input] completed by the fetched model's contract (when there is one)."""
        contract = read_contract(self.store.path(CONTRACT))
        raw = self.raw_config
        return raw if contract is None else raw.with_contract(contract, self.store.path(contract.file))

    @property
    def contract(self) -> Contract:
        """The fetched source model's contract, for steps that need one (everything after fetch)."""
        contract = self.config.contract
        if contract is None:
            raise InputError("no source model contract: run `modelport fetch` first", self.store.path("source"))
        return contract

    @cached_property
    def store(self) -> ArtifactStore:
        store = ArtifactStore(self.artifacts)
        set_tool_log(store.path(TOOL_LOG))
        return store

    @cached_property
    def eval_images(self) -> list[Path]:
        return resolve_images(self.config.images.eval)

    @cached_property
    def calibration(self) -> CalibrationSet:
        calib = CalibrationSet.from_config(self.config)
        too_few = size_warning(len(calib), self.config.images.calibration_min)
        if too_few and (str(calib.source), len(calib)) not in _WARNED:
            _WARNED.add((str(calib.source), len(calib)))
            warn(too_few)
        return calib

    @cached_property
    def labels(self) -> Labels:
        """The fetched labels; without a labels file, classes are named by their index."""
        path = self.store.path(LABELS)
        return Labels.load(path) if path.is_file() else Labels.indices()

    @property
    def env(self) -> str:
        return os.environ.get(ENV_NAME, "local")
