"""RKNN from a Caffe source's own files (load_caffe): the simulator against OpenCV's run of the same model.

The shipped RFB-320 face detector (1 MB): the FP16 build and its simulation take seconds. OpenCV comes
with rknn-toolkit2 here (one of its dependencies) and still reads Caffe (4.x).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import make_context

pytest.importorskip("modelport.rknn", reason="modelport-rknn is not installed in this env (nox -s tests runs it in the rknn env)")
cv2 = pytest.importorskip("cv2", reason="OpenCV comes with rknn-toolkit2 (rknn env)")

from modelport.common.context import StepContext  # noqa: E402
from modelport.common.contract import Contract, TensorInfo  # noqa: E402
from modelport.common.errors import InputError  # noqa: E402
from modelport.rknn import convert, toolkit  # noqa: E402

pytestmark = pytest.mark.rknn

CONFIG = """[model]
task = "detect"

[input]
size = [240, 320]
mean = [127, 127, 127]
std = [128, 128, 128]

[images]
eval = "{data}/detection/coco/images"
calibration = "{data}/images/calibration"
"""


@pytest.fixture
def caffe_ctx(data_dir: Path, tmp_path: Path) -> tuple[StepContext, Path]:
    """An artifacts folder holding a fetched Caffe source (its files and contract), as `fetch` leaves it."""
    reason = toolkit.unavailable_reason()
    if reason:
        pytest.skip(reason)
    art = tmp_path / "art"
    (art / "source").mkdir(parents=True)
    shutil.copyfile(data_dir / "detection" / "ulfd_RFB-320.prototxt", art / "source" / "model.prototxt")
    shutil.copyfile(data_dir / "detection" / "ulfd_RFB-320.caffemodel", art / "source" / "model.caffemodel")
    contract = Contract(
        kind="caffe",
        input_name="input",
        input_shape=[1, 3, 240, 320],
        layout="NCHW",
        size=(240, 320),
        channels=3,
        dtype="float32",
        output_name="boxes",
        classes=2,
        task="detect",
        outputs=(TensorInfo(name="boxes", shape=[1, 4420, 4]), TensorInfo(name="scores", shape=[1, 4420, 2])),
    )
    (art / "source" / "contract.json").write_text(contract.dump())
    config = tmp_path / "modelport.toml"
    config.write_text(CONFIG.format(data=data_dir))
    return make_context({"MODELPORT_CONFIG": str(config), "MODELPORT_ARTIFACTS": str(art)}), art


def test_fp16_from_the_caffe_files_matches_opencv(caffe_ctx: tuple[StepContext, Path], tmp_path: Path) -> None:
    ctx, art = caffe_ctx
    source = convert.caffe_source(ctx)
    assert source is not None
    prototxt, weights = source
    assert convert.options(ctx, "fp16")["loaded_from"] == "caffe"
    assert set(convert.inputs(ctx, art / "onnx" / "model.onnx", "fp16")) - {"reference"} == {"prototxt", "caffemodel"}
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, 240, 320, 3), dtype=np.uint8) for _ in range(2)]
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    names = list(net.getUnconnectedOutLayersNames())
    log, workdir = tmp_path / "rknn.log", tmp_path / "work"
    workdir.mkdir()
    with toolkit.session(log, workdir) as rk:
        convert.build(rk, ctx, prototxt, "fp16", workdir, log)
        toolkit.call(rk.init_runtime, what="init_runtime", log=log)
        for img in images:
            got = toolkit.call(rk.inference, inputs=[img], data_format=["nhwc"], what="inference", log=log)
            net.setInput(((img[0].astype(np.float32) - 127) / 128).transpose(2, 0, 1)[None])
            for name, want, out in zip(names, net.forward(names), got, strict=True):
                a, b = want.astype(np.float64).ravel(), np.asarray(out, np.float64).ravel()
                cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
                assert cosine > 0.9999, (name, cosine)  # FP16 in the simulator: boxes within ~0.03, scores ~6e-4
                assert np.abs(a - b).max() < 0.1, name


def test_load_caffe_off_takes_the_onnx(caffe_ctx: tuple[StepContext, Path]) -> None:
    ctx, art = caffe_ctx
    ctx = make_context(
        {"MODELPORT_CONFIG": str(ctx.config_path), "MODELPORT_ARTIFACTS": str(art)}, overrides=["rknn.load_caffe=false"]
    )
    assert convert.caffe_source(ctx) is None and convert.options(ctx, "fp16")["loaded_from"] == "onnx"


def test_missing_weights_are_named(caffe_ctx: tuple[StepContext, Path]) -> None:
    ctx, art = caffe_ctx
    (art / "source" / "model.caffemodel").unlink()
    with pytest.raises(InputError, match="run `modelport fetch` first") as e:
        convert.caffe_source(ctx)
    assert e.value.path == art / "source" / "model.caffemodel"
