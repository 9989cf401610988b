"""A detector with two outputs (scores, boxes) through pnnx and ncnn, output by output against the ONNX model.

The ncnn env has no onnxruntime: the ONNX side runs in onnx's own reference evaluator (test_ncnn_focus.py
says how closely it agrees with onnxruntime). The real RFB-320 goes through the pipeline (`convert ncnn
ncnn-int8`, `bench`) in the slow tests, against the reference tf-onnx's tests made with onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from modelport.ncnn.convert import assign_outputs, run_pnnx
from modelport.ncnn.format import read_param
from modelport.ncnn.runtime import NcnnRuntime
from tiny_models import detect_config, tiny_boxes_scores

pytestmark = pytest.mark.ncnn


def photos(n: int, size: tuple[int, int], seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1, *size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("source_order", [("scores", "boxes"), ("boxes", "scores")])
def test_two_outputs_come_back_under_the_source_names(tmp_path: Path, source_order: tuple[str, str]) -> None:
    """pnnx names the outputs out0, out1; each is matched to the source output it reproduces and the runtime
    returns it under that name, also when the source lists them in another order than pnnx's blobs."""
    src = tiny_boxes_scores(tmp_path / "det.onnx")
    work = tmp_path / "pnnx"
    work.mkdir()
    param, binfile = run_pnnx(src, work, (1, 3, 32, 32), fp16=False)
    model = read_param(param)
    assert model.outputs == ["out0", "out1"]
    config = detect_config(src)
    assert config.contract is not None
    contract = config.contract.model_copy(
        update={"outputs": sorted(config.contract.outputs, key=lambda o: source_order.index(o.name))}
    )
    config = config.with_contract(contract, src)
    images = photos(3, (32, 32))
    onnx_model = ReferenceEvaluator(str(src))
    want = [
        dict(zip(("scores", "boxes"), onnx_model.run(None, {"image": x.transpose(0, 3, 1, 2).astype(np.float32)}), strict=True))
        for x in images
    ]
    with NcnnRuntime(config, {"param": param, "bin": binfile}) as rt:
        by_blob = [rt.outputs(x) for x in images]
    stacked = {name: np.stack([w[name][0] for w in want]) for name in source_order}
    record = assign_outputs(model, param, by_blob, stacked, src)
    assert record["output_blobs"] == {name: f"out{k}" for k, name in enumerate(source_order)}
    assert all(d < 1e-3 for d in record["outputs_max_abs_diff"].values()), record  # type: ignore[attr-defined]
    with NcnnRuntime(config, {"param": param, "bin": binfile}) as rt:
        for x, w in zip(images, want, strict=True):
            got = rt.infer_all(x)
            assert list(got) == list(source_order)
            for name in source_order:
                assert got[name].shape == w[name].shape, name
                np.testing.assert_allclose(got[name], w[name], rtol=0, atol=1e-4, err_msg=name)


def test_an_output_that_reproduces_no_source_output_is_refused(tmp_path: Path) -> None:
    src = tiny_boxes_scores(tmp_path / "det.onnx")
    work = tmp_path / "pnnx"
    work.mkdir()
    param, binfile = run_pnnx(src, work, (1, 3, 32, 32), fp16=False)
    config = detect_config(src)
    images = photos(2, (32, 32))
    with NcnnRuntime(config, {"param": param, "bin": binfile}) as rt:
        by_blob = [rt.outputs(x) for x in images]
    # Both source outputs the size of the scores: only one blob fits them.
    want = {"scores": np.stack([g["out0"] for g in by_blob]), "other": np.stack([g["out0"] + 1 for g in by_blob])}
    from modelport.common.errors import ModelportError

    with pytest.raises(ModelportError, match="do not each reproduce"):
        assign_outputs(read_param(param), param, by_blob, want, src)
