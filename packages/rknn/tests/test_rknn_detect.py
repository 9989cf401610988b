"""A detector through RKNN: every output kept under the source's name, checked against onnxruntime per output
(a tiny two-output model built here), and the shipped RFB-320 through `rknn all` judged by its boxes (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import cli, detector_copy, make_context
from modelport.common.context import StepContext

pytest.importorskip("modelport.rknn", reason="modelport-rknn is not installed in this env (nox -s tests runs it in the rknn env)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime comes with rknn-toolkit2 (rknn env)")

from rknn_testing import require_toolkit  # noqa: E402

from modelport.common.contract import Contract, TensorInfo  # noqa: E402
from modelport.common.errors import ModelportError  # noqa: E402
from modelport.common.preprocess import to_tensor  # noqa: E402
from modelport.rknn import convert, toolkit  # noqa: E402
from modelport.runtime.run import prepared_images  # noqa: E402
from tiny_models import tiny_boxes_scores, tiny_images  # noqa: E402

# The toolkit calls deprecated onnx.mapping thousands of times and warns about pkg_resources: not ours to fix.
pytestmark = [
    pytest.mark.rknn,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

ROWS = 64  # tiny_boxes_scores at 32x32, stride 4
CONFIG = """[model]
name = "tiny_boxes_scores"
task = "detect"

[input]
mean = [0, 0, 0]
std = [1, 1, 1]
layout = "NCHW"

[images]
eval = "{images}"
calibration = "{images}"
headline = "img0.png"

[detect]
decoder = "ssd"
boxes_output = "boxes"
scores_output = "scores"
strides = [4]
min_sizes = [[8]]
background = true
fit = "stretch"
"""


@pytest.fixture
def tiny_ctx(tmp_path: Path) -> StepContext:
    """An artifacts folder holding a two-output ONNX detector (scores, then boxes) and its contract, as fetch and
    `convert onnx` leave them; no reference (the test compares with onnxruntime itself)."""
    art = tmp_path / "art"
    (art / "source").mkdir(parents=True)
    (art / "onnx").mkdir()
    tiny_boxes_scores(art / "onnx" / "model.onnx")
    contract = Contract(
        kind="onnx",
        input_name="image",
        input_shape=[1, 3, 32, 32],
        layout="NCHW",
        size=(32, 32),
        channels=3,
        dtype="float32",
        output_name="scores",
        classes=2,
        task="detect",
        outputs=(TensorInfo(name="scores", shape=[1, ROWS, 2]), TensorInfo(name="boxes", shape=[1, ROWS, 4])),
    )
    (art / "source" / "contract.json").write_text(contract.dump())
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG.format(images=tiny_images(tmp_path / "images", n=3, size=(32, 32))))
    return make_context({"MODELPORT_CONFIG": str(config), "MODELPORT_ARTIFACTS": str(art)})


def test_every_output_of_the_simulator_matches_onnxruntime_by_name(tiny_ctx: StepContext, tmp_path: Path) -> None:
    require_toolkit()
    ctx = tiny_ctx
    onnx_path = ctx.store.path(convert.ONNX)
    log, workdir = tmp_path / "rknn.log", tmp_path / "work"
    workdir.mkdir()
    with toolkit.session(log, workdir) as rk:
        convert.build(rk, ctx, onnx_path, "fp16", workdir, log)
        got = convert.run_simulator(rk, ctx, log, onnx_path)
    assert isinstance(got, list) and len(got) == 3
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for arr, out in zip(prepared_images(ctx), got, strict=True):
        names = [o.name for o in session.get_outputs()]
        want = dict(zip(names, session.run(None, {"image": to_tensor(arr, ctx.config.input, "NCHW", "float32")}), strict=True))
        assert list(out) == ["scores", "boxes"]  # the source's names, in its order
        for name, expected in want.items():
            assert out[name].shape == expected.shape, name
            # FP16 in the simulator; a swapped pair would differ by far more (different heads, different widths)
            assert np.abs(out[name] - expected).max() < 0.02 * max(1.0, float(np.abs(expected).max())), name
    saved = tmp_path / "model.eval.npy"
    convert.save_outputs(saved, got)
    back = convert.load_outputs(saved)
    assert isinstance(back, list) and [list(o) for o in back] == [["scores", "boxes"]] * 3
    assert all(np.array_equal(b[k], g[k]) for b, g in zip(back, got, strict=True) for k in g)


def test_outputs_in_another_order_are_named_by_their_size(tiny_ctx: StepContext) -> None:
    """A toolkit that lists the outputs in another order (a Caffe net's blobs) still names each by its size."""
    scores, boxes = np.ones((1, ROWS, 2), np.float32), np.full((1, ROWS, 4), 2.0, np.float32)
    named = convert.source_named(tiny_ctx, [boxes.reshape(-1), scores.reshape(1, 2, ROWS)], Path("model.rknn"))
    assert list(named) == ["scores", "boxes"]
    assert np.array_equal(named["scores"], scores) and np.array_equal(named["boxes"], boxes)


def test_outputs_it_cannot_tell_apart_are_refused(tiny_ctx: StepContext) -> None:
    same = np.zeros(ROWS * 3, np.float32)
    with pytest.raises(ModelportError, match="cannot tell the RKNN outputs"):
        convert.source_named(tiny_ctx, [same, same], Path("model.rknn"))
    with pytest.raises(ModelportError, match="gives 1 outputs, the source 2"):
        convert.source_named(tiny_ctx, [same], Path("model.rknn"))


def rows(art: Path, *keys: str) -> dict[str, dict[str, Any]]:
    return {k: json.loads((art / "results" / f"{k}.json").read_text()) for k in keys}


def judged_by_boxes(key: str, r: dict[str, Any]) -> dict[str, Any]:
    """An INT8 row judged by its boxes against the source's 23 (above the agreement score): ok at or above the
    INT8 F1 floor, or failed saying by how much (an INT8 build near the floor may miss it on another CPU)."""
    det: dict[str, Any] = r["agreement"]["detect"]
    assert det["source_boxes"] == 23 and 0 < det["mean_iou"] <= 1, (key, det)
    if r["status"] == "ok":
        assert det["f1"] >= 0.9, (key, det)  # [accuracy] detect_int8_f1_min
    else:
        assert r["status"] == "failed" and "F1 vs source" in r["reason"] and det["f1"] < 0.9, (key, r["reason"])
    return det


def fp16_matches_the_source(r: dict[str, Any]) -> None:
    det = r["agreement"]["detect"]
    assert r["status"] == "ok", r["reason"]
    assert det["f1"] == 1.0 and det["mean_iou"] > 0.99, det  # measured: 23/23 boxes, mean IoU 0.999


@pytest.mark.slow
def test_rfb320_through_rknn_all_is_judged_by_its_boxes(rfb320: dict[str, str], tmp_path: Path) -> None:
    """The shipped face detector (scores + boxes): FP16, the INT8 search and hybrid, each row by its boxes."""
    require_toolkit()
    env = detector_copy(rfb320, tmp_path / "art")
    art = Path(env["MODELPORT_ARTIFACTS"])
    proc = cli(env, "rknn", "all")
    got = rows(art, "rknn-fp16", "rknn-int8", "rknn-int8-hybrid")
    fp16_matches_the_source(got["rknn-fp16"])
    int8 = {key: judged_by_boxes(key, got[key]) for key in ("rknn-int8", "rknn-int8-hybrid")}
    assert (proc.returncode == 0) == all(got[k]["status"] == "ok" for k in int8), proc.stdout + proc.stderr
    # The search ranks its variants by their boxes (measured: normal F1 0.81, kl_divergence 0.91 kept).
    search = json.loads((art / "recover" / "rknn-int8.json").read_text())
    assert search["variants"][0]["id"] == "normal" and all(v["agreement"]["detect"] for v in search["variants"])
    kept = next(v for v in search["variants"] if v["id"] == search["kept"])
    assert kept["agreement"]["detect"]["f1"] == max(v["agreement"]["detect"]["f1"] for v in search["variants"])
    npy = np.load(art / "results" / "rknn-fp16.npy")
    assert npy.shape == (13, 4420 * 6)  # every output of each photo, flattened: boxes and scores


@pytest.mark.slow
def test_rfb320_from_caffe_through_rknn_all(rfb320_caffe: dict[str, str], tmp_path: Path) -> None:
    """The Caffe release of the same detector, read by the toolkit itself (load_caffe): its outputs named by the
    source's, each row judged by its boxes against OpenCV's run of the Caffe model. The search and hybrid are the
    ONNX test's: here INT8 is kl_divergence (what the search keeps for RFB-320) and no hybrid, to save a minute."""
    require_toolkit()
    env = detector_copy(rfb320_caffe, tmp_path / "art")
    proc = cli(env, "-o", "rknn.quantized_algorithm=kl_divergence", "rknn", "all", "--no-hybrid")
    got = rows(Path(env["MODELPORT_ARTIFACTS"]), "rknn-fp16", "rknn-int8")
    assert all(r["settings"]["loaded_from"] == "caffe" for r in got.values())
    fp16_matches_the_source(got["rknn-fp16"])
    judged_by_boxes("rknn-int8", got["rknn-int8"])
    assert (proc.returncode == 0) == (got["rknn-int8"]["status"] == "ok"), proc.stdout + proc.stderr
