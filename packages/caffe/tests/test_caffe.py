"""The Caffe source on the shipped RFB-320 face detector: OpenCV runs it like the ONNX release, caffe2onnx's
model matches OpenCV output by output, and broken inputs are refused naming the file (seconds: the model is 1 MB)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from modelport.caffe.convert import OPSET, caffe_to_onnx, check_against_source, onnx_outputs
from modelport.caffe.files import input_of
from modelport.caffe.inspect import inspect_caffe
from modelport.caffe.runtime import CaffeRuntime
from modelport.common.config import Config
from modelport.common.errors import InputError, ModelportError
from modelport.common.preprocess import InputSpec

pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is in the tf-onnx env")


@pytest.fixture(scope="module")
def rfb(data_dir: Path) -> tuple[Path, Path]:
    folder = data_dir / "detection"
    return folder / "ulfd_RFB-320.prototxt", folder / "ulfd_RFB-320.caffemodel"


@pytest.fixture(scope="module")
def config() -> Config:
    return Config(input=InputSpec(size=(240, 320), mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0)))


def tensors(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, 3, 240, 320)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def converted(rfb: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """caffe2onnx's model, from paths relative to the working directory (the child runs elsewhere)."""
    folder = tmp_path_factory.mktemp("caffe2onnx")
    out = folder / "model.onnx"
    with contextlib.chdir(rfb[0].parent):
        changes = caffe_to_onnx(Path(rfb[0].name), Path(rfb[1].name), out, folder)
    return out, changes


def test_opencv_runs_the_caffe_model_as_the_onnx_release_does(rfb: tuple[Path, Path], config: Config, data_dir: Path) -> None:
    """The reference for a Caffe source: OpenCV dnn on the .prototxt + .caffemodel, every output."""
    release = data_dir / "detection" / "ulfd_version-RFB-320_without_postprocessing.onnx"
    with CaffeRuntime(config, dict(zip(("prototxt", "caffemodel"), rfb, strict=True))) as rt:
        for x in tensors(2):
            got = rt.outputs(x)
            want = onnx_outputs(release, x)
            assert list(got) == ["boxes", "scores"]
            for name in got:
                np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-4)
            np.testing.assert_array_equal(rt.infer(x), got["boxes"])


def test_contract_is_read_from_the_caffe_files(rfb: tuple[Path, Path]) -> None:
    c = inspect_caffe(rfb[0], rfb[0])
    assert (c.kind, c.task, c.classes, c.layout, c.size) == ("caffe", "detect", 2, "NCHW", (240, 320))
    assert c.input_name == "input" and [(o.name, o.shape) for o in c.outputs] == [
        ("boxes", [1, 4420, 4]),
        ("scores", [1, 4420, 2]),
    ]
    assert c.name == "Caffe FP32" and c.file == "source/model.prototxt"


def test_caffe2onnx_model_is_relabelled_and_matches_opencv(
    rfb: tuple[Path, Path], config: Config, converted: tuple[Path, list[str]]
) -> None:
    out, changes = converted
    model = onnx.load(str(out))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)] and model.ir_version == 7
    assert [i.name for i in model.graph.input] == ["input"], "weights listed as inputs, or caffe2onnx's renamed input"
    assert any("opset" in c for c in changes)
    with CaffeRuntime(config, dict(zip(("prototxt", "caffemodel"), rfb, strict=True))) as rt:
        worst = check_against_source(rt, out, tensors(3, seed=1))
    assert set(worst) == {"boxes", "scores"}
    assert all(w["max_abs_diff"] < 1e-4 and w["cosine"] > 0.999999 for w in worst.values()), worst


def test_verification_catches_a_model_that_differs(
    rfb: tuple[Path, Path], config: Config, converted: tuple[Path, list[str]], tmp_path: Path
) -> None:
    out, _ = converted
    model = onnx.load(str(out))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.05, weight.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with CaffeRuntime(config, dict(zip(("prototxt", "caffemodel"), rfb, strict=True))) as rt:
        with pytest.raises(ModelportError, match="differs from the Caffe model"):
            check_against_source(rt, bad, tensors(1))


def test_prototxt_without_weights_is_refused(rfb: tuple[Path, Path], tmp_path: Path) -> None:
    alone = tmp_path / "net.prototxt"
    shutil.copyfile(rfb[0], alone)
    with pytest.raises(InputError, match="needs its weights: net.caffemodel") as e:
        inspect_caffe(alone, alone)
    assert e.value.path == alone


def test_broken_prototxt_is_refused_naming_it(rfb: tuple[Path, Path], tmp_path: Path) -> None:
    broken = tmp_path / "net.prototxt"
    broken.write_text(rfb[0].read_text()[:-400])  # cut inside the last layer
    shutil.copyfile(rfb[1], tmp_path / "net.caffemodel")
    with pytest.raises(InputError) as e:
        inspect_caffe(broken, broken)
    assert e.value.path == broken and "\n" not in e.value.message


def test_weights_of_another_shape_are_refused_naming_them(rfb: tuple[Path, Path], tmp_path: Path) -> None:
    proto = tmp_path / "net.prototxt"
    shutil.copyfile(rfb[0], proto)
    (tmp_path / "net.caffemodel").write_bytes(rfb[1].read_bytes()[: rfb[1].stat().st_size // 2])
    with pytest.raises(InputError) as e:
        inspect_caffe(proto, proto)
    assert e.value.path == tmp_path / "net.caffemodel"


def test_input_forms(tmp_path: Path) -> None:
    old = tmp_path / "old.prototxt"
    old.write_text('name: "n"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n')
    assert input_of(old) == ("data", [1, 3, 224, 224])
    shape = tmp_path / "shape.prototxt"
    shape.write_text('input: "img"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 48 }\n')
    assert input_of(shape) == ("img", [1, 3, 32, 48])
    none = tmp_path / "none.prototxt"
    none.write_text('layer { name: "c" type: "Convolution" bottom: "x" top: "c" }\n')
    with pytest.raises(InputError, match="0 inputs"):
        input_of(none)


def test_opencv_times_each_layer_named_as_the_converted_onnx_names_it(
    rfb: tuple[Path, Path], config: Config, converted: tuple[Path, list[str]]
) -> None:
    """OpenCV's own per-layer profile (getPerfProfile): a time per Caffe layer, most of them the ONNX layers of
    caffe2onnx's model (it keeps the Caffe layer names); no layer may be reported twice."""
    from modelport.common import onnx_layers

    graph = onnx_layers.load(converted[0])
    with CaffeRuntime(config, dict(zip(("prototxt", "caffemodel"), rfb, strict=True))) as rt:
        layers = rt.layer_times(tensors(1)[0], 3, graph)
    assert layers is not None and len(layers) > 20
    assert all(la.ms >= 0 and la.op for la in layers) and sum(la.ms for la in layers) > 0
    named = [la.name for la in layers if la.onnx]
    assert len(named) > len(layers) // 2 and len(set(named)) == len(named)
    assert any(la.op == "Convolution" for la in layers)
