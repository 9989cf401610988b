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

from pathlib import Path

import numpy as np

from modelport.common.calibration import CalibrationSet
from modelport.common.preprocess import InputSpec, to_tensor


def nchw_uint8(prepared: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Prepared uint8 HWC -> (1, 3, H, W) uint8: a layout change only, no normalisation."""
    return np.ascontiguousarray(to_tensor(prepared, spec, "NHWC", "uint8").transpose(0, 3, 1, 2))


def write_npy_list(arrays: list[np.ndarray], names: list[str], folder: Path, list_name: str) -> Path:
    """Save each array as ``folder/<i>-<name>.npy`` and list their absolute paths, one a line."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (arr, name) in enumerate(zip(arrays, names, strict=True)):
        p = (folder / f"{i:04d}-{Path(name).stem}.npy").resolve()
        np.save(p, arr, allow_pickle=False)
        lines.append(str(p))
    listing = folder / list_name
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def write_dataset(calibration: CalibrationSet, folder: Path) -> Path:
    """``folder/dataset.txt`` listing one ``.npy`` per calibration image, in CalibrationSet order."""
    arrays = [nchw_uint8(a, calibration.spec) for a in calibration.prepared()]
    return write_npy_list(arrays, [p.name for p in calibration.paths], folder, "dataset.txt")
