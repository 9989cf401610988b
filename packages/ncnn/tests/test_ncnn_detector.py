"""A detector with two outputs (scores, boxes) through pnnx and ncnn, output by output against the ONNX model.

The ncnn env has no onnxruntime: the ONNX side runs in onnx's own reference evaluator (test_ncnn_focus.py
says how closely it agrees with onnxruntime). The real RFB-320 goes through the pipeline (`convert ncnn
ncnn-int8`, `bench`) in the slow tests, against the reference tf-onnx's tests made with onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

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
            # the bare ncnn call the harness overhead is measured against computes every output too
            bare = cast(list[tuple[int, Any]], rt.own_call(x)())
            assert [ret for ret, _ in bare] == [0, 0]
            for (_, mat), name in zip(bare, source_order, strict=True):
                np.testing.assert_array_equal(np.array(mat).reshape(-1), got[name].reshape(-1))


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


QUICK = ["-o", "bench.runs=3", "-o", "bench.warmup=1", "-o", "quantization.recover_rounds=1"]


@pytest.mark.slow
def test_rfb320_through_ncnn_fp32_and_int8_judged_by_its_boxes(rfb320: dict[str, str], tmp_path: Path) -> None:
    """The shipped RFB-320 (scores + boxes) in the pipeline: pnnx's two outputs matched to the source's against
    the reference onnxruntime made, FP32 held to the float floors and INT8 to the INT8 floors by its boxes."""
    import json

    from conftest import LIGHT_BENCH, cli, detector_copy
    from modelport.common.schema import BackendResult

    env = detector_copy(rfb320, tmp_path / "art")
    art = Path(env["MODELPORT_ARTIFACTS"])
    for args in (["convert", "ncnn", "ncnn-int8"], [*LIGHT_BENCH, "bench", "ncnn", "ncnn-int8"]):
        proc = cli(env, *QUICK, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    made = json.loads((art / "ncnn" / "model.param.manifest.json").read_text())["extra"]
    assert made["output_blobs"] == {"scores": "out0", "boxes": "out1"}, made
    assert max(made["outputs_max_abs_diff"].values()) < 1e-3, made  # measured 2.2e-6 (scores), 2.7e-5 (boxes)
    assert made["agreement"]["detect"]["f1"] >= 0.99
    for key, floor in (("ncnn", 0.99), ("ncnn-int8", 0.9)):  # measured 1.0 and 0.933
        row = BackendResult.model_validate_json((art / "results" / f"{key}.json").read_text())
        det = row.agreement.detect if row.agreement else None
        assert row.status == "ok" and det is not None, row.agreement_note
        assert det.f1 >= floor and det.source_boxes > 0, det


@pytest.mark.slow
def test_yolox_ncnn_int8_keeps_the_head_in_float(yolox: dict[str, str], tmp_path: Path) -> None:
    """YOLOX-nano's ncnn INT8 search space on the real model: the per-layer names reach YOLOX's Reorg and Swish
    layers, so the head the search tries in float first (``head_layers``: ``onnx_layers.head`` among the layers
    a variant quantizes) is its nine reg/obj/cls convs, and the variant keeping them in float has exactly those
    left out of its INT8 table. The knobs are driven directly: the search's budget is wall time, which a loaded
    machine would spend before the second variant."""
    import json

    from conftest import cli, detector_copy, make_context
    from modelport.common import onnx_layers
    from modelport.ncnn.recover import NcnnKnobs
    from modelport.ncnn.table import Table

    env = detector_copy(yolox, tmp_path / "art")
    art = Path(env["MODELPORT_ARTIFACTS"])
    proc = cli(env, "convert", "ncnn")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = json.loads((art / "ncnn" / "model.param.manifest.json").read_text())["extra"]
    assert made["focus_rewrites"] == 1 and made["agreement"]["detect"]["f1"] >= 0.99
    ctx = make_context(env, overrides=["images.calibration_limit=8"])
    knobs = NcnnKnobs(ctx, force=False)
    default = knobs.build("minmax", [])
    quantized = knobs.quantized_layers(default)
    assert len(quantized) > 60, len(quantized)  # every non-depthwise conv is named (83 in the table)
    head = knobs.head_layers(default)
    graph_head = onnx_layers.head(onnx_layers.load(art / "onnx" / "model.onnx"))
    assert head == [la for la in graph_head if "_preds." in la] and len(head) == 9, head  # reg/obj/cls x 3 strides
    in_float = knobs.build("minmax", head)
    default_table, float_table = (set(Table.read(art / v.files["table"]).enabled()) for v in (default, in_float))
    assert default_table - float_table == set(knobs.to_ncnn(head)) and len(knobs.to_ncnn(head)) == 9
    assert not knobs.quantized_layers(in_float) & set(head)
    for v in (default, in_float):  # judged by boxes, as the search judges them (no floor asserted: that is the search's)
        assert v.agreement is not None and v.agreement["detect"]["source_boxes"] > 0, v.agreement
