"""ncnn's own INT8 tools: ncnnoptimize -> ncnn2table -> ncnn2int8 (built in the ncnn image).

ncnn2table reads images itself and resizes them with ncnn's own bilinear. To give it
exactly the tensors every other backend gets, it is fed the already prepared images
(modelport.common.preprocess) as lossless PNGs at the model's input size, so its
resize is the identity and only mean/norm (the config's) are applied by it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from modelport.common.calibration import CalibrationSet
from modelport.common.errors import ModelportError, ToolchainMissing

from .table import Table

TOOLS = ("ncnnoptimize", "ncnn2table", "ncnn2int8")
METHODS = ("kl", "aciq")  # what ncnn2table implements (it has no min-max)
VERSION_ENV = "NCNN_TOOLS_VERSION"  # overrides the VERSION file envs/ncnn/Dockerfile puts beside bin/


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def tools_version() -> str:
    """The ncnn tag the tools were built from (the tools themselves have no --version)."""
    if os.environ.get(VERSION_ENV):
        return os.environ[VERSION_ENV]
    exe = shutil.which("ncnn2int8")
    stamp = Path(exe).resolve().parent.parent / "VERSION" if exe else None
    return stamp.read_text().strip() if stamp and stamp.is_file() else "unknown (not built by envs/ncnn/Dockerfile)"


def _run(args: list[str], cwd: Path, what: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    out = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        tail = " | ".join(out.strip().splitlines()[-3:])
        raise ModelportError(f"{args[0]} failed (exit {proc.returncode}): {tail}", what)
    return out


def _vector(values: Iterable[float]) -> str:
    return "[" + ",".join(f"{v:.9g}" for v in values) + "]"


def make_int8(
    param: Path,
    binfile: Path,
    calibration: CalibrationSet,
    method: str,
    threads: int,
    workdir: Path,
    out_param: Path,
    out_bin: Path,
    out_table: Path,
    keep_float: set[str] | None = None,
) -> None:
    """ncnnoptimize -> ncnn2table -> ncnn2int8. ``keep_float``: layers whose table lines are
    commented out before ncnn2int8, which then leaves them FP32 (ncnn's mixed precision)."""
    missing = missing_tools()
    if missing:
        raise ToolchainMissing(f"official ncnn tools not on PATH: {', '.join(missing)} (they are built in envs/ncnn/Dockerfile)")
    if method not in METHODS:
        raise ToolchainMissing(f'ncnn2table has no {method!r} method (only {", ".join(METHODS)}); use [ncnn] tools = "builtin"')
    spec = calibration.spec
    opt_param, opt_bin = workdir / "opt.param", workdir / "opt.bin"
    _run(["ncnnoptimize", str(param), str(binfile), str(opt_param), str(opt_bin), "0"], workdir, param)

    images = workdir / "calibration"
    images.mkdir()
    names = []
    for i, arr in enumerate(calibration.prepared()):
        # arr is already in the model's channel order; PIL writes it as RGB, ncnn2table reads
        # BGR and converts back with pixel=RGB: the bytes it feeds are arr's bytes.
        path = images / f"{i:05d}.png"
        Image.fromarray(arr).save(path)
        names.append(str(path))
    listfile = workdir / "images.txt"
    listfile.write_text("\n".join(names) + "\n")
    h, w = spec.size
    _run(
        [
            "ncnn2table",
            str(opt_param),
            str(opt_bin),
            str(listfile),
            str(out_table),
            f"mean={_vector(spec.mean_values)}",
            f"norm={_vector(spec.norm_values)}",
            f"shape=[{w},{h},3]",
            "pixel=RGB",
            f"thread={threads}",
            f"method={method}",
        ],
        workdir,
        param,
    )
    if keep_float:
        table = Table.read(out_table)
        table.disabled |= keep_float & set(table.weights)
        table.write(out_table)
    _run(["ncnn2int8", str(opt_param), str(opt_bin), str(out_param), str(out_bin), str(out_table)], workdir, param)
