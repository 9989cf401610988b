"""The float16 layer list is checked against the cfg the toolkit's own hybrid step 1 writes for the graph:
a tiny ONNX model (tiny_models.py) through the real step 1 (a few seconds), no pipeline artifacts."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import cast

import numpy as np
import pytest

pytest.importorskip("modelport.rknn", reason="modelport-rknn is not installed in this env (nox -s tests runs it in the rknn env)")

from rknn_testing import require_toolkit  # noqa: E402

from modelport.common.errors import InputError, ModelportError  # noqa: E402
from modelport.rknn import hybrid  # noqa: E402
from tiny_models import tiny_onnx  # noqa: E402

pytestmark = pytest.mark.rknn


@pytest.fixture(scope="module")
def step1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.model / tiny.data / tiny.quantization.cfg from the toolkit's step 1 (Conv -> Relu -> pool -> Gemm -> Softmax)."""
    require_toolkit()
    from rknn.api import RKNN

    work = tmp_path_factory.mktemp("step1")
    tiny_onnx(work / "tiny.onnx", size=(16, 16), batch=1)
    lines = []
    for i in range(2):
        np.save(work / f"cal{i}.npy", np.random.default_rng(i).integers(0, 255, (1, 3, 16, 16), dtype=np.uint8))
        lines.append(str(work / f"cal{i}.npy"))
    (work / "dataset.txt").write_text("\n".join(lines) + "\n")
    rk = RKNN(verbose=False)
    try:
        assert rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform="rk3588") == 0
        assert rk.load_onnx(str(work / "tiny.onnx")) == 0
        with contextlib.chdir(work):
            assert rk.hybrid_quantization_step1(dataset=str(work / "dataset.txt"), proposal=False) == 0
    finally:
        rk.release()
    return work


def step2(work: Path, layers: list[str]) -> int:
    from rknn.api import RKNN

    (work / "hybrid.cfg").write_text(hybrid.patch_cfg((work / "tiny.quantization.cfg").read_text(), layers))
    rk = RKNN(verbose=False)
    try:
        with contextlib.chdir(work):
            return cast(
                int,
                rk.hybrid_quantization_step2(
                    model_input="tiny.model", data_input="tiny.data", model_quantization_cfg="hybrid.cfg"
                ),
            )
    finally:
        rk.release()


def test_the_quantized_tensors_of_step1_are_what_step2_takes(step1: Path) -> None:
    text = (step1 / "tiny.quantization.cfg").read_text()
    quantized = hybrid.quantized_tensors(text)
    assert {"conv", "relu"} <= set(quantized) and "image" not in quantized  # the graph input stays float32
    hybrid.check_float16(quantized, text, "test", "tiny.quantization.cfg")
    assert step2(step1, quantized) == 0


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("float16", r"'float16' \(not in this graph\)"),  # a dtype read as a layer name
        ("image", r"'image' \(step 1 keeps it float32\)"),  # the input: step 2 says "Invalid operands name"
        ("probs", r"'probs' \(step 1 keeps it float16\)"),  # already float: a float16 entry changes nothing
    ],
)
def test_a_name_step1_does_not_quantize_is_one_line_naming_it(step1: Path, name: str, why: str) -> None:
    text = (step1 / "tiny.quantization.cfg").read_text()
    with pytest.raises(ModelportError, match=rf"tiny.quantization.cfg: the toolkit's float16 proposal: .*{why}") as e:
        hybrid.check_float16(
            ["relu", name], text, "the toolkit's float16 proposal", step1 / "tiny.quantization.cfg", ModelportError
        )
    assert "\n" not in str(e.value) and "'relu'" not in str(e.value)
    with pytest.raises(InputError, match=why):  # the configured list: the user's input
        hybrid.check_float16([name], text, "[rknn] hybrid_float16_layers", "modelport.toml")


def test_a_layer_of_the_toolkits_own_proposal_is_float16_in_its_cfg_and_accepted(step1: Path) -> None:
    """With proposal=True step 1 writes its proposed layers as float16 in quantize_parameters: that is the
    proposal, not a mistake (MobileNetV2's Reshape_sw); the same float16 entry not proposed changes nothing."""
    text = (step1 / "tiny.quantization.cfg").read_text()
    assert hybrid.cfg_dtypes(text)["probs"] == "float16"
    hybrid.check_float16(["probs"], text, "the toolkit's float16 proposal", "x", ModelportError, proposed=["probs"])
    with pytest.raises(InputError, match=r"'probs' \(step 1 keeps it float16\)"):
        hybrid.check_float16(["probs"], text, "[rknn] hybrid_float16_layers", "x")
