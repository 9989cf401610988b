"""The reference outputs: the source TFLite model run on the eval images (made in the tf-onnx env).

Every converter verifies against this one file, in whichever env it runs, so no
env needs another env's runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from .artifacts import ArtifactStore, sha256_file
from .errors import InputError

if TYPE_CHECKING:
    from .config import Config

REFERENCE = "source/reference.npy"
# A detector's: every output by name (``output/<name>``, stacked over the photos) and the source's decoded
# boxes (``boxes``, ``scores``, ``classes``, and ``photo``: the index of the photo each box is in).
DETECT_REFERENCE = "source/reference.npz"


def reference_file(config: Config) -> str:
    """The store path of the reference a config's models are verified against (a detector's holds every output)."""
    return DETECT_REFERENCE if config.detector is not None else REFERENCE


def image_ids(paths: list[Path]) -> list[dict[str, str]]:
    return [{"name": p.name, "sha256": sha256_file(p)} for p in paths]


def load_reference(store: ArtifactStore, images: list[Path], signature: str) -> np.ndarray:
    """Reference outputs [N, C] for ``images``; refuses a reference made from other images or preprocessing."""
    path = _checked(store, REFERENCE, images, signature)
    return cast(np.ndarray, np.load(path, allow_pickle=False))


def load_detect_reference(store: ArtifactStore, images: list[Path], signature: str) -> dict[str, np.ndarray]:
    """A detector's reference arrays (DETECT_REFERENCE), with the same checks as load_reference."""
    path = _checked(store, DETECT_REFERENCE, images, signature)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise InputError(f"not a reference archive ({e}): rerun `modelport convert reference`", path) from None


def _checked(store: ArtifactStore, rel: str, images: list[Path], signature: str) -> Path:
    path = store.path(rel)
    manifest = store.read_manifest(rel)
    if not path.is_file() or manifest is None:
        raise InputError("no reference outputs: run `modelport convert reference` (tf-onnx env) first", path)
    extra = manifest.get("extra", {})
    if extra.get("preprocessing") != signature:
        raise InputError("reference was made with other preprocessing settings: rerun `modelport convert reference`", path)
    if extra.get("images") != image_ids(images):
        raise InputError("reference was made on other eval images: rerun `modelport convert reference`", path)
    if manifest.get("sha256") != sha256_file(path):
        raise InputError("reference does not match its manifest (modified or partial): rerun `modelport convert reference`", path)
    return path
