"""The runtime and result contracts on tiny classifiers made here (tiny_models.py), through the real
onnxruntime and TFLite: NCHW, NHWC, dynamic-batch ONNX and a float TFLite source, each converted by the real CLI. The same on MobileNetV2,
with its agreement floors: test_runner.py and test_depth.py (marked slow)."""

import json
import subprocess
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from conftest import cli, error_line, make_context
from modelport.bench.registry import BATCH_TWINS, batch_class
from modelport.common.context import StepContext
from modelport.common.errors import InputError
from modelport.common.images import load_image
from modelport.common.preprocess import prepare, to_tensor
from modelport.common.schema import REPORT_SCHEMA, RESULT_SCHEMA, BackendResult
from modelport.runtime.base import Runtime
from modelport.runtime.registry import SOURCE_KEYS, runtime_class, source_key
from tiny_models import tiny_pipeline

KEYS = ("source", "onnx", "onnx-int8")  # "source": the source's own runtime (tflite or onnx-source)
VARIANTS: dict[str, dict[str, Any]] = {
    "nchw": {},
    "nhwc": {"layout": "NHWC"},
    "dynamic-batch": {"batch": "N"},
    "tflite": {"tflite": True, "conv_head": True},
}


def resolve(ctx: StepContext, key: str) -> str:
    return source_key(ctx.config.contract) if key == "source" else key


def ok(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(env, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module", params=list(VARIANTS))
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> StepContext:
    """A tiny source of each variant, fetched and converted (reference, ONNX, INT8, dynamic twins): its context."""
    env = tiny_pipeline(tmp_path_factory.mktemp(request.param), **VARIANTS[request.param])
    ok(env, "fetch")
    twins = ["onnx-dynamic", "tflite-dynamic"] if VARIANTS[request.param].get("tflite") else ["onnx-dynamic"]
    ok(env, "convert", "reference", "onnx", "onnx-int8", *twins)
    return make_context(env)


def tensors(ctx: StepContext, rt: Runtime) -> list[np.ndarray]:
    spec = ctx.config.input
    return [to_tensor(prepare(load_image(p), spec), spec, rt.input_layout, rt.input_dtype) for p in ctx.eval_images]


def close(out: np.ndarray, ref: np.ndarray, key: str) -> bool:
    if "int8" in key:
        return bool((out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref) > 0.999)
    return np.allclose(out, ref, atol=1e-5)


def test_the_reference_is_the_source_run_by_its_own_toolchain(made: StepContext) -> None:
    """Every row is judged against the reference: it must be the source model's output, not the harness's."""
    c, spec = made.config.contract, made.config.input
    assert c is not None
    x = [to_tensor(prepare(load_image(p), spec), spec, c.layout, "float32") for p in made.eval_images]
    path = str(made.store.path(c.file))
    if c.kind == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        own = [session.run(None, {c.input_name: t})[0] for t in x]
    else:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=path)
        interp.allocate_tensors()
        (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
        own = []
        for t in x:
            interp.set_tensor(inp["index"], t)
            interp.invoke()
            own.append(interp.get_tensor(out["index"]))
    reference = np.load(made.store.path("source/reference.npy"))
    assert reference.shape == (4, 5) and np.allclose(reference, np.concatenate(own), atol=1e-6)


@pytest.mark.parametrize("key", KEYS)
def test_runtime_lifecycle(made: StepContext, key: str) -> None:
    source, key = key == "source", resolve(made, key)
    rt = runtime_class(key).from_store(made.store, made.config)
    x = tensors(made, rt)
    reference = np.load(made.store.path("source/reference.npy"))
    assert made.config.contract is not None
    source_layout = made.config.contract.layout
    assert rt.input_layout == (source_layout if source else "NCHW")
    assert x[0].shape == rt.input_shape() and x[0].dtype == np.float32
    with pytest.raises(RuntimeError, match="not active"):
        rt.infer(x[0])
    with pytest.raises(RuntimeError, match="not active"):
        rt.set_batch(1)

    assert rt.activate() is rt and rt.active and rt.load_ms is not None and rt.load_ms > 0
    out = rt.infer(x[0])
    assert out.shape == (1, 5) and out.dtype == np.float32 and close(out[0], reference[0], key)
    with pytest.raises(ValueError, match=r"takes batches of 1\.\.1, not 2"):
        rt.set_batch(2)
    rt.set_batch(1)
    rt.deactivate()
    assert not rt.active
    rt.deactivate()  # a second deactivate is a no-op
    with pytest.raises(RuntimeError, match="not active"):
        rt.infer(x[0])

    with rt:  # activates again, as a context manager
        assert all(close(rt.infer(t)[0], r, key) for t, r in zip(x, reference, strict=True))
    assert not rt.active


@pytest.mark.parametrize("key", KEYS)
def test_batch_twin_gives_the_per_image_outputs_in_one_batch(made: StepContext, key: str) -> None:
    key = resolve(made, key)
    if key not in BATCH_TWINS:  # an ONNX source runs as it is: batch runs use its own runtime
        assert batch_class(key) is runtime_class(key)
        return
    static = runtime_class(key).from_store(made.store, made.config)
    with static:
        single = np.concatenate([static.infer(t) for t in tensors(made, static)])
    twin = batch_class(key).from_store(made.store, made.config)
    x = np.concatenate(tensors(made, twin))
    with twin:
        for bad in (0, twin.max_batch + 1):
            with pytest.raises(ValueError, match=rf"takes batches of 1\.\.{twin.max_batch}, not {bad}"):
                twin.set_batch(bad)
        twin.set_batch(len(x))
        out = twin.infer(x)
    assert out.shape == (len(x), 5) and np.allclose(out, single, atol=1e-5)


@pytest.mark.parametrize("key", KEYS)
def test_a_missing_model_file_is_one_line_naming_it(tmp_path: Path, key: str) -> None:
    env = tiny_pipeline(tmp_path)
    ok(env, "fetch")
    ctx = make_context(env)
    key = resolve(ctx, key)
    rt = runtime_class(key).from_store(ctx.store, ctx.config)
    (path,) = rt.files.values()
    path.unlink(missing_ok=True)
    with pytest.raises(InputError) as e:
        rt.activate()
    assert str(path) in str(e.value) and "\n" not in str(e.value) and not rt.active
    if key not in SOURCE_KEYS:
        assert f"run `modelport convert {key}` first" in str(e.value)


def test_bench_results_follow_the_schema_and_the_report_is_written(made: StepContext) -> None:
    env = {
        "MODELPORT_CONFIG": str(made.config.source),
        "MODELPORT_ARTIFACTS": str(made.store.root),
        "MODELPORT_IMAGES": str(made.eval_images[0].parent),
        "MODELPORT_CALIBRATION": str(made.eval_images[0].parent),
    }
    ok(env, "bench", *KEYS)
    source_sha = cast(dict[str, Any], made.store.current_source())["sha256"]
    reference = np.load(made.store.path("source/reference.npy"))
    for key in (resolve(made, k) for k in KEYS):
        data = json.loads(made.store.path(f"results/{key}.json").read_text())
        r = BackendResult.model_validate(data)
        assert data["schema"] == RESULT_SCHEMA and r.key == key and r.status == "ok", r.reason
        lat = r.latency_ms
        assert lat is not None and r.load_ms is not None and r.headline is not None and r.agreement is not None
        assert (lat.warmup, lat.runs) == (1, 3) and 0 < lat.min <= lat.median <= lat.p90 <= lat.p99 <= lat.max
        assert r.model_sha256 == source_sha and r.preprocessing == made.config.input.signature and r.load_ms > 0
        outputs = np.load(made.store.path(f"results/{key}.npy"), allow_pickle=False)
        assert outputs.shape == (4, 5) and close(outputs.ravel(), reference.ravel(), key)
        assert [t.image for t in r.topk] == [p.name for p in made.eval_images]
        assert r.headline.image == "img0.png" and r.headline.label.startswith("class")
        assert r.agreement.images == 4 and r.agreement.top1 == 1.0

    ok(env, "report")
    report = json.loads(made.store.path("report/results.json").read_text())
    assert report["schema"] == REPORT_SCHEMA and report["machine"]
    rows = {e["key"]: e for e in report["results"]}
    for key in (resolve(made, k) for k in KEYS):
        e = rows[key]
        assert e["status"] == "ok" and e["reason"] is None and e["fps"] > 0 and e["size_bytes"] > 0 and e["load_ms"] > 0
        assert set(e["latency_ms"]) >= {"min", "median", "mean", "p90", "p99", "max"}
        assert set(e["agreement"]) >= {"images", "top1", "top5_overlap", "cosine_min", "cosine_mean", "max_abs_diff", "mse"}
        assert e["headline"]["image"] == "img0.png"
    folder = Path(made.store.path("report"))
    assert "| ONNX INT8 |" in (folder / "results.md").read_text()
    assert (folder / "results.csv").read_text().splitlines()[0].startswith("model,device_key,run_id,key,name,backend")
    assert (folder / "latency.png").read_bytes()[:4] == b"\x89PNG" and (folder / "results.html").stat().st_size > 1000


def test_failed_rows_are_reported_with_their_reasons(tiny: dict[str, str]) -> None:
    """A row that could not run is a row with its reason; a report with no row that ran is an error."""
    art = Path(tiny["MODELPORT_ARTIFACTS"])
    ok(tiny, "fetch")
    assert cli(tiny, "bench", "onnx", "onnx-int8").returncode != 0  # nothing converted
    proc = cli(tiny, "report")
    assert proc.returncode != 0 and "no backend produced a result (2 failed, 0 skipped)" in error_line(proc)
    md = (art / "report" / "results.md").read_text()
    assert "None" not in md and "Latency: no backend was timed." in md

    ok(tiny, "convert", "reference")
    ok(tiny, "bench", "source")
    proc = cli(tiny, "report")
    assert proc.returncode != 0 and "2 of 3 rows failed: onnx, onnx-int8" in error_line(proc)
    rows = {e["key"]: e for e in json.loads((art / "report" / "results.json").read_text())["results"]}
    assert rows["onnx-source"]["status"] == "ok" and rows["onnx-source"]["agreement"]["top1"] == 1.0
    for key, file in (("onnx", "model.onnx"), ("onnx-int8", "model.int8.onnx")):
        reason = rows[key]["reason"]
        assert rows[key]["status"] == "failed" and str(art / "onnx" / file) in reason and f"convert {key}`" in reason
        assert f"| failed: {reason} |" in (art / "report" / "results.md").read_text()
