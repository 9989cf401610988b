"""rknn-toolkit2's ``dataset.txt``, written from the common CalibrationSet (never the toolkit's own image loader).

The toolkit would decode and resize listed JPEGs itself (OpenCV), a second preprocessing
that could drift from modelport's. Instead each calibration image goes through
``modelport.common.preprocess`` and is saved as ``.npy``: uint8, un-normalised (the
toolkit applies ``mean_values``/``std_values`` inside the model, as on the board), in
the ONNX's NCHW layout, which is what the toolkit expects from ``.npy`` inputs of an
ONNX model (an NHWC array is refused: "expect 'nchw' like (1, 3, 224, 224)").
Measured: the same 12 calibration images as ``.npy`` or as JPEG paths give
bit-identical INT8 results, so nothing is lost.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from modelport.common.calibration import CalibrationSet
from modelport.common.errors import InputError
from modelport.common.preprocess import InputSpec, to_tensor


def nchw_uint8(prepared: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Prepared uint8 HWC -> (1, 3, H, W) uint8: a layout change only, no normalisation."""
    return np.ascontiguousarray(to_tensor(prepared, spec, "NHWC", "uint8").transpose(0, 3, 1, 2))


def listable(folder: Path) -> Path:
    """``folder``, or a whitespace-free symlink to it: the toolkit splits its list files on whitespace.

    The link lives in the temp folder (removed at exit); a temp folder with whitespace is refused
    before the toolkit starts.
    """
    folder = folder.resolve()
    if not re.search(r"\s", str(folder)):
        return folder
    links = Path(tempfile.mkdtemp(prefix="modelport-rknn-"))
    atexit.register(shutil.rmtree, links, True)
    if re.search(r"\s", str(links)):
        raise InputError(
            "rknn-toolkit2 splits dataset.txt on whitespace, and both the artifacts folder and the temp "
            "folder contain whitespace: set TMPDIR to a folder without spaces",
            folder,
        )
    link = links / "list"
    link.symlink_to(folder, target_is_directory=True)
    return link


def write_npy_list(arrays: Iterable[np.ndarray], names: list[str], folder: Path, list_name: str) -> Path:
    """Save each array as ``folder/<i>-<name>.npy`` and list their absolute, whitespace-free paths, one a line."""
    folder.mkdir(parents=True, exist_ok=True)
    base = listable(folder)
    lines = []
    for i, (arr, name) in enumerate(zip(arrays, names, strict=True)):
        stem = re.sub(r"\s+", "_", Path(name).stem)
        file = f"{i:04d}-{stem}.npy"
        np.save(folder / file, arr, allow_pickle=False)
        lines.append(str(base / file))
    listing = folder / list_name
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def write_dataset(calibration: CalibrationSet, folder: Path) -> Path:
    """``folder/dataset.txt`` listing one ``.npy`` per calibration image, in CalibrationSet order."""
    arrays = (nchw_uint8(a, calibration.spec) for a in calibration.prepared())  # one image in memory at a time
    return write_npy_list(arrays, [p.name for p in calibration.paths], folder, "dataset.txt")
