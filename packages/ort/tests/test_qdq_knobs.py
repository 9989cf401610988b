"""The ONNX INT8 search's cheap knobs (modelport.convert.qdq): methods that keep every layer INT8, each built by
onnxruntime on a tiny model converted by the real CLI, and a method onnxruntime lacks refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import cli, make_context
from modelport.common.context import StepContext
from modelport.common.errors import InputError
from modelport.convert.qdq import METHODS, bias_correct, method_settings, with_method

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed in this env")


@pytest.fixture
def ctx(tiny: dict[str, str]) -> StepContext:
    for args in (("fetch",), ("convert", "reference", "onnx")):
        proc = cli(tiny, *args)
        assert proc.returncode == 0, proc.stderr
    return make_context(tiny)


def build(ctx: StepContext, method: str) -> onnx.ModelProto:
    from modelport.ort.int8 import ORT

    rel = f"onnx/variants/int8-{method.replace('@', '_').replace('+', '_')}.onnx"
    settings = with_method(ctx.config.quantization.quantizer_settings(), method) | {"nodes_to_exclude": []}
    ORT.quantize(ctx, False, rel, settings, gate=False)
    manifest = ctx.store.read_manifest(rel) or {}
    assert manifest["extra"]["agreement"]["images"] > 0  # verified on onnxruntime like any variant
    return onnx.load(str(ctx.store.path(rel)))


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def biases(model: onnx.ModelProto) -> set[str]:
    """The initializers Conv/Gemm biases come from (an int32 bias through its DequantizeLinear)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    out = set()
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 2:
            src = producer.get(n.input[2])
            out.add(src.input[0] if src is not None and src.op_type == "DequantizeLinear" else n.input[2])
    return out


def test_every_search_method_is_one_onnxruntime_has() -> None:
    for method in METHODS:
        assert method_settings(method)["calibrate_method"] in ("minmax", "entropy", "percentile")


@pytest.mark.parametrize(
    ("method", "why"),
    [
        ("distribution", "only serves float8"),
        ("minmax@99.9", "applies to percentile only"),
        ("percentile+sq", "unknown option +sq"),
        ("entropy+ma", "applies to minmax only"),
        ("minmax+bc+fbc", "pick one"),
        ("percentile@abc", "not a number"),
    ],
)
def test_a_method_onnxruntime_lacks_is_refused_in_one_line(method: str, why: str) -> None:
    with pytest.raises(InputError) as e:
        method_settings(method)
    assert why in str(e.value) and "\n" not in str(e.value)


def test_a_method_keeps_the_symmetric_settings_of_the_tensorrt_model() -> None:
    sym = {"calibrate_method": "percentile", "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True}}
    s = with_method(sym, "percentile@99.9999+bc")
    assert s["extra_options"] == {"ActivationSymmetric": True, "WeightSymmetric": True, "CalibPercentile": 99.9999}
    assert s["bias_correction"] is True and with_method(sym, "minmax")["bias_correction"] is False
    assert "full_bias_correction" not in s and with_method(sym, "minmax+fbc")["full_bias_correction"] is True


@pytest.mark.parametrize("method", ["minmax+bc", "minmax+fbc"])
def test_bias_correction_changes_only_the_biases_and_leaves_no_mean_error_to_correct(
    ctx: StepContext, tmp_path: Path, method: str
) -> None:
    """Fast (each layer's own error) and full (layer by layer on the quantized model's inputs) alike."""
    plain, corrected = build(ctx, "minmax"), build(ctx, method)
    a, b = initializers(plain), initializers(corrected)
    assert a.keys() == b.keys()
    changed = {k for k in a if not np.array_equal(a[k], b[k])}
    assert changed and changed <= biases(plain), changed  # weights, scales, zero points as minmax made them
    manifest = ctx.store.read_manifest(f"onnx/variants/int8-{method.replace('+', '_')}.onnx") or {}
    assert manifest["extra"]["bias_correction"]["layers"] == 2  # the Conv and the Gemm
    full = method.endswith("+fbc")
    assert manifest["extra"]["bias_correction"].get("full", False) is full
    # Measured again on the corrected model, each layer's own mean error is what int32 rounding leaves: <= 1 step.
    again = tmp_path / "again.onnx"
    onnx.save(corrected, str(again))
    import onnxruntime as ort

    float_model = ctx.store.path("onnx/model.onnx")
    name = ort.InferenceSession(str(float_model), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    bias_correct(float_model, again, ctx.calibration, name, full=full)
    c = initializers(onnx.load(str(again)))
    for k in changed:
        assert np.max(np.abs(c[k].astype(np.int64) - b[k].astype(np.int64))) <= 1, k


def test_moving_average_minmax_narrows_the_activation_ranges(ctx: StepContext) -> None:
    plain, averaged = initializers(build(ctx, "minmax")), initializers(build(ctx, "minmax+ma"))
    scales = [k for k in plain if k.endswith("_scale") and plain[k].ndim == 0]
    assert scales
    # The mean of per-image ranges sits inside the range of all images: no activation scale grows, some shrink.
    assert all(averaged[k] <= plain[k] * (1 + 1e-6) for k in scales)
    assert any(averaged[k] < plain[k] * (1 - 1e-6) for k in scales)


def test_the_symmetric_model_for_tensorrt_is_searched_with_the_same_knobs(tiny: dict[str, str]) -> None:
    """`convert onnx-int8-tensorrt` below the floors: the same search as ONNX INT8 (methods incl. bias correction,
    then float layers), each variant still symmetric (int8, zero points 0), none timed on onnxruntime."""
    import json
    from pathlib import Path

    for args in (("fetch",), ("convert", "reference", "onnx")):
        assert cli(tiny, *args).returncode == 0
    strict = ("-o", "accuracy.int8_cosine_min=0.9999999", "-o", "quantization.recover_minutes=1")
    proc = cli(tiny, *strict, "convert", "onnx-int8-tensorrt")
    art = Path(tiny["MODELPORT_ARTIFACTS"])
    record = json.loads((art / "recover" / "onnx-int8-tensorrt.json").read_text())
    assert record["searched"] and record["timing"] is None, record
    assert "timed as its TensorRT engine" in record["speed"]["note"] and record["speed"]["speedup"] is None
    methods = [v["method"] for v in record["variants"]]
    assert methods[:4] == ["percentile", "percentile+bc", "percentile@99.9999+bc", "percentile@99.9999+fbc"], methods
    built = [v for v in record["variants"] if v["files"]]
    assert len(built) > 3
    for v in built:
        model = onnx.load(str(art / v["files"]["model"]))
        zps = [t for t in model.graph.initializer if t.name.endswith("_zero_point")]
        assert zps or v["float_layers"], v["id"]  # the tiny model's few layers can all be float in a variant
        assert all(t.data_type == onnx.TensorProto.INT8 for t in zps), v["id"]
        assert all(not numpy_helper.to_array(t).any() for t in zps), v["id"]
    kept = next(v for v in record["variants"] if v["id"] == record["kept"])
    if kept["passes"]:
        assert proc.returncode == 0 and (art / "onnx" / "model.int8.sym.onnx").exists()
    else:  # the best is kept aside, never under the name TensorRT reads
        assert proc.returncode != 0 and not (art / "onnx" / "model.int8.sym.onnx").exists()


def test_recover_methods_narrows_the_search_to_the_methods_named_after_the_configured_one(
    tiny: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from modelport.ort.recover import OnnxKnobs

    every = OnnxKnobs(make_context(tiny), False).methods
    assert len(every) > 2
    pick = [every[-1], "mmse"]  # "mmse" is RKNN's: one list serves every backend of a run
    narrowed = OnnxKnobs(make_context(tiny, overrides=[f"quantization.recover_methods={pick}".replace("'", '"')]), False)
    assert narrowed.methods == [every[0], every[-1]]
    assert OnnxKnobs(make_context(tiny, overrides=["quantization.recover_methods=[]"]), False).methods == [every[0]]
    assert "recover_methods" not in capsys.readouterr().err
    OnnxKnobs(make_context(tiny, overrides=['quantization.recover_methods=["mmse"]']), False)
    assert "none of [quantization] recover_methods ['mmse'] is one of its methods" in capsys.readouterr().err
