"""The reference outputs: the source TFLite model run on the eval images (made in the tf-onnx env).

Every converter verifies against this one file, in whichever env it runs, so no
env needs another env's runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from .artifacts import ArtifactStore, sha256_file
from .errors import InputError

REFERENCE = "source/reference.npy"


def image_ids(paths: list[Path]) -> list[dict[str, str]]:
    return [{"name": p.name, "sha256": sha256_file(p)} for p in paths]


def load_reference(store: ArtifactStore, images: list[Path], signature: str) -> np.ndarray:
    """Reference outputs [N, C] for ``images``; refuses a reference made from other images or preprocessing."""
    path = store.path(REFERENCE)
    manifest = store.read_manifest(REFERENCE)
    if not path.is_file() or manifest is None:
        raise InputError("no reference outputs: run `modelport convert reference` (tf-onnx env) first", path)
    extra = manifest.get("extra", {})
    if extra.get("preprocessing") != signature:
        raise InputError("reference was made with other preprocessing settings: rerun `modelport convert reference`", path)
    if extra.get("images") != image_ids(images):
        raise InputError("reference was made on other eval images: rerun `modelport convert reference`", path)
    if manifest.get("sha256") != sha256_file(path):
        raise InputError("reference does not match its manifest (modified or partial): rerun `modelport convert reference`", path)
    return cast(np.ndarray, np.load(path, allow_pickle=False))
