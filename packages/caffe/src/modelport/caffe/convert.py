"""Caffe -> ONNX (``onnx/model.onnx``) with caffe2onnx, verified output by output against OpenCV.

caffe2onnx (PyPI 2.0.1) pins onnx 1.6 (installed ``--no-deps``: it works with today's onnx) and
its generated protobuf code needs the pure-Python protobuf implementation, so it runs in a
child process with ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python`` and never touches this
process's protobuf. Its model is labelled with the installed onnx's newest opset and IR version
(28 / 14), which neither rknn-toolkit2 nor pnnx accept; the operators it writes (Conv, Concat,
Reshape, Transpose, Softmax, ...) mean the same at opset 13, so the model is relabelled 13 / IR 7,
checked by the ONNX checker, and every output compared with OpenCV's on the same inputs.
The weights it lists as graph inputs become plain initializers, and the input keeps the
network's name (caffe2onnx appends ``_input``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from modelport.common.artifacts import Job
from modelport.common.context import StepContext
from modelport.common.errors import InputError, ModelportError
from modelport.common.log import activity, step
from modelport.convert.base import Converter
from modelport.runtime.base import ONNX_MODEL
from modelport.runtime.registry import runtime_class

from .files import input_of
from .runtime import SOURCE_PROTOTXT, SOURCE_WEIGHTS, CaffeRuntime

OPSET, IR_VERSION = 13, 7
# OpenCV and onnxruntime compute the same float32 network with different kernels.
MAX_ABS_DIFF, MIN_COSINE = 1e-3, 0.99999


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def run_caffe2onnx(prototxt: Path, weights: Path, out: Path, timeout: float = 900) -> None:
    """caffe2onnx in a child process; it prints errors and still exits 0, so the file is what counts."""
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    # absolute paths: the child runs in the output's folder (caffe2onnx writes nothing else, but its cwd is ours to pick)
    cmd = [
        sys.executable,
        "-m",
        "caffe2onnx.convert",
        "--prototxt",
        str(prototxt.resolve()),
        "--caffemodel",
        str(weights.resolve()),
    ]
    with activity("caffe2onnx conversion"):
        try:
            proc = subprocess.run(
                [*cmd, "--onnx", str(out.resolve())], cwd=out.parent, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise ModelportError(f"caffe2onnx did not finish in {timeout:.0f} s", prototxt) from None
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        lines = [line for line in (proc.stderr + proc.stdout).strip().splitlines() if line.strip()]
        raise InputError(
            f"caffe2onnx cannot convert it (exit {proc.returncode}): {lines[-1] if lines else 'no output'}", prototxt
        )


def relabel(raw: Path, out: Path, input_name: str) -> list[str]:
    """``raw`` as a valid opset-13 / IR-7 model with the network's input name; returns what changed."""
    import onnx

    model = onnx.load(str(raw))
    changes = []
    found = [(o.domain, o.version) for o in model.opset_import]
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", OPSET))
    changes.append(f"labelled opset {OPSET} / IR {IR_VERSION} (caffe2onnx wrote {found} / IR {model.ir_version})")
    model.ir_version = IR_VERSION
    g = model.graph
    weights = {t.name for t in g.initializer}
    listed = [i for i in g.input if i.name in weights]
    for i in listed:
        g.input.remove(i)
    if listed:
        changes.append(f"{len(listed)} weights no longer listed as graph inputs")
    if len(g.input) != 1:
        raise ModelportError(f"caffe2onnx made a model with inputs {[i.name for i in g.input]}; expected one", raw)
    old = g.input[0].name
    if old != input_name:
        g.input[0].name = input_name
        for node in g.node:
            for k, name in enumerate(node.input):
                if name == old:
                    node.input[k] = input_name
        changes.append(f"input {old!r} renamed {input_name!r}")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises ValidationError / InferenceError with multi-line text
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelportError(f"caffe2onnx's model is not valid at opset {OPSET}: {first}", raw) from None
    onnx.save(model, str(out))
    return changes


def compare(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: the largest absolute difference and the cosine of the flattened tensors."""
    if list(expected) != list(got):
        raise ModelportError(f"outputs {list(got)} are not the source's {list(expected)}")
    out = {}
    for name, want in expected.items():
        a, b = want.astype(np.float64).ravel(), got[name].astype(np.float64).ravel()
        if a.shape != b.shape:
            raise ModelportError(f"output {name!r} has shape {got[name].shape}, the source's {want.shape}")
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = float(a @ b / norm) if norm else float(np.array_equal(a, b))
        out[name] = {"max_abs_diff": float(np.abs(a - b).max()), "cosine": cosine}
    return out


def onnx_outputs(model: Path, tensor: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {inp.name: tensor}), strict=True))


def check_against_source(runtime: CaffeRuntime, model: Path, tensors: Iterable[np.ndarray]) -> dict[str, dict[str, float]]:
    """Worst per-output agreement of ``model`` (onnxruntime) with the Caffe source (OpenCV) over ``tensors``;
    a ModelportError naming the output when one is off."""
    worst: dict[str, dict[str, float]] = {}
    for tensor in tensors:
        for name, m in compare(runtime.outputs(tensor), onnx_outputs(model, tensor)).items():
            w = worst.setdefault(name, {"max_abs_diff": 0.0, "cosine": 1.0})
            w["max_abs_diff"], w["cosine"] = max(w["max_abs_diff"], m["max_abs_diff"]), min(w["cosine"], m["cosine"])
    for name, w in worst.items():
        if w["max_abs_diff"] > MAX_ABS_DIFF or w["cosine"] < MIN_COSINE:
            raise ModelportError(
                f"the ONNX model's output {name!r} differs from the Caffe model's in OpenCV: "
                f"max abs diff {w['max_abs_diff']:.3g} (allowed {MAX_ABS_DIFF}), cosine {w['cosine']:.6f}",
                model,
            )
    return worst


def caffe_to_onnx(prototxt: Path, weights: Path, out: Path, workdir: Path) -> list[str]:
    """Convert and relabel (``out``); returns the changes made to caffe2onnx's model."""
    raw = workdir / "caffe2onnx.onnx"
    run_caffe2onnx(prototxt, weights, raw)
    name, _ = input_of(prototxt)
    return relabel(raw, out, name)


class CaffeOnnx(Converter):
    """``onnx/model.onnx`` of a Caffe source (the ONNX row's model, which every other toolchain starts from)."""

    tool = "caffe2onnx"

    def unavailable_reason(self) -> str | None:
        missing = [m for m in ("caffe2onnx", "cv2", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        return f"python module {', '.join(missing)} not installed (tf-onnx env)" if missing else None

    def tool_version(self) -> str:
        return f"caffe2onnx {_version('caffe2onnx')}, opencv-python-headless {_version('opencv-python-headless')}"

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        from modelport.common.preprocess import to_tensor
        from modelport.runtime.run import prepared_images

        cfg, contract, store = ctx.config, ctx.contract, ctx.store
        if contract.kind != "caffe":
            raise InputError(f"the source model is {contract.kind}, not Caffe (`convert onnx` converts it)", contract.file)
        prototxt, weights = store.path(SOURCE_PROTOTXT), store.path(SOURCE_WEIGHTS)

        def make(job: Job) -> dict[str, Any]:
            step(f"caffe2onnx {SOURCE_PROTOTXT} -> {ONNX_MODEL} (opset {OPSET})")
            out = job.tmp()
            changes = caffe_to_onnx(prototxt, weights, out, job.workdir)
            tensors = (to_tensor(a, cfg.input, "NCHW", "float32") for a in prepared_images(ctx))
            source = CaffeRuntime(cfg, {"prototxt": prototxt, "caffemodel": weights})
            with source:
                outputs = check_against_source(source, out, tensors)
            return {"converter": "caffe2onnx", "changes": changes, "outputs_vs_opencv": outputs}

        return self.produce(
            ctx,
            force,
            {"model": ONNX_MODEL},
            make,
            inputs={"prototxt": prototxt, "caffemodel": weights},
            options={"opset": OPSET, "ir_version": IR_VERSION, "input": cfg.input.signature},
            # a classifier is also held to the floors against the reference; a detector's outputs were compared above
            runtime=runtime_class("onnx") if contract.task == "classify" else None,
        )


TARGET = CaffeOnnx()
