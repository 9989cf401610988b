"""MNN INT8 per layer against its FP32 twin, with the real MNN: a tiny ONNX model made here (fast), and the
pipeline's MobileNetV2 when its artifacts exist (slow)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import make_context
from modelport.common import onnx_layers
from modelport.common.context import StepContext
from modelport.common.layer_analysis import SQNR_CAP_DB
from modelport.common.preprocess import to_tensor
from modelport.common.reference import REFERENCE
from modelport.convert.registry import target_module
from modelport.mnn.runtime import MnnFp32Runtime, MnnInt8Runtime
from modelport.runtime.base import ONNX_MODEL
from modelport.runtime.run import prepared_images
from tiny_models import tiny_onnx

pytest.importorskip("MNN")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)))


def tensors(ctx: StepContext) -> list[np.ndarray]:
    spec = ctx.config.input
    return [to_tensor(a, spec, MnnInt8Runtime.input_layout, MnnInt8Runtime.input_dtype) for a in prepared_images(ctx)]


def test_analysis_names_every_layer_by_the_onnx_model_and_measures_the_int8_model(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    """The tiny classifier (Conv+Relu, pool, flatten, Gemm, Softmax) as MNN FP32 and MNN INT8 (train_quant on the
    eval photos): one row per ONNX layer, named by its node; the last layer's per-image cosine is the one between
    the two runtimes' own outputs; the FP32 model against itself is identical at every layer."""
    from modelport.mnn.analyze import analyze
    from modelport.mnn.convert import convert_onnx, quantize

    ctx = make_context({**test_env, "MODELPORT_ARTIFACTS": str(tmp_path / "art")})
    _, c, h, w = ctx.config.input.shape("NCHW")
    onnx = ctx.store.path(ONNX_MODEL)
    onnx.parent.mkdir(parents=True)
    tiny_onnx(onnx, size=(h, w), channels=c, batch=1)
    fp32, int8 = ctx.store.path(MnnFp32Runtime.artifacts["model"]), ctx.store.path(MnnInt8Runtime.artifacts["model"])
    fp32.parent.mkdir(parents=True)
    convert_onnx(onnx, fp32, tmp_path / "convert.log")
    xs = tensors(ctx)
    quantize(fp32, int8, np.stack(xs), tmp_path, tmp_path / "quantize.log", "moving_average", "per_tensor")

    data = analyze(ctx, int8)
    rows, graph = data["layers"], onnx_layers.load(onnx)
    assert [r["node"] for r in rows] == [la.node for la in graph.layers], data["mapping"]
    assert data["mapping"]["fp32_only"] == [] and data["mapping"]["int8_only"] == []
    assert data["backend"] == "mnn-int8" and data["images"] == [p.name for p in ctx.eval_images]
    with MnnFp32Runtime(ctx.config, {"model": fp32}) as f, MnnInt8Runtime(ctx.config, {"model": int8}) as q:
        outputs = [cosine(q.infer(x), f.infer(x)) for x in xs]
    assert rows[-1]["cosine_images"] == pytest.approx(outputs, abs=1e-6)
    assert all(r["cosine_min"] > 0.9 for r in rows)  # INT8 of the same layer, not some other tensor
    assert any(r["sqnr_db_min"] < SQNR_CAP_DB for r in rows)  # and INT8 really ran: not the FP32 numbers

    same = analyze(ctx, fp32)
    assert [r["node"] for r in same["layers"]] == [r["node"] for r in rows]
    assert all(r["sqnr_db_min"] == SQNR_CAP_DB for r in same["layers"])


@pytest.mark.slow
def test_real_model_analysis_covers_mobilenet_v2(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> None:
    """MobileNetV2's MNN INT8 (made by the helpers mnn-int8 uses, without its floors: the analysis is what says
    where a model below them loses) against MNN FP32: every layer of onnx/model.onnx is a row, and the output
    layer's per-image cosine is the one between the two runtimes' own outputs."""
    from modelport.convert.analyze import run
    from modelport.mnn.convert import convert_onnx, quantize

    art = tmp_path / "art"
    for rel in ("source/model.tflite", "source/contract.json", "source/labels.txt", REFERENCE, ONNX_MODEL):
        for name in (rel, rel + ".manifest.json"):
            if pipeline.store.path(name).is_file():
                (art / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(pipeline.store.path(name), art / name)
    ctx = make_context({**test_env, "MODELPORT_ARTIFACTS": str(art)})
    target_module("mnn-fp32").run(ctx, force=False)
    model = tmp_path / "model.int8.mnn"
    convert_onnx(ctx.store.path(ONNX_MODEL), tmp_path / "float.mnn", tmp_path / "convert.log")
    calibration = np.stack(list(ctx.calibration.tensors(MnnInt8Runtime.input_layout, MnnInt8Runtime.input_dtype)))
    quantize(
        tmp_path / "float.mnn",
        model,
        calibration,
        tmp_path,
        tmp_path / "quantize.log",
        ctx.config.mnn.scale_update,
        ctx.config.mnn.feature_scale,
    )
    data = run(ctx, "mnn-int8", files={"model": model})
    rows = data["layers"]
    graph = onnx_layers.load(ctx.store.path(ONNX_MODEL))
    # every layer, the 41 convs train_quant renames (ConvInt8<n>) included: paired with the FP32 convs by place
    assert [r["node"] for r in rows] == [la.node for la in graph.layers], data["mapping"]
    assert data["mapping"]["renamed_by_train_quant"] > 0
    assert os.path.isfile(ctx.store.path("analysis/mnn-int8.json"))
    xs = tensors(ctx)
    with MnnFp32Runtime.from_store(ctx.store, ctx.config) as f, MnnInt8Runtime(ctx.config, {"model": model}) as q:
        outputs = [cosine(q.infer(x), f.infer(x)) for x in xs]
    assert rows[-1]["node"] == graph.layers[-1].node
    assert rows[-1]["cosine_images"] == pytest.approx(outputs, abs=1e-5)
