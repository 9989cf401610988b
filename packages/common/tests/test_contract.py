"""The source contract meets [input] in one place: what the model says wins, a contradiction is refused."""

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from modelport.common.contract import Contract, resolve_input
from modelport.common.errors import ConfigError, InputError
from modelport.common.labels import Labels
from modelport.common.preprocess import InputSpec, to_tensor


def contract(**kw: Any) -> Contract:
    base: dict[str, Any] = {
        "kind": "tflite",
        "input_name": "input",
        "input_shape": [1, 160, 192, 3],
        "layout": "NHWC",
        "size": (160, 192),
        "channels": 3,
        "dtype": "float32",
        "output_name": "out",
        "classes": 10,
    }
    return Contract(**(base | kw))


def test_the_model_gives_size_and_dtype() -> None:
    spec = resolve_input(InputSpec(), contract(), "cfg.toml", "m.tflite")
    assert spec.size == (160, 192) and spec.dtype == "float32" and spec.mean == (127.5,) * 3


@pytest.mark.parametrize("dtype, zero_point, mean", [("uint8", 128, 128.0), ("int8", 0, 128.0), ("int8", -128, 0.0)])
def test_quantized_input_gives_the_float_twins_mean_and_std(
    dtype: Literal["uint8", "int8"], zero_point: int, mean: float
) -> None:
    c = contract(dtype=dtype, scale=1 / 128, zero_point=zero_point)
    spec = resolve_input(InputSpec(), c, "cfg.toml", "m.tflite")
    assert spec.mean == (mean,) * 3 and spec.std == (128.0,) * 3
    # the integer tensor and the float twin's tensor mean the same real values
    pixels = np.arange(0, 256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    spec16 = spec.model_copy(update={"size": (16, 16)})
    q = to_tensor(pixels, spec16, "NHWC", dtype).astype(np.float64)
    real = (q - zero_point) * (1 / 128)
    assert np.allclose(real, to_tensor(pixels, spec16, "NHWC", "float32"), atol=1e-6)


def test_a_contradiction_names_both_values_the_config_and_the_model() -> None:
    given = InputSpec.model_validate({"size": [224, 224], "mean": [127.5] * 3})
    with pytest.raises(ConfigError) as e:
        resolve_input(given, contract(dtype="uint8", scale=1 / 128, zero_point=128), "my.toml", "m.tflite")
    msg = str(e.value)
    assert msg.startswith("my.toml:") and "m.tflite" in msg
    assert "[input] size = [224, 224] but the model's input height, width is [160, 192]" in msg
    assert "[input] mean = [127.5, 127.5, 127.5]" in msg and "is [128, 128, 128]" in msg


def test_dynamic_height_width_need_a_size() -> None:
    c = contract(size=None, input_shape=[1, "?", "?", 3])
    with pytest.raises(ConfigError, match="dynamic"):
        resolve_input(InputSpec(), c, "cfg.toml", "m.onnx")
    assert resolve_input(InputSpec.model_validate({"size": [64, 64]}), c, "cfg.toml", "m.onnx").size == (64, 64)


def test_metadata_normalisation_is_used_and_checked() -> None:
    c = contract(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
    assert resolve_input(InputSpec(), c, "c", "m").std == (255.0,) * 3
    with pytest.raises(ConfigError, match="metadata mean"):
        resolve_input(InputSpec.model_validate({"mean": [127.5] * 3}), c, "c", "m")


@pytest.mark.parametrize(
    "names, classes, first",
    [
        (["background", "a", "b"], 2, "a"),
        (["a", "b", "background"], 2, "a"),
        (["a", "b"], 2, "a"),
        (["background", "a"], 2, "background"),
    ],
)
def test_label_conventions(tmp_path: Path, names: list[str], classes: int, first: str) -> None:
    p = tmp_path / "labels.txt"
    p.write_text("\n".join(names))
    assert Labels.load(p, num_classes=classes).name(0, classes) == first


def test_labels_that_fit_no_convention_and_no_labels(tmp_path: Path) -> None:
    p = tmp_path / "labels.txt"
    p.write_text("a\nb\nc\n")
    with pytest.raises(InputError, match="3 labels fit no convention for a model with 5 outputs"):
        Labels.load(p, num_classes=5)
    assert Labels.indices().name(7, 10) == "7"


def test_a_contract_written_before_tasks_reads_as_a_classifier(tmp_path: Path) -> None:
    import json

    from modelport.common.contract import read_contract

    old = contract().model_dump(mode="json")
    del old["task"], old["outputs"]
    (tmp_path / "contract.json").write_text(json.dumps(old))
    read = read_contract(tmp_path / "contract.json")
    assert read is not None and (read.task, read.outputs) == ("classify", ())
