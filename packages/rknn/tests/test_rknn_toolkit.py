"""The real toolkit on the real MobileNetV2: convert, simulate, analyze, hybrid; checked by running the models."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from conftest import make_context
from modelport.common.context import StepContext

pytest.importorskip("modelport.rknn", reason="modelport-rknn is not installed in this env (nox -s tests runs it in the rknn env)")

from rknn_testing import copy_inputs, require_toolkit, upstream  # noqa: E402

from modelport.common.agreement import compare  # noqa: E402
from modelport.common.reference import load_reference  # noqa: E402
from modelport.common.schema import Agreement, BackendResult  # noqa: E402

# The toolkit calls deprecated onnx.mapping thousands of times and warns about pkg_resources: not ours to fix.
pytestmark = [
    pytest.mark.rknn,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture(scope="module")
def ctx(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> StepContext:
    """INT8 + FP16 converted and simulated once, in a private copy of the tf-onnx env's artifacts."""
    require_toolkit()
    from modelport.rknn import simulate

    art = copy_inputs(upstream(test_env), tmp_path_factory.mktemp("rknn-artifacts"))
    c = make_context({**test_env, "MODELPORT_ARTIFACTS": str(art)})
    simulate.run(c)
    return c


def result(ctx: StepContext, key: str) -> BackendResult:
    return BackendResult.model_validate(json.loads(ctx.store.path(f"results/{key}.json").read_text()))


def test_int8_simulation_meets_the_int8_floor(ctx: StepContext) -> None:
    r = result(ctx, "rknn-int8")
    a = r.agreement
    assert a is not None
    assert r.status == "ok" and a.images == 12
    assert a.top1 >= 0.9 and a.cosine_mean >= 0.98 and a.cosine_min >= 0.95, a
    # The .npy is what the agreement was computed from: recompute it independently.
    outputs = np.load(ctx.store.path("results/rknn-int8.npy"))
    ref = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    again = compare(outputs, ref, [p.name for p in ctx.eval_images])
    assert again.cosine_min == pytest.approx(a.cosine_min) and outputs.shape == (12, 1001)
    assert "chickadee" in next(t for t in r.topk if t.image == "bird.jpg").labels[0]


def test_fp16_simulation_meets_the_float_floor(ctx: StepContext) -> None:
    a = result(ctx, "rknn-fp16").agreement
    assert a is not None
    assert a.top1 == 1.0 and a.cosine_min >= 0.999, a


def test_result_schema_says_why_there_is_no_latency(ctx: StepContext) -> None:
    r = result(ctx, "rknn-int8")
    assert r.latency_ms is None and r.latency_note is not None and "simulator" in r.latency_note
    assert r.backend == "rknn" and r.input == {"layout": "NHWC", "dtype": "uint8"}
    assert r.preprocessing == ctx.config.input.signature
    assert r.model_sha256 == cast(dict[str, Any], ctx.store.read_manifest("source/model.tflite"))["sha256"]
    assert r.size_bytes == ctx.store.path("rknn/model.rknn").stat().st_size > 1_000_000
    assert r.tool_versions["rknn-toolkit2"] == "2.5.0"


def test_normalisation_comes_from_the_input_spec(ctx: StepContext) -> None:
    m = cast(dict[str, Any], ctx.store.read_manifest("rknn/model.rknn"))
    spec = ctx.config.input
    assert m["options"]["mean_values"] == [spec.mean_values] and m["options"]["std_values"] == [spec.std_values]
    assert m["options"]["target_platform"] == "rk3588" and m["extra"]["agreement"]["top1"] >= 0.9


def test_second_run_is_cached_and_does_not_start_the_toolkit(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelport.rknn import build, toolkit

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("toolkit started for an up-to-date model")

    monkeypatch.setattr(toolkit, "session", boom)
    t0 = time.monotonic()
    built = build.run(ctx, "int8")
    assert built.cached and time.monotonic() - t0 < 5


def test_accuracy_analysis_is_parsed_and_agrees_with_the_simulation(ctx: StepContext) -> None:
    from modelport.rknn import analysis, section

    data = analysis.run(ctx, ["face.jpg"])
    assert data["schema"] == "modelport.rknn-accuracy/1" and len(data["worst_layers"]) == ctx.config.rknn.worst_layers
    img = data["images"][0]
    measured = [lay for lay in img["layers"] if lay["metrics"]]
    assert len(measured) > 60 and all(0 < lay["metrics"]["simulator"]["single"]["cosine"] <= 1.0001 for lay in measured)
    # The analysis's golden is the float ONNX, the agreement's reference the TFLite: the same model, so the
    # output cosine the toolkit reports must match ours for that image.
    ours = next(p for p in cast(Agreement, result(ctx, "rknn-int8").agreement).per_image if p.image == "face.jpg").cosine
    assert img["output"]["simulator"]["entire"]["cosine"] == pytest.approx(ours, abs=2e-3)
    assert ctx.store.path("rknn/accuracy/error_analysis-face.txt").is_file()
    assert not list(ctx.store.root.glob("**/snapshot*")), "tensor dumps must be deleted unless keep_snapshots"
    md = section.markdown(ctx)
    assert "Worst layers" in md and data["worst_layers"][0]["name"] in md


def test_hybrid_keeps_chosen_layers_in_float16_and_reports_before_after(ctx: StepContext, test_env: dict[str, str]) -> None:
    from modelport.rknn import hybrid

    layers = ["BiasAdd_50;Conv2D_33;BiasAdd_50/bias1", "Relu6_34;BiasAdd_51;Conv2D_34;BiasAdd_51/bias1"]
    # A 1-image proposal keeps the test short (the pipeline's default uses 12 images, ~100 s).
    ctx = make_context({**test_env, "MODELPORT_ARTIFACTS": str(ctx.store.root)}, overrides=["rknn.hybrid_proposal_images=1"])
    r, extra = hybrid.run(ctx, layers, proposal=True)
    assert r.status == "ok" and r.key == "rknn-int8-hybrid"
    a = r.agreement
    assert a is not None
    assert a.top1 >= 0.9 and a.cosine_mean >= 0.98 and a.cosine_min >= 0.95
    assert set(layers) <= set(extra["float16_layers"]) and extra["before"]["cosine_min"] > 0.9
    assert extra["after"]["cosine_min"] == pytest.approx(a.cosine_min)
    cfg = ctx.store.path("rknn/model-hybrid.quantization.cfg").read_text()
    assert all(f"'{n}': float16" in cfg for n in layers)
    assert any("hybrid" in n and "cosine min" in n for n in r.notes)


def test_board_without_a_device_is_recorded_as_skipped(ctx: StepContext) -> None:
    from modelport.rknn import board

    r = board.run_adb(ctx, None)
    assert r.status == "skipped" and r.reason is not None and "--target-device" in r.reason and r.latency_ms is None
    assert result(ctx, "rknn-int8-board").status == "skipped"


@pytest.mark.board
def test_on_a_real_board(ctx: StepContext) -> None:
    device = os.environ.get("MODELPORT_RKNN_DEVICE")
    if not device:
        pytest.skip("no Rockchip board: set MODELPORT_RKNN_DEVICE=<adb serial> (or auto) with one connected")
    from modelport.rknn import board

    r = board.run_adb(ctx, device)
    assert r.status == "ok", r.reason
    assert r.latency_ms is not None and r.agreement is not None
    assert r.latency_ms.median > 0 and r.agreement.top1 >= 0.9 and "eval_perf" in r.settings


def test_a_build_in_a_folder_with_spaces_and_non_ascii(test_env: dict[str, str], tmp_path: Path) -> None:
    """Every path the toolkit gets (ONNX, dataset.txt and its entries, the export) may hold spaces and non-ASCII."""
    require_toolkit()
    from modelport.rknn import build

    art = copy_inputs(upstream(test_env), tmp_path / "art dir ä")
    c = make_context({**test_env, "MODELPORT_ARTIFACTS": str(art)})
    built = build.run(c, "int8")
    assert built.model.is_file() and np.load(built.eval_outputs).shape == (12, 1001)


def test_a_simulated_build_below_the_floor_is_kept_aside_and_not_committed(test_env: dict[str, str], tmp_path: Path) -> None:
    """The Converter base gates the simulator's outputs: an FP16 build held to a cosine floor of 1.0 is refused."""
    require_toolkit()
    from modelport.common.below_floor import below_floor_name
    from modelport.common.errors import AccuracyGateError
    from modelport.rknn import build

    art = copy_inputs(upstream(test_env), tmp_path / "art")
    c = make_context({**test_env, "MODELPORT_ARTIFACTS": str(art)}, overrides=["accuracy.fp_cosine_min=1.0"])
    with pytest.raises(AccuracyGateError, match="cosine"):
        build.run(c, "fp16")
    model = c.store.path("rknn/model-fp16.rknn")
    assert not model.exists() and not c.store.path("rknn/model-fp16.eval.npy").exists()
    kept = cast(dict[str, Any], c.store.read_manifest(below_floor_name(model)))
    assert kept["below_floor"] is True and below_floor_name(model).stat().st_size > 1_000_000
    assert 0.999 < kept["agreement"]["cosine_min"] < 1.0
