"""A model that missed its accuracy floors: kept for inspection under a name no step reads.

``onnx/model.int8.onnx`` -> ``onnx/model.int8.below-floor.onnx`` with a manifest saying
why (its agreement, the floors' verdict). No runtime's artifact paths name such a file,
so nothing downstream takes it for the real output; the failed row carries its numbers.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from .artifacts import ArtifactStore, sha256_file, write_atomic
from .errors import ModelportError
from .log import warn
from .strict_json import json_text

MARK = ".below-floor"


def below_floor_name(path: Path) -> Path:
    """model.int8.onnx -> model.int8.below-floor.onnx; model.param -> model.below-floor.param."""
    return path.with_name(path.stem + MARK + path.suffix)


def keep_below_floor(store: ArtifactStore, files: dict[Path, Path], error: ModelportError) -> list[Path]:
    """Copy each ``{made: final}`` file to its below-floor name beside ``final``, with a manifest."""
    kept = []
    for made, final in files.items():
        if not Path(made).is_file():
            continue
        dest = below_floor_name(Path(final))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made, dest)
        agreement = getattr(error, "agreement", None)
        manifest = {
            "artifact": store.rel(dest),
            "below_floor": True,
            "trusted": False,
            "instead_of": store.rel(Path(final)),
            "reason": error.message,
            "sha256": sha256_file(dest),
            "size_bytes": dest.stat().st_size,
            "agreement": agreement.model_dump(exclude={"per_image"}) if agreement is not None else None,
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomic(store.manifest_path(dest), json_text(manifest))
        kept.append(dest)
    if kept:
        warn(f"below the floors: kept as {', '.join(store.rel(p) for p in kept)} (no step uses it)")
    return kept
