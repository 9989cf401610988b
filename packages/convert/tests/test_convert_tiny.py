"""The converter and bad-input contracts on a tiny ONNX classifier made here (tiny_models.py), through the real
onnxruntime and the real CLI: seconds, not minutes. What only MobileNetV2 shows (agreement floors across
toolchains, tflite2onnx/tf2onnx) stays in the slow tests (test_onnx.py, test_interrupt.py, test_failed_rows.py)."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import pytest

from conftest import CLI, cli, error_line, failed_row, make_context, run
from modelport.common.artifacts import Job, sha256_file
from modelport.common.below_floor import below_floor_name
from modelport.common.context import StepContext
from modelport.common.errors import AccuracyGateError, ToolchainMissing
from modelport.common.images import load_image, resolve_images
from modelport.common.preprocess import InputSpec, prepare, to_tensor
from modelport.convert.base import MADE, Converter, Made
from modelport.ort.runtime import OnnxFp32Runtime
from modelport.runtime.base import ONNX_MODEL
from tiny_models import tiny_onnx

INT8 = "onnx/model.int8.onnx"


def ok(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(env, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def files(art: Path) -> dict[str, int]:
    """Every file under ``art`` (but the lock) with its mtime: what a step wrote, and whether it rewrote it."""
    return {p.relative_to(art).as_posix(): p.stat().st_mtime_ns for p in art.rglob("*") if p.is_file() and p.name != ".lock"}


def half_written(art: Path) -> list[str]:
    return [p for p in files(art) if ".partial" in p or p.startswith(".tmp/")]


@pytest.fixture
def converted(tiny: dict[str, str]) -> tuple[dict[str, str], Path]:
    """The tiny source fetched, its reference and static ONNX made."""
    ok(tiny, "fetch")
    ok(tiny, "convert", "reference", "onnx")
    return tiny, Path(tiny["MODELPORT_ARTIFACTS"])


def ort_outputs(model: Path, env: dict[str, str]) -> np.ndarray:
    """An NCHW 8x8 ONNX model run here, in onnxruntime, on every eval image."""
    import onnxruntime as ort

    spec = InputSpec.model_validate({"size": [8, 8]})
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [
            session.run(None, {"image": to_tensor(prepare(load_image(p), spec), spec, "NCHW", "float32")})[0]
            for p in resolve_images(Path(env["MODELPORT_IMAGES"]))
        ]
    )


def int8_cosines(art: Path, env: dict[str, str]) -> np.ndarray:
    """The INT8 model against the reference on every eval image."""
    out = ort_outputs(art / INT8, env)
    ref = np.load(art / "source" / "reference.npy")
    return cast(np.ndarray, (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1))


def test_onnx_int8_is_verified_recorded_and_then_up_to_date(converted: tuple[dict[str, str], Path]) -> None:
    env, art = converted
    proc = ok(env, "convert", "onnx-int8")
    assert "verified ONNX INT8 on 4 images" in proc.stderr
    model = onnx.load(str(art / INT8))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}

    m = json.loads((art / f"{INT8}.manifest.json").read_text())
    assert m["sha256"] == sha256_file(art / INT8) and m["size_bytes"] == (art / INT8).stat().st_size
    assert m["inputs"]["onnx"] == {"path": "onnx/model.onnx", "sha256": sha256_file(art / "onnx" / "model.onnx")}
    assert m["inputs"]["reference"]["sha256"] == sha256_file(art / "source" / "reference.npy")
    assert [link["path"] for link in m["lineage"]] == ["onnx/model.onnx", "source/model.onnx"]
    # The recorded agreement is the model's own against the reference: what verification measured.
    agreement = m["extra"]["agreement"]
    assert agreement["images"] == 4 and agreement["cosine_min"] == pytest.approx(int8_cosines(art, env).min(), abs=1e-6)

    before = files(art)
    again = ok(env, "convert", "onnx-int8")
    assert "up to date" in again.stderr and "verified" not in again.stderr
    assert files(art) == before  # nothing rewritten, not even the manifest
    forced = ok(env, "--force", "convert", "onnx-int8")
    assert "verified ONNX INT8" in forced.stderr and files(art)[INT8] != before[INT8]


def test_a_calibration_set_below_the_minimum_is_warned_about_and_counted_in_the_record(
    converted: tuple[dict[str, str], Path],
) -> None:
    env, art = converted
    proc = ok(env, "convert", "onnx-int8")
    warned = [ln for ln in proc.stderr.splitlines() if "calibration_min" in ln]
    assert len(warned) == 1 and "4 calibration images, below the minimum of 20" in warned[0]
    record = json.loads((art / "recover" / "onnx-int8.json").read_text())
    assert record["calibration"] == {"images": 4, "minimum": 20, "warning": warned[0].split("warning: ", 1)[1]}
    ok(env, "bench", "onnx-int8")
    ok(env, "report")
    assert "Calibration set: 4 images. **Warning: 4 calibration images" in (art / "report" / "sections" / "int8.md").read_text()

    enough = ok(env, "--force", "-o", "images.calibration_min=4", "convert", "onnx-int8")
    assert "calibration_min" not in enough.stderr
    assert json.loads((art / "recover" / "onnx-int8.json").read_text())["calibration"]["warning"] is None


def test_minmax_calibrated_in_slices_has_the_ranges_of_the_whole_set(
    converted: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    """More images than onnxruntime holds at once (16), the brightest first: the slices fold into the ranges
    that calibrating every image in one go gives."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from PIL import Image

    from modelport.common.calibration import CalibrationSet

    env, art = converted
    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(21):
        Image.fromarray(rng.integers(0, 256 - 10 * i, (20, 24, 3), dtype=np.uint8)).save(folder / f"c{i:02d}.png")
    env = env | {"MODELPORT_CALIBRATION": str(folder)}
    ok(env, "-o", "quantization.calibrate_method=minmax", "-o", "quantization.recover=false", "convert", "onnx-int8")

    class AllAtOnce:
        def __init__(self) -> None:
            spec = InputSpec.model_validate({"size": [8, 8]})
            self.tensors = CalibrationSet(resolve_images(folder), spec).tensors("NCHW", "float32")

        def get_next(self) -> dict[str, np.ndarray] | None:
            t = next(self.tensors, None)
            return None if t is None else {"image": t}

    quant_pre_process(str(art / "onnx" / "model.onnx"), str(tmp_path / "prepped.onnx"))
    quantize_static(
        str(tmp_path / "prepped.onnx"),
        str(tmp_path / "whole.onnx"),
        AllAtOnce(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )

    def scales(path: Path) -> dict[str, np.ndarray]:
        model = onnx.load(str(path))
        return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")}

    made, whole = scales(art / INT8), scales(tmp_path / "whole.onnx")
    assert made.keys() == whole.keys() and len(made) > 3
    for name in made:
        np.testing.assert_allclose(made[name], whole[name], rtol=1e-6, err_msg=name)


def test_calibration_chatter_goes_to_the_steps_log(converted: tuple[dict[str, str], Path]) -> None:
    """onnxruntime prints its histogram calibration (percentile, the default) with print(): a fresh process's fds."""
    env, art = converted
    proc = run(env, "convert", "onnx-int8")
    assert proc.returncode == 0, proc.stderr
    assert "histogram" not in proc.stdout + proc.stderr
    assert any("Number of histogram bins" in p.read_text() for p in (art / "onnx" / "logs").glob("*.log"))


def test_a_conversion_below_its_floors_writes_no_trusted_model(converted: tuple[dict[str, str], Path]) -> None:
    env, art = converted
    strict = ("-o", "accuracy.int8_cosine_min=0.999999", "-o", "quantization.recover=false")
    proc = cli(env, *strict, "convert", "onnx-int8")
    assert proc.returncode != 0 and "below the [accuracy] floors" in error_line(proc)
    assert not (art / INT8).exists() and not (art / f"{INT8}.manifest.json").exists()
    aside = json.loads((art / "onnx" / "model.int8.below-floor.onnx.manifest.json").read_text())
    assert aside["trusted"] is False and aside["instead_of"] == INT8 and aside["agreement"]["cosine_min"] < 0.999999
    assert half_written(art) == []
    proc = cli(env, *strict, "bench", "onnx-int8")
    row = json.loads((art / "results" / "onnx-int8.json").read_text())
    assert proc.returncode != 0 and row["status"] == "failed" and "below the [accuracy] floors" in row["reason"]
    assert row["latency_ms"] is None and row["agreement"]["cosine_min"] == aside["agreement"]["cosine_min"]


def test_a_killed_conversion_leaves_nothing_a_later_run_trusts(converted: tuple[dict[str, str], Path]) -> None:
    env, art = converted
    proc = subprocess.Popen(
        [*CLI, "convert", "onnx-int8"], env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not any((art / ".tmp").rglob("*.onnx")):  # the quantizer's work dir: the step is midway
        assert proc.poll() is None and time.monotonic() < deadline, "conversion ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (art / INT8).exists() and not (art / f"{INT8}.manifest.json").exists()
    assert half_written(art)  # SIGKILL cannot clean up: the next run must not trust or keep what it left
    again = ok(env, "convert", "onnx-int8")
    assert "verified ONNX INT8" in again.stderr and "up to date" not in again.stderr
    assert half_written(art) == [] and (art / f"{INT8}.manifest.json").is_file()


def test_a_changed_source_redoes_every_dependent(converted: tuple[dict[str, str], Path]) -> None:
    """The manifest chain: a model fetched anew makes every model made from the old one stale, then redone."""
    env, art = converted
    ok(env, "convert", "onnx-int8")
    logits = tiny_onnx(Path(env["MODELPORT_MODEL"]), size=(8, 8), classes=5, batch=1, softmax=False)
    ok(env, "fetch")
    for key, made in (("onnx", "onnx/model.onnx"), ("onnx-int8", INT8)):
        proc = cli(env, "bench", key)
        assert proc.returncode != 0 and "was made from another source model" in proc.stderr, proc.stderr
        assert str(art / made) in failed_row(art, key)["reason"]
        shutil.rmtree(art / "results")
    proc = ok(env, "convert", "reference", "onnx", "onnx-int8")
    assert "up to date" not in proc.stderr and "verified ONNX FP32" in proc.stderr and "verified ONNX INT8" in proc.stderr
    reference = np.load(art / "source" / "reference.npy")
    assert np.allclose(reference, ort_outputs(logits, env), atol=1e-6)  # the new source's logits
    assert not np.allclose(reference.sum(1), 1.0, atol=1e-3)


def test_a_model_changed_since_conversion_is_refused(converted: tuple[dict[str, str], Path]) -> None:
    env, art = converted
    model = art / "onnx" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    proc = cli(env, "bench", "onnx")
    assert proc.returncode != 0 and str(model) in proc.stderr and "sha256 differs from its manifest" in proc.stderr
    assert "sha256 differs" in failed_row(art, "onnx")["reason"]


def test_an_eval_image_replaced_at_the_same_path_remakes_the_reference(tiny: dict[str, str], tmp_path: Path) -> None:
    """Keyed by content: a list file names two photos of one name; replacing one's bytes remakes the
    reference, and the next conversion verifies against it (no loop that only --force breaks)."""
    images = sorted(Path(tiny["MODELPORT_IMAGES"]).iterdir())
    for folder, image in (("a", images[0]), ("b", images[1])):
        (tmp_path / folder).mkdir()
        shutil.copyfile(image, tmp_path / folder / "photo.png")
    (tmp_path / "eval.txt").write_text("a/photo.png\nb/photo.png\n")
    env = tiny | {"MODELPORT_IMAGES": str(tmp_path / "eval.txt")}
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx")
    shutil.copyfile(images[2], tmp_path / "a" / "photo.png")
    proc = ok(env, "convert", "reference")
    assert "up to date" not in proc.stderr, proc.stderr
    proc = ok(env, "convert", "onnx")
    assert "verified ONNX FP32 on 2 images" in proc.stderr, proc.stderr
    assert "up to date: source/reference.npy" in ok(env, "convert", "reference").stderr


def test_a_changed_floor_rechecks_an_up_to_date_model(converted: tuple[dict[str, str], Path]) -> None:
    env, art = converted
    assert "up to date: onnx/model.onnx" in ok(env, "convert", "onnx").stderr
    proc = ok(env, "-o", "accuracy.fp_cosine_min=0.9995", "convert", "onnx")
    assert "up to date" not in proc.stderr and "verified ONNX FP32" in proc.stderr, proc.stderr
    m = json.loads((art / "onnx" / "model.onnx.manifest.json").read_text())
    assert m["options"]["floors"] == {"top1": 1.0, "cosine_min": 0.9995}


def test_bench_refuses_a_model_made_from_a_replaced_upstream(converted: tuple[dict[str, str], Path]) -> None:
    """`convert onnx` made other bytes (another opset) after the INT8 model was made from the previous ones:
    bench writes a failed row naming what changed and the step to rerun, instead of timing the stale model."""
    env, art = converted
    ok(env, "convert", "onnx-int8")
    proc = ok(env, "-o", "convert.opset=14", "convert", "onnx")
    assert "up to date" not in proc.stderr, proc.stderr
    proc = cli(env, "bench", "onnx-int8")
    assert proc.returncode != 0, proc.stderr
    reason = failed_row(art, "onnx-int8")["reason"]
    assert f"{art / INT8}: was made from onnx/model.onnx as it was before" in reason, reason
    assert reason.endswith("run `modelport convert onnx-int8`") and "\n" not in reason, reason
    assert "was made from onnx/model.onnx as it was before" in proc.stderr, proc.stderr
    shutil.rmtree(art / "results")
    ok(env, "convert", "onnx-int8")
    ok(env, "bench", "onnx-int8")


# -- bad input: a non-zero exit and one line naming the file


def test_a_corrupt_onnx_source(tiny: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(Path(tiny["MODELPORT_MODEL"]).read_bytes()[:300])
    proc = cli(tiny | {"MODELPORT_MODEL": str(bad)}, "fetch")
    assert proc.returncode != 0 and str(bad) in error_line(proc)
    assert files(Path(tiny["MODELPORT_ARTIFACTS"])) == {}


def test_a_converted_onnx_that_became_unreadable(converted: tuple[dict[str, str], Path]) -> None:
    env, art = converted
    model = art / "onnx" / "model.onnx"
    model.write_bytes(model.read_bytes()[:300])
    (art / "onnx" / "model.onnx.manifest.json").unlink()  # a user-supplied file: only the toolchain can judge it
    proc = cli(env, "bench", "onnx")
    assert proc.returncode != 0 and str(model) in proc.stderr and "not a readable ONNX model" in proc.stderr
    assert str(model) in failed_row(art, "onnx")["reason"]


@pytest.mark.parametrize(
    "text, says",
    [
        ('[bench]\nruns = "many"\n', "bench.runs"),
        ("[images]\nheadlin = 'img0.png'\n", "unknown key 'images.headlin' (did you mean 'images.headline'?)"),
    ],
)
def test_a_config_with_a_wrong_type_or_an_unknown_key(tiny: dict[str, str], text: str, says: str) -> None:
    config = Path(tiny["MODELPORT_CONFIG"])
    config.write_text(text)
    proc = cli(tiny, "fetch")
    assert proc.returncode != 0
    line = error_line(proc)
    assert str(config) in line and says in line, line
    assert not Path(tiny["MODELPORT_ARTIFACTS"]).exists()


def test_a_missing_image_folder(converted: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, art = converted
    missing = tmp_path / "no-such-images"
    before = files(art)
    proc = cli(env | {"MODELPORT_IMAGES": str(missing)}, "--force", "convert", "reference")
    assert proc.returncode != 0 and str(missing) in error_line(proc)
    assert files(art) == before


# -- the Converter base: what a target gets without writing it


class Copy(Converter):
    """A target whose toolchain call is a file copy, so the test sees only what the base adds."""

    tool = "copy"

    def __init__(self, model: Path, reason: str | None = None) -> None:
        self.model, self.reason, self.made = model, reason, 0

    def unavailable_reason(self) -> str | None:
        return self.reason

    def tool_version(self) -> str:
        return "copy 1"

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        def make(job: Job) -> dict[str, object]:
            self.made += 1
            shutil.copyfile(self.model, job.tmp())
            return {"copied_from": self.model.name}

        source = ctx.store.path(ONNX_MODEL)
        return self.produce(ctx, force, {"model": COPY}, make, inputs={"onnx": source}, options={}, runtime=OnnxFp32Runtime)


COPY = "onnx/copy.onnx"


def test_the_converter_base_checks_caches_verifies_and_records(converted: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, art = converted
    ctx = make_context(env)
    made = art / COPY

    missing = Copy(art / ONNX_MODEL, reason="copytool not installed")
    with pytest.raises(ToolchainMissing, match="copytool not installed"):
        missing.run(ctx, False)
    assert missing.made == 0 and not made.exists()

    # Logits where the reference holds probabilities: made, verified, refused; nothing committed.
    wrong = Copy(tiny_onnx(tmp_path / "logits.onnx", size=(8, 8), classes=5, batch=1, softmax=False))
    with pytest.raises(AccuracyGateError):
        wrong.run(ctx, False)
    assert wrong.made == 1 and not made.exists() and not (art / f"{COPY}.manifest.json").exists()

    right = Copy(art / ONNX_MODEL)
    assert right.run(ctx, False) == [made] and right.made == 1
    m = json.loads((art / f"{COPY}.manifest.json").read_text())
    assert m["tool"] == {"name": "copy", "version": "copy 1"} and m["extra"]["copied_from"] == "model.onnx"
    assert m["inputs"]["reference"]["sha256"] == sha256_file(art / "source" / "reference.npy")
    assert m["extra"]["agreement"]["images"] == 4 and m["extra"]["agreement"]["cosine_min"] > 0.99999

    assert right.run(ctx, False) == [made] and right.made == 1  # up to date: the toolchain is not called
    good = sha256_file(made)
    with pytest.raises(AccuracyGateError):
        wrong.run(ctx, True)
    assert sha256_file(made) == good and half_written(art) == []  # a failed later run keeps the good result


class RanItself(Converter):
    """A target that runs its model inside ``make`` (as RKNN's simulator does): no Runtime, the base verifies
    the outputs ``make`` returns (``MADE``) through the same gate."""

    tool = "copy+run"

    def __init__(self, model: Path, env: dict[str, str], gate: bool = True) -> None:
        self.model, self.env, self.gate, self.made = model, env, gate, 0

    def tool_version(self) -> str:
        return "copy 1"

    def convert(self, ctx: StepContext, force: bool) -> list[Path]:
        def make(job: Job) -> Made:
            self.made += 1
            shutil.copyfile(self.model, job.tmp())
            outputs = ort_outputs(job.tmp(), self.env)  # the made file, run before it is committed
            return Made(outputs, "ran in make", {"copied_from": self.model.name}, lambda a: {"after_top1": a and a.top1})

        source = ctx.store.path(ONNX_MODEL)
        return self.produce(ctx, force, {"model": RAN}, make, inputs={"onnx": source}, options={}, runtime=MADE, gate=self.gate)


RAN = "onnx/ran.onnx"


def test_the_converter_base_verifies_outputs_a_make_returns(converted: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, art = converted
    ctx = make_context(env)
    made = art / RAN
    logits = tiny_onnx(tmp_path / "logits.onnx", size=(8, 8), classes=5, batch=1, softmax=False)

    wrong = RanItself(logits, env)
    with pytest.raises(AccuracyGateError):
        wrong.run(ctx, False)
    assert wrong.made == 1 and not made.exists() and not (art / f"{RAN}.manifest.json").exists()
    kept = below_floor_name(made)
    assert sha256_file(kept) == sha256_file(logits)  # the refused model, for inspection, never under its name

    right = RanItself(art / ONNX_MODEL, env)
    assert right.run(ctx, False) == [made] and right.made == 1
    m = json.loads((art / f"{RAN}.manifest.json").read_text())
    assert m["inputs"]["reference"]["sha256"] == sha256_file(art / "source" / "reference.npy")
    assert set(m["options"]["floors"]) == {"top1", "cosine_min"}  # the float floors, as for a runtime
    agreement = m["extra"]["agreement"]
    assert agreement["images"] == 4 and agreement["cosine_min"] > 0.99999
    assert m["extra"]["copied_from"] == "model.onnx" and m["extra"]["after_top1"] == agreement["top1"]
    assert right.run(ctx, False) == [made] and right.made == 1  # up to date: make is not called

    # Without the gate (a search variant) the same wrong model is committed with what it measured.
    measured = RanItself(logits, env, gate=False)
    assert measured.run(ctx, True) == [made]
    m = json.loads((art / f"{RAN}.manifest.json").read_text())
    assert "floors" not in m["options"] and m["extra"]["agreement"]["cosine_min"] < 0.99
