"""ONNX -> ncnn FP32 and INT8 on the real model: run what was produced, compare with the reference;
the CLI: caching, and bad calibration sets that must fail cleanly, leaving no model."""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Collection
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from conftest import error_line, make_context, run
from modelport.common.agreement import compare
from modelport.common.artifacts import ArtifactStore
from modelport.common.context import StepContext
from modelport.common.reference import REFERENCE, load_reference
from modelport.common.schema import Agreement
from modelport.convert.registry import target_module
from modelport.ncnn import official as ncnn_official
from modelport.ncnn.format import TAG_INT8, Layer, NcnnFormatError, load, read_bin, read_param, write_bin
from modelport.ncnn.runtime import NcnnInt8Runtime, NcnnRuntime
from modelport.ncnn.table import Table, kl_threshold
from modelport.runtime.base import Runtime
from modelport.runtime.run import prepared_images, run_outputs

pytestmark = pytest.mark.ncnn


@pytest.fixture(scope="session")
def ncnn_models(pipeline: StepContext) -> StepContext:
    """The pipeline's artifacts plus ncnn/model.* and ncnn/model-int8.* (cached by manifest)."""
    for name in ("ncnn", "ncnn-int8"):
        target_module(name).run(pipeline, force=False)
    return pipeline


def agreement(ctx: StepContext, runtime: Runtime) -> Agreement:
    ref = load_reference(ctx.store, ctx.eval_images, ctx.config.input.signature)
    with runtime:
        out = run_outputs(runtime, prepared_images(ctx), ctx.config.input)
    return compare(out, ref, [p.name for p in ctx.eval_images])


@pytest.mark.slow
def test_fp32_matches_the_reference_on_every_image(ncnn_models: StepContext) -> None:
    a = agreement(ncnn_models, NcnnRuntime.from_store(ncnn_models.store, ncnn_models.config))
    assert a.images == 12
    assert a.top1 == 1.0, [p.image for p in a.per_image if not p.top1_match]
    assert a.cosine_min >= 0.999


@pytest.mark.slow
def test_fp32_blob_names_come_from_the_model(ncnn_models: StepContext) -> None:
    m = json.loads(ncnn_models.store.path("ncnn/model.param.manifest.json").read_text())
    model = read_param(ncnn_models.store.path("ncnn/model.param"))
    assert [m["extra"]["input_blob"]] == model.inputs and [m["extra"]["output_blob"]] == model.outputs
    assert m["extra"]["agreement"]["top1"] == 1.0 and m["options"]["fp16_weights"] is False


@pytest.mark.slow
def test_int8_meets_the_int8_floor_and_size(ncnn_models: StepContext) -> None:
    store = ncnn_models.store
    a = agreement(ncnn_models, NcnnInt8Runtime.from_store(store, ncnn_models.config))
    assert a.top1 >= 0.9 and a.cosine_mean >= 0.98 and a.cosine_min >= 0.95, a.model_dump(exclude={"per_image"})
    assert store.path("ncnn/model-int8.bin").stat().st_size <= 0.35 * store.path("ncnn/model.bin").stat().st_size


@pytest.fixture(scope="module")
def all_int8(ncnn_models: StepContext, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> StepContext:
    """The INT8 model with depthwise convs in int8 too ([ncnn] int8_depthwise = true), verified on the floor."""
    art = copy_inputs(ncnn_models, tmp_path_factory.mktemp("all-int8"))
    ctx = make_context(
        {**test_env, "MODELPORT_ARTIFACTS": str(art)},
        overrides=["ncnn.int8_depthwise=true", "ncnn.tools=builtin", "quantization.recover_rounds=1"],  # its floor, not its speed
    )
    target_module("ncnn-int8").run(ctx, force=False)
    return ctx


def check_native_int8(store: ArtifactStore, int8_types: Collection[str]) -> list[Layer]:
    """Quantized convs store int8 weights (int8 tag) then bias, weight scales, input scale
    (+ output scale when requantizing), as ncnn2int8 writes them; the others stay FP32."""
    model = load(store.path("ncnn/model-int8.param"), store.path("ncnn/model-int8.bin"))
    convs = [la for la in model.layers if la.type in ("Convolution", "ConvolutionDepthWise")]
    assert len(convs) == 53
    for la in convs:
        if la.type not in int8_types:
            assert la.pint(8) == 0 and la.weights[0].data.dtype == np.float32 and len(la.weights) == 2
            continue
        assert la.pint(8) in ((1, 101) if la.type == "ConvolutionDepthWise" else (2, 102))
        assert la.weights[0].data.dtype == np.int8 and la.weights[0].typed
        rows = la.pint(7) if la.type == "ConvolutionDepthWise" else la.pint(0)
        assert la.weights[2].data.size == rows and la.weights[3].data.size == 1
        assert len(la.weights) == (5 if la.pint(8) > 100 else 4)
    raw = store.path("ncnn/model-int8.bin").read_bytes()
    assert struct.pack("<I", TAG_INT8) in raw[:64]
    return [la for la in convs if la.pint(8) > 100]


@pytest.mark.slow
def test_int8_model_is_a_native_ncnn_int8_model(ncnn_models: StepContext) -> None:
    requantizing = check_native_int8(ncnn_models.store, ("Convolution",))
    assert len(requantizing) >= 1  # a conv feeding only convs hands them int8


@pytest.mark.slow
def test_all_int8_variant_meets_the_floor_and_chains_int8(all_int8: StepContext) -> None:
    requantizing = check_native_int8(all_int8.store, ("Convolution", "ConvolutionDepthWise"))
    assert len(requantizing) >= 30  # conv -> depthwise -> conv chains stay int8 end to end
    a = agreement(all_int8, NcnnInt8Runtime.from_store(all_int8.store, all_int8.config))
    assert a.top1 >= 0.9 and a.cosine_mean >= 0.98 and a.cosine_min >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["default", "all_int8"])
def test_ncnn_runs_int8_kernels(ncnn_models: StepContext, all_int8: StepContext, variant: str) -> None:
    """Blobs after requantizing convs are held as int8 by the runtime (1 byte per element)."""
    ctx = ncnn_models if variant == "default" else all_int8
    rt = NcnnInt8Runtime.from_store(ctx.store, ctx.config)
    with rt:
        rt.infer(np.zeros((1, 224, 224, 3), np.uint8) + 128)
        evidence = rt.settings()
    assert evidence["int8_layers"] == (36 if variant == "default" else 53)
    assert evidence["requantized_blobs_checked"] == cast(int, evidence["requantized_layers"]) > 0
    assert evidence["int8_blobs_at_runtime"] == evidence["requantized_layers"]


@pytest.mark.slow
def test_table_is_in_ncnn2table_format(ncnn_models: StepContext) -> None:
    store = ncnn_models.store
    text = store.path("ncnn/model.table").read_text()
    model = read_param(store.path("ncnn/model.param"))
    convs = {la.name: la for la in model.layers if la.type in ("Convolution", "ConvolutionDepthWise", "InnerProduct")}
    lines = [line.split() for line in text.splitlines()]
    weights = {t[0].lstrip("#")[: -len("_param_0")]: t[1:] for t in lines if t[0].endswith("_param_0")}
    bottoms = {t[0].lstrip("#"): t[1:] for t in lines if not t[0].endswith("_param_0")}
    commented = {t[0].lstrip("#").removesuffix("_param_0") for t in lines if t[0].startswith("#")}
    assert commented == {la.name for la in model.layers if la.type == "ConvolutionDepthWise"}  # kept FP32
    assert set(weights) == set(bottoms) == set(convs)
    for name, la in convs.items():
        assert len(weights[name]) == (la.pint(7) if la.type == "ConvolutionDepthWise" else la.pint(0))
        assert len(bottoms[name]) == 1
    table = Table.read(store.path("ncnn/model.table"))
    assert table.disabled == commented and len(table.enabled()) == 36
    assert all(np.all(np.isfinite(s)) and np.all(s > 0) for s in table.weights.values())
    assert table.bottoms[model.layers[1].name] == pytest.approx(127.0, rel=1e-3)  # first conv sees [-1, 1]


@pytest.mark.slow
def test_format_round_trip_is_byte_exact(ncnn_models: StepContext, tmp_path: Path) -> None:
    store = ncnn_models.store
    for stem in ("model", "model-int8"):
        model = load(store.path(f"ncnn/{stem}.param"), store.path(f"ncnn/{stem}.bin"))
        write_bin(model, tmp_path / "x.bin")
        assert (tmp_path / "x.bin").read_bytes() == store.path(f"ncnn/{stem}.bin").read_bytes()


@pytest.mark.slow
def test_truncated_bin_is_refused_naming_it(ncnn_models: StepContext, tmp_path: Path) -> None:
    store = ncnn_models.store
    bad = tmp_path / "model.bin"
    bad.write_bytes(store.path("ncnn/model.bin").read_bytes()[:-1000])
    with pytest.raises(NcnnFormatError, match="truncated") as e:
        read_bin(read_param(store.path("ncnn/model.param")), bad)
    assert str(bad) in str(e.value)


def test_kl_clips_outliers_and_keeps_a_dense_range() -> None:
    rng = np.random.default_rng(0)
    x = np.abs(np.concatenate([rng.normal(0, 1, 200_000), [40.0]]))
    hist = np.histogram(x, bins=2048, range=(0, x.max()))[0].astype(float)
    assert kl_threshold(hist, x.max()) < 8  # one outlier at 40 must not stretch the range
    u = rng.uniform(0, 1, 200_000)
    hist = np.histogram(u, bins=2048, range=(0, u.max()))[0].astype(float)
    assert kl_threshold(hist, u.max()) > 0.9  # a flat distribution keeps (almost) all of it


@pytest.mark.slow
@pytest.mark.parametrize("method", ["kl", "aciq"])
def test_other_calibration_methods_produce_loadable_models(
    ncnn_models: StepContext, test_env: dict[str, str], tmp_path: Path, method: str
) -> None:
    """KL and ACIQ run end to end (verification off: on MobileNetV2 they clip ReLU6 outputs and miss the floor)."""
    ctx = make_context(
        {**test_env, "MODELPORT_ARTIFACTS": str(copy_inputs(ncnn_models, tmp_path))},
        overrides=[f"ncnn.calibration_method={method}", "ncnn.tools=builtin", "convert.verify=false"],
    )
    target_module("ncnn-int8").run(ctx, force=False)
    a = agreement(ctx, NcnnInt8Runtime.from_store(ctx.store, ctx.config))
    print(f"{method}: top-1 {a.top1:.2f}, cosine min {a.cosine_min:.4f} mean {a.cosine_mean:.4f}")
    assert a.top1 >= 0.75 and a.cosine_mean > 0.9
    default = Table.read(ncnn_models.store.path("ncnn/model.table"))
    table = Table.read(ctx.store.path("ncnn/model.table"))
    assert all(table.bottoms[n] >= default.bottoms[n] * (1 - 1e-6) for n in default.bottoms)  # never wider than min-max


@pytest.mark.slow
@pytest.mark.skipif(
    bool(ncnn_official.missing_tools()),
    reason=f"official ncnn tools not on PATH ({', '.join(ncnn_official.missing_tools())}); built in envs/ncnn/Dockerfile",
)
def test_official_and_builtin_tools_agree(ncnn_models: StepContext, test_env: dict[str, str], tmp_path: Path) -> None:
    results = {}
    for tools in ("official", "builtin"):
        art = copy_inputs(ncnn_models, tmp_path / tools)
        ctx = make_context(
            {**test_env, "MODELPORT_ARTIFACTS": str(art)},
            overrides=[f"ncnn.tools={tools}", "ncnn.calibration_method=kl", "convert.verify=false"],
        )
        target_module("ncnn-int8").run(ctx, force=False)
        results[tools] = (
            ctx,
            Table.read(ctx.store.path("ncnn/model.table")),
            agreement(ctx, NcnnInt8Runtime.from_store(ctx.store, ctx.config)),
        )
    (_, official, a_off), (_, builtin, a_own) = results["official"], results["builtin"]
    print(f"official kl: {a_off.model_dump(exclude={'per_image'})}\nbuiltin kl: {a_own.model_dump(exclude={'per_image'})}")
    assert set(official.weights) == set(builtin.weights)
    for name, scales in builtin.weights.items():  # both: 127 / |w|max per output channel
        np.testing.assert_allclose(official.weights[name], scales, rtol=1e-3)
    ratio = np.array([official.bottoms[n] / builtin.bottoms[n] for n in builtin.bottoms])
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio  # same statistics, two KL implementations
    assert a_off.top1 >= 0.75 and a_own.top1 >= 0.75


def test_tools_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelport.ncnn.int8 import choose_tools

    monkeypatch.setattr(ncnn_official, "missing_tools", lambda: ["ncnn2table"])
    assert choose_tools("auto", "kl")[0] == "builtin"
    monkeypatch.setattr(ncnn_official, "missing_tools", list)
    assert choose_tools("auto", "kl") == ("official", "official tools on PATH")
    assert choose_tools("auto", "minmax")[0] == "builtin"  # ncnn2table has no min-max
    assert choose_tools("builtin", "kl")[0] == "builtin" and choose_tools("official", "aciq")[0] == "official"


def copy_inputs(ctx: StepContext, root: Path) -> Path:
    """A fresh artifacts folder holding only what `convert ncnn-int8` reads (reference + FP32 model)."""
    for rel in (REFERENCE, "ncnn/model.param", "ncnn/model.bin"):
        for suffix in ("", ".manifest.json"):
            dst = root / (rel + suffix)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ctx.store.path(rel + suffix), dst)
    return root


# -- the CLI


@pytest.fixture
def int8_inputs(ncnn_models: StepContext, test_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Env for a fresh artifacts folder that holds only the inputs of `convert ncnn-int8`."""
    return {**test_env, "MODELPORT_ARTIFACTS": str(copy_inputs(ncnn_models, tmp_path / "art"))}


def nothing_written(env: dict[str, str]) -> None:
    """Only the copied inputs are there (no int8 model, no table, no partial or temp file), and the
    record of the failure that `bench ncnn-int8` reports as its row."""
    root = env["MODELPORT_ARTIFACTS"]
    left = sorted(os.listdir(os.path.join(root, "ncnn")))
    assert [n for n in left if not n.endswith(".failed.json")] == [
        "model.bin",
        "model.bin.manifest.json",
        "model.param",
        "model.param.manifest.json",
    ], left
    assert [n for n in left if n.endswith(".failed.json")] == ["model-int8.bin.failed.json", "model-int8.param.failed.json"]
    tmp = os.path.join(root, ".tmp")
    assert not os.path.isdir(tmp) or not os.listdir(tmp)


@pytest.mark.slow
def test_second_convert_is_a_manifest_hit(ncnn_models: StepContext, test_env: dict[str, str]) -> None:
    proc = run(test_env, "convert", "ncnn", "ncnn-int8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("up to date") == 2, proc.stderr
    assert "verified" not in proc.stderr


@pytest.mark.slow
def test_calibration_list_with_a_missing_file(int8_inputs: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    listfile = tmp_path / "calib.txt"
    (tmp_path / "bird.jpg").write_bytes((data_dir / "images" / "bird.jpg").read_bytes())
    listfile.write_text("# calibration\nbird.jpg\nnot_there.jpg\n")
    proc = run(int8_inputs, "--calibration-dataset", str(listfile), "convert", "ncnn-int8")
    assert proc.returncode == 2
    line = error_line(proc)
    assert str(listfile) in line and "not_there.jpg" in line and "does not exist" in line
    nothing_written(int8_inputs)


@pytest.mark.slow
def test_empty_calibration_directory(int8_inputs: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run(int8_inputs, "--calibration-dataset", str(empty), "convert", "ncnn-int8")
    assert proc.returncode == 2
    assert str(empty) in error_line(proc) and "no images" in error_line(proc)
    nothing_written(int8_inputs)


@pytest.mark.slow
def test_non_image_in_the_calibration_set(int8_inputs: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    for name in ("bird.jpg", "cat.jpg"):
        (folder / name).write_bytes((data_dir / "images" / name).read_bytes())
    fake = folder / "zz_notes.jpg"
    fake.write_text("these are my notes, not a photo\n" * 20)
    proc = run(int8_inputs, "--calibration-dataset", str(folder), "convert", "ncnn-int8")
    assert proc.returncode == 2
    assert str(fake) in error_line(proc) and "not a readable image" in error_line(proc)
    nothing_written(int8_inputs)


@pytest.mark.slow
def test_official_tools_requested_but_missing(int8_inputs: dict[str, str]) -> None:
    from modelport.ncnn import official as ncnn_official

    if not ncnn_official.missing_tools():
        pytest.skip("official ncnn tools are on PATH here")
    proc = run(int8_inputs, "-o", "ncnn.tools=official", "convert", "ncnn-int8")
    assert proc.returncode == 2 and "not on PATH" in error_line(proc)
    nothing_written(int8_inputs)


@pytest.mark.slow
def test_recovery_candidates_are_the_layers_the_table_quantizes(ncnn_models: StepContext, all_int8: StepContext) -> None:
    """What the recovery search may put back in float: ONNX layers whose ncnn layer the table enables. The
    depthwise convs stay float by default ('#' lines), and the Softmax has no int8 kernel at all."""
    import onnx

    from modelport.common.recovery import Variant
    from modelport.ncnn.int8 import OUTPUTS
    from modelport.ncnn.recover import NcnnKnobs

    source = ncnn_models.store.path("onnx/model.onnx")
    model = onnx.load(str(source))
    for rel in ("onnx/model.onnx", "onnx/model.onnx.manifest.json"):  # the ONNX names of the all-int8 model's layers
        all_int8.store.path(rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ncnn_models.store.path(rel), all_int8.store.path(rel))
    depthwise = {n.name for n in model.graph.node if any(a.name == "group" and a.i > 1 for a in n.attribute)}
    convs = {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}

    def quantized(ctx: StepContext) -> set[str]:
        return NcnnKnobs(ctx, False).quantized_layers(Variant("default", "minmax", [], dict(OUTPUTS)))

    default, every = quantized(ncnn_models), quantized(all_int8)
    assert default == convs - depthwise and every == convs
    assert "MobilenetV2/Predictions/Reshape_1" not in every
