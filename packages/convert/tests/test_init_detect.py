"""`init` on detectors: the shipped YOLOX-nano and RFB-320 get a [detect] config that loads and decodes;
output layouts nothing decodes stay a one-line refusal."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, cli, error_line
from modelport.common.config import load_config
from modelport.convert.inspect import inspect

DETECTION = ROOT / "data" / "detection"


@pytest.fixture
def env(test_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in test_env.items() if k not in ("MODELPORT_MODEL", "MODELPORT_LABELS", "MODELPORT_CONFIG")}
    return base | {"MODELPORT_ARTIFACTS": str(tmp_path / "art")}


def init(env: dict[str, str], model: Path, out: Path, *extra: str) -> str:
    proc = cli(env, "init", str(model), "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


@pytest.mark.parametrize(
    ("name", "decoder", "keys"),
    [
        ("yolox_nano.onnx", "yolox", {"strides = [8, 16, 32]", 'color = "BGR"', 'fit = "letterbox"', "pad_value = 114"}),
        ("ulfd_version-RFB-320.onnx", "boxes_scores", {'boxes_output = "boxes"', "background = true", 'fit = "stretch"'}),
        (
            "ulfd_version-RFB-320_without_postprocessing.onnx",
            "ssd",
            {"min_sizes = [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]]", "variances = [0.1, 0.2]"},
        ),
    ],
)
def test_init_writes_a_detect_config_that_loads_and_decodes(
    env: dict[str, str], tmp_path: Path, name: str, decoder: str, keys: set[str]
) -> None:
    from modelport.common.images import load_image
    from modelport.tasks.detect import postprocess, preprocess

    model = DETECTION / name
    text = init(env, model, tmp_path / "det.toml")
    assert 'task = "detect"' in text and f'decoder = "{decoder}"' in text
    for key in keys:
        assert any(line.startswith(key) and "# " in line for line in text.splitlines()), key
    # Every [detect] value is either read from the model or marked a guess.
    section = text.split("[detect]")[1].strip().splitlines()
    assert all("GUESS" in line or "from the output shapes" in line or "compared" in line or "matches" in line for line in section)
    cfg = load_config(tmp_path / "det.toml")
    assert (cfg.model.task, cfg.detect.decoder) == ("detect", decoder)
    contract = inspect(model)
    resolved = cfg.with_contract(contract, model)
    # The written config drives the decoder on a real photo: boxes in the photo.
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    image = load_image(ROOT / "data" / "images" / "grace_hopper.jpg")
    tensor, placement = preprocess(image, resolved.input, resolved.detect)
    outputs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {contract.input_name: tensor}), strict=True))
    found = postprocess(outputs, resolved.detect, resolved.input.size, placement).above(0.5)
    assert len(found) >= 1  # a person (YOLOX) or a face (RFB)
    assert (found.boxes[:, 2] <= image.shape[1]).all() and (found.boxes[:, 3] <= image.shape[0]).all()


def test_an_override_wins_over_a_detector_guess(env: dict[str, str], tmp_path: Path) -> None:
    text = init(
        env, DETECTION / "yolox_nano.onnx", tmp_path / "det.toml", "-o", "detect.nms_iou=0.45", "-o", "detect.align=center"
    )
    assert any(line.startswith("nms_iou = 0.45") and "given (-o)" in line for line in text.splitlines())
    assert load_config(tmp_path / "det.toml").detect.align == "center"


def _reshape_model(path: Path, shapes: list[list[int]]) -> Path:
    """Image [1, 3, 8, 8] -> one Reshape per requested output shape (192 values each)."""
    nodes, inits, outs = [], [], []
    for i, shape in enumerate(shapes):
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"s{i}"))
        nodes.append(helper.make_node("Reshape", ["image", f"s{i}"], [f"out{i}"]))
        outs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])], outs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.parametrize(
    ("shapes", "says"),
    [
        ([[1, 12, 16]], "channels-first detector head (YOLOv8-style): not decoded yet"),
        ([[1, 2, 3, 32]], "neither [batch, N] class scores nor a [1, N, 5 + C] detector head"),
        ([[1, 48, 4], [1, 32, 6]], "2 outputs ([1, 48, 4], [1, 32, 6]): a classifier has one"),
        ([[1, 192], [1, 48, 4], [1, 48, 4]], "3 outputs"),
    ],
)
def test_an_output_layout_nothing_decodes_is_one_line(
    env: dict[str, str], tmp_path: Path, shapes: list[list[int]], says: str
) -> None:
    model = _reshape_model(tmp_path / "odd.onnx", shapes)
    proc = cli(env, "init", str(model), "--out", str(tmp_path / "odd.toml"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = error_line(proc)
    assert str(model) in line and says in line, line
    assert not (tmp_path / "odd.toml").exists()


def test_a_tiny_yolox_layout_is_a_detector_and_its_strides_are_checked(env: dict[str, str], tmp_path: Path) -> None:
    # 192 values as [1, 16, 12]: 16 rows of 5 + 7; no YOLOX strides give 16 rows at 8x8, and init says so.
    model = _reshape_model(tmp_path / "tiny.onnx", [[1, 16, 12]])
    text = init(env, model, tmp_path / "tiny.toml")
    assert "GUESS, WRONG: the model has 16 rows, set them" in text
    contract = inspect(model)
    assert (contract.task, contract.classes, [o.shape for o in contract.outputs]) == ("detect", 7, [[1, 16, 12]])


def test_a_classifier_config_on_a_detector_is_one_config_error(test_env: dict[str, str], tmp_path: Path) -> None:
    proc = cli(
        test_env | {"MODELPORT_MODEL": str(DETECTION / "yolox_nano.onnx"), "MODELPORT_ARTIFACTS": str(tmp_path / "a")}, "fetch"
    )
    assert proc.returncode != 0
    line = error_line(proc)
    assert '[model] task = "classify"' in line and "is a detector" in line, line
    assert [p.name for p in (tmp_path / "a").rglob("*") if p.is_file()] in ([], [".lock"])


def test_a_detect_output_the_model_does_not_have_is_one_config_error(env: dict[str, str], tmp_path: Path) -> None:
    model = DETECTION / "ulfd_version-RFB-320.onnx"
    proc = cli(env, "init", str(model), "--out", str(tmp_path / "det.toml"), "-o", "detect.boxes_output=box")
    assert proc.returncode != 0
    assert "[detect] boxes_output = 'box' is not an output of the model" in error_line(proc)
    assert not (tmp_path / "det.toml").exists()
