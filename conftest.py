"""Test fixtures: the real model and photos shipped in data/, and one converted pipeline per test run.

MODELPORT_TEST_DATA points the tests at another folder of the same layout
(models/mobilenet_v2_1.0_224.tflite, models/labels.txt, images/, images/calibration/).
MODELPORT_TEST_ARTIFACTS
(set by `nox -s tests`) is one artifacts folder for the whole run: the tf-onnx env
makes source/, the reference and the ONNX models there; the ncnn/rknn/tensorrt envs,
which cannot make them, reuse them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # modelport is imported inside the fixtures: this file is loaded before any test runs
    from modelport.common.context import StepContext

ROOT = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in {
        "ncnn": "needs the ncnn env (ncnn + pnnx)",
        "rknn": "needs the rknn env (rknn-toolkit2)",
        "tensorrt": "TensorRT env code (runs without a GPU unless also marked gpu)",
        "gpu": "needs a CUDA GPU with TensorRT; skipped with the reason otherwise",
        "board": "needs a connected Rockchip board; skipped with the reason otherwise",
        "browser": "opens the HTML report in headless Chromium; skipped with the reason where there is none",
        "slow": "needs the real model or its converted artifacts (minutes); `nox -s fast` runs the rest",
    }.items():
        config.addinivalue_line("markers", f"{marker}: {text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test on the pipeline's real artifacts must say so: `-m "not slow"` would otherwise wait minutes for it."""
    unmarked = [
        item.nodeid for item in items if "pipeline" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("slow")
    ]
    if unmarked:
        raise pytest.UsageError("tests using the pipeline fixture without @pytest.mark.slow: " + ", ".join(unmarked))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say explicitly which model, images and artifacts they use; the caller's env must not leak in."""
    for var in (
        "MODELPORT_MODEL",
        "MODELPORT_LABELS",
        "MODELPORT_IMAGES",
        "MODELPORT_CALIBRATION",
        "MODELPORT_CONFIG",
        "MODELPORT_ARTIFACTS",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("MODELPORT_TEST_DATA") or ROOT / "data").resolve()
    if not (path / "models" / "mobilenet_v2_1.0_224.tflite").is_file():
        pytest.fail(f"test data not found at {path} (the repo ships it in data/; MODELPORT_TEST_DATA overrides)")
    return path


@pytest.fixture(scope="session")
def test_env(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Env vars that point modelport at the test data and a per-run artifacts folder."""
    artifacts = os.environ.get("MODELPORT_TEST_ARTIFACTS") or str(tmp_path_factory.mktemp("artifacts"))
    return {
        "MODELPORT_ARTIFACTS": artifacts,
        "MODELPORT_CONFIG": str(ROOT / "modelport.toml"),
        "MODELPORT_MODEL": str(data_dir / "models" / "mobilenet_v2_1.0_224.tflite"),
        "MODELPORT_LABELS": str(data_dir / "models" / "labels.txt"),
        "MODELPORT_IMAGES": str(data_dir / "images"),
        "MODELPORT_CALIBRATION": str(data_dir / "images" / "calibration"),
    }


def make_context(env: dict[str, str], **kwargs: Any) -> StepContext:
    from modelport.common.context import StepContext

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ctx = StepContext(config_path=env["MODELPORT_CONFIG"], artifacts=env["MODELPORT_ARTIFACTS"], **kwargs)
        ctx.config  # noqa: B018 - read the config while the env vars are set
        return ctx
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="session")
def pipeline(test_env: dict[str, str]) -> StepContext:
    """A StepContext whose artifacts hold source/, the reference, onnx/model.onnx and both INT8 QDQ models.

    Made here when the tf-onnx toolchain is installed; otherwise they must already be in
    MODELPORT_TEST_ARTIFACTS (nox runs tests(tf-onnx) first). Never silently skipped.
    """
    from modelport.convert.registry import TARGETS, target_module

    made_here = "onnx" in TARGETS and target_module("onnx").unavailable_reason() is None  # tf-onnx: the tflite package
    if made_here:
        from click.testing import CliRunner

        from modelport.common.cli import _register, cli

        _register()
        result = CliRunner().invoke(cli, ["fetch"], obj=None, env=test_env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    ctx = make_context(test_env)  # after fetch: the config is completed by the fetched model's contract
    if made_here:
        for name in ("reference", "onnx", "onnx-int8", "onnx-int8-tensorrt"):
            target_module(name).run(ctx, force=False)
    for rel in (
        "source/model.tflite",
        "source/reference.npy",
        "onnx/model.onnx",
        "onnx/model.int8.onnx",
        "onnx/model.int8.sym.onnx",  # onnx-int8-tensorrt (modelport.tensorrt.qdq)
    ):
        if not ctx.store.path(rel).is_file():
            pytest.fail(
                f"{ctx.store.path(rel)} missing: run the tf-onnx tests first (nox -s tests) or set MODELPORT_TEST_ARTIFACTS"
            )
    return ctx


def shared_detector(
    folder: str, make: Callable[[Path], dict[str, str]], tmp_path_factory: pytest.TempPathFactory, source: str = "onnx-source"
) -> dict[str, str]:
    """Env vars of a detector (``make`` writes its config and files into a folder) fetched, with its reference
    and onnx/model.onnx: made here when this env runs the source (``source``, the runtime key: tf-onnx), else
    reused from MODELPORT_TEST_ARTIFACTS/<folder>, where tf-onnx's tests made them. A test converts into its own
    copy (detector_copy). Never silently skipped."""
    from modelport.runtime.registry import RUNTIMES, runtime_class

    shared = os.environ.get("MODELPORT_TEST_ARTIFACTS")
    root = Path(shared) / folder if shared else tmp_path_factory.mktemp(folder)
    root.mkdir(parents=True, exist_ok=True)
    env = make(root)  # the same files each time: a made model and its photos are seeded
    if source in RUNTIMES and runtime_class(source).unavailable_reason() is None:
        for args in (["fetch"], ["convert", "reference", "onnx"]):
            proc = cli(env, *args)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    art = Path(env["MODELPORT_ARTIFACTS"])
    for rel in ("source/contract.json", "onnx/model.onnx"):
        if not (art / rel).is_file():
            pytest.fail(f"{art / rel} missing: run the tf-onnx tests first (nox -s tests) or set MODELPORT_TEST_ARTIFACTS")
    return env


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tiny detector (tiny_models.tiny_detector_pipeline), shared_detector's way."""
    from tiny_models import tiny_detector_pipeline

    return shared_detector(TINY_DETECTOR, tiny_detector_pipeline, tmp_path_factory)


@pytest.fixture(scope="session")
def rfb320(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The shipped RFB-320 face detector (ONNX, scores + boxes, SSD priors) with the config `modelport init`
    writes for it, on the COCO photos of data/detection, shared_detector's way."""
    model = data_dir / "detection" / "ulfd_version-RFB-320_without_postprocessing.onnx"

    def make(root: Path) -> dict[str, str]:
        config = root / "rfb320.toml"
        photos = ["-o", f"images.eval={data_dir / 'detection' / 'coco' / 'images'}", "-o", "images.headline=000000397133.jpg"]
        calibration = ["-o", f"images.calibration={data_dir / 'images' / 'calibration'}"]
        if "init" in {e.name for e in entry_points(group="modelport.commands")}:  # else (rknn) the one tf-onnx wrote
            proc = cli({}, "init", str(model), "--out", str(config), "--force", *photos, *calibration)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return {"MODELPORT_CONFIG": str(config), "MODELPORT_ARTIFACTS": str(root / "art")}

    return shared_detector(RFB320, make, tmp_path_factory)


RFB320_CAFFE_CONFIG = """[model]
name = "ulfd_RFB-320 (Caffe)"
path = "{data}/detection/ulfd_RFB-320.prototxt"
task = "detect"

[input]
color = "RGB"
mean = [127, 127, 127]
std = [128, 128, 128]
layout = "NCHW"

[images]
eval = "{data}/detection/coco/images"
calibration = "{data}/images/calibration"
headline = "000000397133.jpg"

[detect]
decoder = "ssd"
strides = [8, 16, 32, 64]
min_sizes = [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]]
background = true
fit = "stretch"
class_agnostic = true
"""


@pytest.fixture(scope="session")
def rfb320_caffe(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The shipped RFB-320's Caffe release (RFB320_CAFFE_CONFIG): its reference run in OpenCV and caffe2onnx's
    onnx/model.onnx, shared_detector's way (made where the `caffe` runtime runs: tf-onnx)."""

    def make(root: Path) -> dict[str, str]:
        config = root / "rfb320_caffe.toml"
        config.write_text(RFB320_CAFFE_CONFIG.format(data=data_dir))
        return {"MODELPORT_CONFIG": str(config), "MODELPORT_ARTIFACTS": str(root / "art")}

    return shared_detector(RFB320_CAFFE, make, tmp_path_factory, source="caffe")


@pytest.fixture(scope="session")
def yolox(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """YOLOX-nano through yolox_nano.toml (the main job's detector, the 13 COCO photos), shared_detector's way."""

    def make(root: Path) -> dict[str, str]:
        return {"MODELPORT_CONFIG": str(ROOT / "yolox_nano.toml"), "MODELPORT_ARTIFACTS": str(root / "art")}

    return shared_detector(YOLOX, make, tmp_path_factory)


def detector_copy(env: dict[str, str], dst: Path) -> dict[str, str]:
    """``env`` with a private copy of its artifacts (no results): a test converts and benches there."""
    shutil.copytree(env["MODELPORT_ARTIFACTS"], dst, ignore=shutil.ignore_patterns("results", "report", ".tmp"))
    return {**env, "MODELPORT_ARTIFACTS": str(dst)}


# their folders in MODELPORT_TEST_ARTIFACTS, beside the classifier's
TINY_DETECTOR, RFB320, RFB320_CAFFE, YOLOX = "tiny_det", "rfb320", "rfb320_caffe", "yolox"
OTHER_THAN_TF_ONNX = ("results", "report", "ncnn", "rknn", "tensorrt", ".tmp", TINY_DETECTOR, RFB320, RFB320_CAFFE, YOLOX)


def private_artifacts(pipeline: StepContext, dst: Path, *also_ignore: str) -> Path:
    """A test's own copy of the pipeline's tf-onnx artifacts (source, reference, ONNX models, their manifests):
    no results, reports or other envs' models, so the test can break or fill it freely."""
    shutil.copytree(pipeline.store.root, dst, ignore=shutil.ignore_patterns(*OTHER_THAN_TF_ONNX, *also_ignore))
    return dst


# What a test of results, reports, merges and failed rows asks of `bench` on a real model: latency and agreement,
# not the measurement depth it does not check (a throughput sweep of seconds per concurrency level, a fresh-process
# cold start, the whole-frame pass and the layer profile of every row). test_measure.py and test_layer_times.py
# check those on a tiny model; the main job measures them on every real row.
LIGHT_BENCH = (
    "-o",
    "bench.throughput=false",
    "-o",
    "bench.cold_start=false",
    "-o",
    "bench.frame_runs=0",
    "-o",
    "bench.layer_profile=false",
)


# The real CLI in a subprocess, as a user runs it (exit code, stderr, nothing in-process leaks).
CLI = [sys.executable, "-c", "import sys; from modelport.common.cli import main; sys.exit(main())"]


def run(env: dict[str, str], *args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, cwd=cwd)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process, as `run` gives it: a fraction of a second per call instead of a fresh interpreter."""
    from modelport.common.cli import main

    old, handler = {k: os.environ.get(k) for k in env}, signal.getsignal(signal.SIGTERM)
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        signal.signal(signal.SIGTERM, handler)
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return subprocess.CompletedProcess(["modelport", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, str]:
    """Env vars for a tiny ONNX classifier (3x8x8 NCHW -> 5 classes), its labels, 4 generated PNGs, its config
    and an empty artifacts folder (tiny_models.tiny_pipeline): the fast tier's stand-in for MobileNetV2."""
    from tiny_models import tiny_pipeline

    return tiny_pipeline(tmp_path)


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one `error:` line a failed command printed (asserts there is exactly one)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def failed_row(artifacts: Path, key: str) -> dict[str, Any]:
    """After a failed bench: ``key`` is a failed row with its reason, no raw outputs, and nothing else was written."""
    import json

    results = artifacts / "results"
    assert sorted(p.name for p in results.iterdir()) == [f"{key}.json"], sorted(results.iterdir())
    row: dict[str, Any] = json.loads((results / f"{key}.json").read_text())
    assert row["status"] == "failed" and row["reason"] and row["agreement"] is None and row["latency_ms"] is None, row
    return row
