"""TFLite -> ONNX (FP32, INT8): run what was produced and compare it with the reference."""

import json

import numpy as np
import onnx
import pytest

from modelport.common.agreement import compare
from modelport.common.context import StepContext
from modelport.common.reference import REFERENCE, load_reference
from modelport.common.schema import Agreement
from modelport.ort.runtime import OnnxFp32Runtime, OnnxInt8Runtime
from modelport.runtime.base import Runtime
from modelport.runtime.run import prepared_images, run_outputs
from modelport.tensorrt.qdq import QDQ as TENSORRT

pytestmark = pytest.mark.slow  # the real model's converted artifacts (the pipeline fixture)


def outputs_vs_reference(ctx: StepContext, runtime_cls: type[Runtime]) -> Agreement:
    ref = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    with runtime_cls.from_store(ctx.store, ctx.config) as rt:
        out = run_outputs(rt, prepared_images(ctx), ctx.config.input)
    return compare(out, ref, [p.name for p in ctx.eval_images])


def test_onnx_is_static_nchw_and_checked(pipeline: StepContext) -> None:
    path = pipeline.store.path("onnx/model.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 224, 224]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13


def test_onnx_fp32_matches_tflite_on_every_image(pipeline: StepContext) -> None:
    a = outputs_vs_reference(pipeline, OnnxFp32Runtime)
    assert a.images == 12
    assert a.top1 == 1.0, [p.image for p in a.per_image if not p.top1_match]
    assert a.cosine_min >= 0.999


def test_onnx_int8_meets_the_int8_floor(pipeline: StepContext) -> None:
    a = outputs_vs_reference(pipeline, OnnxInt8Runtime)
    assert a.top1 >= 0.9 and a.cosine_mean >= 0.98 and a.cosine_min >= 0.95
    model = onnx.load(str(pipeline.store.path("onnx/model.int8.onnx")))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ, the format TensorRT explicit quantization takes
    assert (
        pipeline.store.path("onnx/model.int8.onnx").stat().st_size < 0.35 * pipeline.store.path("onnx/model.onnx").stat().st_size
    )


def test_manifests_record_verification_and_both_converters(pipeline: StepContext) -> None:
    m = json.loads(pipeline.store.path("onnx/model.onnx.manifest.json").read_text())
    assert m["extra"]["converter"] in m["extra"]["converters"]
    for measured in m["extra"]["converters"].values():
        assert measured["agreement"]["top1"] == 1.0 and measured["median_ms"] > 0
    q = json.loads(pipeline.store.path("onnx/model.int8.onnx.manifest.json").read_text())
    assert q["extra"]["agreement"]["top1"] >= 0.9 and q["options"]["per_channel"] is True


def test_reference_is_the_tflite_output(pipeline: StepContext) -> None:
    ref = np.load(pipeline.store.path(REFERENCE))
    assert ref.shape == (12, 1001) and np.allclose(ref.sum(axis=1), 1, atol=1e-3)  # softmax rows
    names = [p.name for p in pipeline.eval_images]
    labels = pipeline.labels
    assert "chickadee" in labels.name(int(ref[names.index("bird.jpg")].argmax()))
    assert "military uniform" in labels.name(int(ref[names.index("grace_hopper.jpg")].argmax()))


def test_tensorrt_qdq_variant_is_symmetric_int8_and_meets_the_floor(pipeline: StepContext) -> None:
    from onnx import numpy_helper

    path = pipeline.store.path(TENSORRT.output)
    rt = OnnxInt8Runtime(pipeline.config, {"model": path})
    ref = load_reference(pipeline.store, pipeline.eval_images, pipeline.config.input.signature)
    with rt:
        a = compare(
            run_outputs(rt, prepared_images(pipeline), pipeline.config.input), ref, [p.name for p in pipeline.eval_images]
        )
    assert a.top1 >= 0.9 and a.cosine_mean >= 0.98 and a.cosine_min >= 0.95
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [
        inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2
    ]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
