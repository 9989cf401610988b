"""The OpenVINO INT8 search's cheap knobs (convert.METHODS): NNCF presets with its range estimators and bias
corrections, each built by the real NNCF on a tiny model and differing from the plain preset as it should; a
method NNCF lacks refused in one line; NNCF's accuracy control (+qac) judged by our floors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from modelport.common.calibration import CalibrationSet
from modelport.common.errors import InputError
from tiny_models import tiny_onnx

pytest.importorskip("openvino")
pytest.importorskip("nncf")

# method -> ({FakeQuantize name: its four range constants}, every constant, the output on one image)
Made = dict[str, tuple[dict[str, list[float]], list[np.ndarray], np.ndarray]]


class Calib:
    """A CalibrationSet's one call NNCF's helper makes, over fixed tensors with a few outliers."""

    def __init__(self, xs: list[np.ndarray]):
        self.xs = xs

    def tensors(self, layout: str, dtype: str) -> Iterator[np.ndarray]:
        return iter(self.xs)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """The tiny classifier (Conv+Relu, Gemm) quantized with each method: method -> ({FakeQuantize name: its
    four range constants}, every constant, the model's output on one image)."""
    import openvino as ov

    from modelport.openvino.convert import nncf_quantize

    root = tmp_path_factory.mktemp("nncf")
    source = tiny_onnx(root / "tiny.onnx", size=(8, 8), batch=1)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) * (4 if i == 0 else 1) for i in range(6)]
    out: Made = {}
    for method in ("mixed", "mixed+minmax", "mixed+fbc", "mixed+ca", "mixed+quantile"):
        model = nncf_quantize(ov.convert_model(str(source)), cast(CalibrationSet, Calib(xs)), method)
        ranges = {
            op.get_friendly_name(): [float(np.ravel(op.input_value(i).get_node().get_data())[0]) for i in range(1, 5)]
            for op in model.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant"
        }
        # NNCF numbers the weight and bias constants anew on each run: in order of their shapes
        consts = sorted(
            (np.array(op.get_data()) for op in model.get_ordered_ops() if op.get_type_name() == "Constant"),
            key=lambda a: (a.shape, a.size and float(np.ravel(a)[0])),
        )
        compiled = ov.Core().compile_model(model, "CPU")
        out[method] = (ranges, consts, np.asarray(compiled(xs[1])[0]))
    return out


def test_every_search_method_is_one_nncf_has() -> None:
    from modelport.openvino.convert import METHODS, OPTIONS, PRESETS, parse_method

    for method in METHODS:
        preset, opts = parse_method(method)
        assert preset in PRESETS and set(opts) <= set(OPTIONS)


@pytest.mark.parametrize(
    ("method", "why"),
    [
        ("accuracy", "not one of NNCF's"),
        ("mixed+sq", "unknown option +sq"),
        ("mixed+minmax+quantile", "pick one"),
        ("performance+nobc+fbc", "contradict"),
    ],
)
def test_a_method_nncf_lacks_is_refused_in_one_line(method: str, why: str) -> None:
    from modelport.openvino.convert import parse_method

    with pytest.raises(InputError) as e:
        parse_method(method)
    assert why in str(e.value) and "\n" not in str(e.value)


def test_minmax_ranges_cover_every_image_the_default_averages_them(made: Made) -> None:
    """NNCF's default activation range is the mean of per-image min/max; +minmax takes all images' min/max,
    so the input quantizer's range widens to the outlier image (the first, scaled by 4)."""
    mean, everything = made["mixed"][0], made["mixed+minmax"][0]
    assert mean.keys() == everything.keys() and mean
    widened = 0
    for name, (lo, hi, _, _) in mean.items():
        lo2, hi2, _, _ = everything[name]
        assert lo2 <= lo + 1e-6 and hi2 >= hi - 1e-6, name
        widened += (lo2 < lo - 1e-6) or (hi2 > hi + 1e-6)
    assert widened


def test_quantile_ranges_sit_inside_the_mean_minmax_ones(made: Made) -> None:
    mean, quantile = made["mixed"][0], made["mixed+quantile"][0]
    assert mean.keys() == quantile.keys()
    assert any(quantile[k][1] < mean[k][1] - 1e-6 for k in mean)
    assert all(quantile[k][1] <= mean[k][1] + 1e-6 for k in mean)


def test_full_bias_correction_moves_biases_not_ranges(made: Made) -> None:
    """+fbc (NNCF's BiasCorrection on the quantized model's own inputs) changes the Conv's and the Gemm's bias
    constants and nothing else; the ranges are the default's."""
    default, full = made["mixed"], made["mixed+fbc"]
    assert default[0] == full[0]
    assert len(default[1]) == len(full[1])
    differ = [a.shape for a, b in zip(default[1], full[1], strict=True) if a.shape != b.shape or not np.allclose(a, b)]
    assert sorted(differ) == [(1, 8, 1, 1), (1, 10)], differ


@pytest.mark.parametrize("method", ["mixed+fbc", "mixed+ca"])
def test_each_option_builds_an_int8_model_close_to_the_default(made: Made, method: str) -> None:
    ranges, _, out = made[method]
    assert ranges  # still INT8
    ref = made["mixed"][2]
    cos = float(out.ravel() @ ref.ravel() / (np.linalg.norm(out) * np.linalg.norm(ref)))
    assert cos > 0.99, (method, cos)


def test_accuracy_control_reverts_layers_until_our_floors_hold(tmp_path: Path) -> None:
    """+qac: NNCF's accuracy control judged by our agreement with the reference. Floors the plain INT8 model meets:
    nothing reverted. A cosine floor halfway between it and the FP32 model's: layers reverted, recorded as the
    layers the intermediate (fully quantized) model quantizes and the result does not, and the result meets the
    floor by our own comparison. Past the search's deadline NNCF is told to stop, and the record says so."""
    import time

    import openvino as ov

    from modelport.common.agreement import compare, gate_failures
    from modelport.common.config import AccuracyConfig
    from modelport.openvino.convert import Control, nncf_quantize, quantized_layers, reverted

    source = tiny_onnx(tmp_path / "tiny.onnx", size=(8, 8), batch=1, softmax=False)
    rng = np.random.default_rng(0)
    calib = Calib([rng.standard_normal((1, 3, 8, 8)).astype(np.float32) * (30 if i == 0 else 1) for i in range(6)])
    images = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(8)]
    fp32 = ov.Core().compile_model(ov.convert_model(str(source)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ref = np.stack([np.asarray(fp32(x)[0]).reshape(-1) for x in images])

    def run(name: str, accuracy: AccuracyConfig, seconds: float = 600) -> tuple[dict[str, Any], set[str], Any]:
        work = tmp_path / name
        work.mkdir()
        control = Control(images, ref, accuracy, 8, time.monotonic() + seconds, work)
        model = nncf_quantize(ov.convert_model(str(source)), cast(CalibrationSet, calib), "mixed+qac", control=control)
        ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        out = np.stack([np.asarray(compiled(x)[0]).reshape(-1) for x in images])
        made = reverted(control, model, source)
        return made, quantized_layers(work / "model.xml", source), compare(out, ref, [str(i) for i in range(len(images))])

    loose = AccuracyConfig(int8_top1_min=0.5, int8_cosine_min=0.9, int8_cosine_mean_min=0.9)
    made, plain, agreement = run("loose", loose)
    assert made["reverted_layers"] == [] and made["stopped"] is None and plain  # met at once: a plain INT8 model
    assert not gate_failures(agreement, "int8", loose)

    tight = AccuracyConfig(int8_top1_min=0.5, int8_cosine_min=(agreement.cosine_min + 1) / 2, int8_cosine_mean_min=0.9)
    assert gate_failures(agreement, "int8", tight)  # the plain model misses this floor
    made, left, agreement = run("tight", tight)
    assert made["reverted_layers"] and set(made["reverted_layers"]) == plain - left
    assert not gate_failures(agreement, "int8", tight), agreement.cosine_min

    made, left, _ = run("late", tight, seconds=-1)  # the budget already spent: NNCF stops at its first check
    assert made["stopped"] and "budget" in made["stopped"] and made["reverted_layers"] == [] and left == plain


def test_the_search_counts_the_layers_accuracy_control_reverted_as_float(tmp_path: Path) -> None:
    """`convert openvino-int8` on a tiny pipeline whose floor the plain INT8 model misses, the search restricted to
    +qac: the kept variant's float layers are the ones NNCF reverted (its manifest's ``reverted_layers``), the
    INT8 IR no longer quantizes them, and the record costs them as regions and a MAC share like any float layer."""
    import json
    import shutil

    import openvino as ov

    from conftest import make_context
    from modelport.common.preprocess import to_tensor
    from modelport.common.recovery import record_path
    from modelport.common.reference import REFERENCE, image_ids
    from modelport.convert.registry import target_module
    from modelport.openvino.convert import quantized_layers
    from modelport.runtime.run import prepared_images
    from tiny_models import tiny_pipeline

    env = tiny_pipeline(tmp_path, softmax=False)
    knobs = ["input.size=[8, 8]", 'quantization.recover_methods=["mixed+minmax+fbc+qac"]', "quantization.recover_rounds=1"]
    ctx = make_context(env, overrides=knobs)
    store = ctx.store
    store.path("onnx").mkdir(parents=True)
    shutil.copyfile(tmp_path / "tiny.onnx", store.path("onnx/model.onnx"))  # the source, as `convert onnx` leaves it
    fp32 = ov.Core().compile_model(
        ov.convert_model(str(store.path("onnx/model.onnx"))), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    tensors = [to_tensor(a, ctx.config.input, "NCHW", "float32") for a in prepared_images(ctx)]
    with store.produce(REFERENCE, inputs={}, tool="openvino fp32", tool_version=ov.__version__) as job:
        with open(job.tmp(), "wb") as f:
            np.save(f, np.stack([np.asarray(fp32(x)[0]).reshape(-1) for x in tensors]))
        job.record(preprocessing=ctx.config.input.signature, images=image_ids(ctx.eval_images))

    # a floor no INT8 model meets with every layer INT8 (FP32, which the reference is, gives 1.0)
    ctx = make_context(env, overrides=[*knobs, "accuracy.int8_cosine_min=0.999999"])
    target_module("openvino-fp32").run(ctx, force=False)  # the twin the search times its variants against
    target_module("openvino-int8").run(ctx, force=False)
    record = json.loads(store.path(record_path("openvino-int8")).read_text())
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    assert kept["id"] == "mixed+minmax+fbc+qac" and kept["passes"]
    reverted = (store.read_manifest(kept["files"]["model"]) or {})["extra"]["qac"]["reverted_layers"]
    assert reverted and kept["float_layers"] == reverted
    assert not set(reverted) & quantized_layers(store.path(kept["files"]["model"]), store.path("onnx/model.onnx"))
    assert kept["regions"] >= 1 and 0 < kept["float_share"] <= 1
