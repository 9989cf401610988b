"""A two-output engine (RFB-320's scores + boxes) built from a tiny ONNX model with the real TensorRT builder:
infer_all returns every output binding under its ONNX name, as onnx's reference evaluator computes it.

Skipped with the missing layer as reason where TensorRT cannot run (always, on this project's machines and CI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.tensorrt import cuda
from modelport.tensorrt.runtime import TensorrtFp32Runtime, trt_logger
from tiny_models import detect_config, tiny_boxes_scores

REASON = cuda.missing_layer()
pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.gpu,
    pytest.mark.skipif(REASON is not None, reason=f"needs a CUDA GPU with TensorRT: {REASON}"),
]


def fp32_engine(onnx_path: Path, engine: Path) -> Path:
    import tensorrt as trt

    logger = trt_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    serialized = builder.build_serialized_network(network, builder.create_builder_config())
    assert serialized is not None, logger.last_error
    engine.write_bytes(bytes(memoryview(serialized)))
    return engine


def test_infer_all_returns_every_output_binding_by_the_sources_name(tmp_path: Path) -> None:
    import tensorrt as trt
    from onnx.reference import ReferenceEvaluator

    src = tiny_boxes_scores(tmp_path / "two.onnx")
    config = detect_config(src)
    rt = TensorrtFp32Runtime(config, {"engine": fp32_engine(src, tmp_path / "fp32.engine")})
    gpu = cuda.require(config.tensorrt.device)
    rt.origin = {"tensorrt_version": trt.__version__, "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability}}
    x = np.random.default_rng(6).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    want = ReferenceEvaluator(str(src)).run(None, {"image": x})
    with rt:
        outs = rt.infer_all(x)
        first = rt.infer(x)
    assert list(outs) == ["scores", "boxes"]
    for (name, have), ref in zip(outs.items(), want, strict=True):
        assert isinstance(ref, np.ndarray) and have.shape == ref.shape, name
        np.testing.assert_allclose(have, ref, rtol=1e-3, atol=1e-4, err_msg=name)
    np.testing.assert_array_equal(first, outs["scores"].reshape(1, -1))
