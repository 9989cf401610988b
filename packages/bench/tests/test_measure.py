"""Measurements beyond batch-1 latency on a tiny ONNX classifier through the real onnxruntime: throughput over
concurrency levels, cold start and memory in a fresh process, the whole frame, and the run conditions. Timings
are only checked to be finite and positive: their size depends on the machine."""

import csv
import io
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, error_line, make_context
from modelport.bench.coldstart import peak_rss_bytes, start_peak
from modelport.bench.measure import Conditions, sustained_run, throughput_point
from modelport.common.images import load_image
from modelport.common.machine import NOT_EXPOSED, run_conditions
from modelport.common.preprocess import prepare, to_tensor
from modelport.common.schema import BackendResult, SustainedWindow
from modelport.common.timing import concurrency_levels, cores, sustained_flag, unsteady
from modelport.runtime.base import Runtime
from modelport.runtime.registry import runtime_class
from tiny_models import tiny_pipeline


def ok(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(env, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def positive(*values: object) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in values)


SAID: dict[str, str] = {}  # what `modelport bench` printed in the module's fixture


@pytest.fixture(scope="module")
def benched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = tiny_pipeline(tmp_path_factory.mktemp("measure"))
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx")
    proc = ok(env, "bench", "onnx")
    SAID["bench"] = proc.stdout + proc.stderr  # the console writes to one of them
    return env


def test_a_row_carries_throughput_cold_start_memory_frame_and_conditions(benched: dict[str, str]) -> None:
    art = Path(benched["MODELPORT_ARTIFACTS"])
    text = (art / "results/onnx.json").read_text()
    r = BackendResult.model_validate_json(text)
    assert r.status == "ok" and not r.notes, r.notes
    assert [t.concurrency for t in r.throughput] == concurrency_levels([]) == sorted({1, 2, cores()})
    for t in r.throughput:
        assert positive(t.fps, t.seconds, t.p50, t.p90, t.p99) and t.inferences >= 1 and t.p50 <= t.p90 <= t.p99
        # onnxruntime's own mechanism, the row's 2 intra-op threads split so workers x threads fit the cores
        assert t.mechanism == f"{t.concurrency} concurrent run() call{'s' if t.concurrency > 1 else ''} on one InferenceSession"
        assert t.threads_per_worker == (2 if t.concurrency == 1 else max(1, min(2, cores() // t.concurrency)))
    assert r.best_throughput in r.throughput

    c = r.cold_start
    assert c is not None
    assert c.pid != os.getpid()  # a fresh process, not the benchmark's
    assert positive(c.load_ms, c.first_infer_ms, c.baseline_rss_bytes) and c.inferences == 2
    assert c.peak_rss_bytes >= c.baseline_rss_bytes and c.model_rss_bytes >= 0

    f = r.frame_ms
    assert f is not None
    assert f.frames == 4 and positive(f.decode, f.preprocess, f.infer, f.postprocess, f.total)

    cond = r.conditions
    assert cond is not None
    assert cond.load_before >= 0 and cond.load_after >= 0
    assert all(isinstance(v, str) and v for v in (cond.governor, cond.cur_mhz, cond.max_mhz, cond.smt, cond.throttled))

    # The row's median against its own concurrency-1 p50 and its blocks: flagged exactly when they disagree
    c1 = next(t.p50 for t in r.throughput if t.concurrency == 1)
    assert r.latency_ms is not None
    apart = max(r.latency_ms.median, c1) / min(r.latency_ms.median, c1)
    assert (r.unsteady is not None) == (apart >= 1.3 or "blocks" in (r.unsteady or "")), (r.unsteady, apart)

    assert BackendResult.model_validate_json(r.dump()) == r  # the schema round-trips
    said = SAID["bench"]
    assert "throughput: best" in said and "fresh process: load" in said and "whole frame:" in said


def test_an_older_result_without_the_new_fields_still_reads(benched: dict[str, str]) -> None:
    art = Path(benched["MODELPORT_ARTIFACTS"])
    data = json.loads((art / "results/onnx.json").read_text())
    for field in ("throughput", "cold_start", "frame_ms", "conditions"):
        data.pop(field)
    r = BackendResult.model_validate(data)
    assert r.throughput == [] and r.cold_start is None and r.frame_ms is None and r.conditions is None
    assert r.best_throughput is None


def test_the_report_shows_the_new_columns_and_the_chart_without_none(benched: dict[str, str]) -> None:
    ok(benched, "report")
    out = Path(benched["MODELPORT_ARTIFACTS"]) / "report"
    report = json.loads((out / "results.json").read_text())
    (e,) = [e for e in report["results"] if e["key"] == "onnx"]
    assert positive(e["best_fps"]) and e["best_concurrency"] in (1, 2, cores())
    assert e["cold_start"]["model_rss_bytes"] >= 0 and e["frame_ms"]["total"] > 0 and e["conditions"]["governor"]
    md = (out / "results.md").read_text()
    assert "best FPS @ concurrency" in md and "## Throughput, cold start, memory, whole frame" in md
    assert "![throughput](throughput.png)" in md and "None" not in md
    assert f"@ {e['best_concurrency']} |" in md and "throttled:" in md
    assert e["best_mechanism"].endswith("on one InferenceSession") and e["best_threads_per_worker"] >= 1
    assert "- ONNX FP32: " in md and "concurrent run() calls on one InferenceSession; threads per request 2 @ 1" in md
    assert (out / "throughput.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "results.html").read_text()
    assert 'alt="throughput"' in page and "Throughput, cold start, memory, whole frame" in page
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"best_fps", "best_concurrency", "best_mechanism", "first_infer_ms", "peak_rss_bytes", "frame_ms"} <= set(header)


def test_a_row_of_another_source_model_shows_none_of_its_measurements(benched: dict[str, str], tmp_path: Path) -> None:
    art = tmp_path / "art"
    shutil.copytree(benched["MODELPORT_ARTIFACTS"], art, ignore=shutil.ignore_patterns("report"))
    path = art / "results/onnx.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"model_sha256": "0" * 64}))
    cli({**benched, "MODELPORT_ARTIFACTS": str(art)}, "report")  # fails (a failed row) and writes the report
    (e,) = [e for e in json.loads((art / "report/results.json").read_text())["results"] if e["key"] == "onnx"]
    assert e["status"] == "failed" and e["best_fps"] is None and e["cold_start"] is None and e["frame_ms"] is None
    assert "## Throughput" not in (art / "report/results.md").read_text()


def test_a_row_without_the_new_measurements_renders_no_section(tmp_path: Path) -> None:
    env = tiny_pipeline(tmp_path)
    config = Path(env["MODELPORT_CONFIG"])
    config.write_text(config.read_text().replace("frame_runs = 4", "frame_runs = 0") + "throughput = false\ncold_start = false\n")
    ok(env, "fetch")
    ok(env, "convert", "reference")
    ok(env, "bench", "source")
    r = BackendResult.model_validate_json((tmp_path / "art/results/onnx-source.json").read_text())
    assert r.throughput == [] and r.cold_start is None and r.frame_ms is None and r.conditions is not None
    ok(env, "report")
    md = (tmp_path / "art/report/results.md").read_text()
    assert "## Throughput" not in md and "None" not in md and not (tmp_path / "art/report/throughput.png").exists()


@pytest.mark.parametrize(
    "line, key",
    [
        ("concurrency = [0]", "concurrency"),
        ("concurrency = [1, 1000]", "concurrency"),
        ("throughput_seconds = inf", "throughput_seconds"),
        ("throughput_seconds = nan", "throughput_seconds"),
        ("throughput_seconds = 0", "throughput_seconds"),
        ("cold_start_runs = -1", "cold_start_runs"),
        ("cold_start_runs = 1e9", "cold_start_runs"),
    ],
)
def test_bad_measurement_settings_are_one_error_line_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    env = tiny_pipeline(tmp_path)
    config = Path(env["MODELPORT_CONFIG"])
    kept = [t for t in config.read_text().splitlines() if not t.startswith(f"{key} =")]  # tiny sets some
    config.write_text("\n".join([*kept, line, ""]))
    proc = cli(env, "bench", "onnx")
    assert proc.returncode != 0 and f"bench.{key}" in error_line(proc)
    assert not (tmp_path / "art/results").exists()


def test_workers_share_one_session_or_get_a_runtime_each_at_the_split_thread_count(benched: dict[str, str]) -> None:
    ctx = make_context(benched)
    spec = ctx.config.input
    n = 3
    with runtime_class("onnx").from_store(ctx.store, ctx.config) as rt:  # concurrent run() calls on one session
        tensor = to_tensor(prepare(load_image(ctx.eval_images[0]), spec), spec, rt.input_layout, rt.input_dtype)
        per = rt.worker_threads(n)
        assert rt.worker_threads(1) == rt.thread_count() == 2 and per == max(1, min(2, cores() // n))
        workers = rt.concurrent_workers(n)
        assert len({id(w) for w in workers}) == 1 and workers[0].thread_count() == per and workers[0].active
        assert (workers[0] is rt) == (per == 2)
        rt.release_workers(workers)
        assert rt.active and (workers[0] is rt or not workers[0].active)
        samples, wall = rt.run_concurrent(tensor, 2, 0.05)
        assert len(samples) >= 2 and positive(wall, *samples)

    # The generic pool: a backend whose runtime cannot be shared (cls: whichever class the registry gives).
    class OneEach(runtime_class("onnx")):  # type: ignore[misc]
        thread_safe = False
        concurrency_mechanism = Runtime.concurrency_mechanism

    with OneEach.from_store(ctx.store, ctx.config) as rt:
        workers = rt.concurrent_workers(n)
        assert len({id(w) for w in workers}) == n and all(w.active and w.thread_count() == rt.worker_threads(n) for w in workers)
        assert "one runtime each" in rt.concurrency_mechanism(n)
        rt.release_workers(workers)
        assert rt.active and not any(w.active for w in workers if w is not rt)
        samples, _ = rt.run_concurrent(tensor, 2, 0.05)
        assert len(samples) >= 2 and rt.active


def test_one_worker_runs_in_the_calling_thread() -> None:
    """An OpenMP toolchain keeps a thread team per calling thread: one worker must be the batch-1 call itself."""
    import threading

    from modelport.runtime.base import concurrent_calls

    seen: list[tuple[int, int]] = []
    calls = [lambda i=i: seen.append((i, threading.get_ident())) for i in range(3)]
    samples, wall = concurrent_calls(calls, 0.02)
    assert {t for i, t in seen if i == 0} == {threading.get_ident()}
    assert threading.get_ident() not in {t for i, t in seen if i > 0} and {i for i, _ in seen} == {0, 1, 2}
    assert len(samples) == len(seen) - 3 and wall > 0  # each thread's first call is untimed


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_run_conditions_say_not_exposed_when_sysfs_has_nothing(tmp_path: Path) -> None:
    (tmp_path / "devices/system/cpu/cpu0").mkdir(parents=True)  # a CPU without cpufreq, thermal or SMT files
    c = run_conditions(tmp_path)
    assert c == dict.fromkeys(("governor", "cur_mhz", "max_mhz", "smt", "thermal_c"), NOT_EXPOSED)
    done = Conditions(tmp_path).finish()
    assert done.throttled == NOT_EXPOSED and done.thermal_c_after == NOT_EXPOSED and done.load_before >= 0


def test_run_conditions_read_what_sysfs_exposes(tmp_path: Path) -> None:
    for i, (gov, cur) in enumerate((("performance", "1200000"), ("performance", "1800000"))):
        cpu = tmp_path / f"devices/system/cpu/cpu{i}"
        write(cpu / "cpufreq/scaling_governor", gov + "\n")
        write(cpu / "cpufreq/scaling_cur_freq", cur)
        write(cpu / "cpufreq/cpuinfo_max_freq", "2400000")
        write(cpu / "thermal_throttle/core_throttle_count", "5")
    write(tmp_path / "devices/system/cpu/smt/active", "1")
    write(tmp_path / "class/thermal/thermal_zone0/type", "x86_pkg_temp")
    write(tmp_path / "class/thermal/thermal_zone0/temp", "47000")
    write(tmp_path / "class/thermal/thermal_zone1/temp", "garbage")  # unreadable: left out, not guessed
    c = run_conditions(tmp_path)
    assert c == {
        "governor": "performance",
        "cur_mhz": "1200-1800",
        "max_mhz": "2400",
        "smt": "on",
        "thermal_c": {"x86_pkg_temp (thermal_zone0)": 47.0},
    }
    run = Conditions(tmp_path)
    assert Conditions(tmp_path).finish().throttled == "no"
    write(tmp_path / "devices/system/cpu/cpu1/thermal_throttle/core_throttle_count", "8")
    assert run.finish().throttled == "yes: 3 thermal throttle events during the run"


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the kernel's resettable high-water is Linux's")
def test_the_peak_is_measured_from_the_baseline_not_from_the_process_start() -> None:
    """A transient peak before loading (resolving the config reads the source model) must not hide the model's memory."""
    mib = 2**20
    transient = bytearray(256 * mib)
    transient[::4096] = b"\x01" * len(range(0, len(transient), 4096))  # touched: resident
    del transient
    baseline = start_peak()
    held = bytearray(64 * mib)
    held[::4096] = b"\x01" * len(range(0, len(held), 4096))
    assert peak_rss_bytes() - baseline >= 60 * mib
    del held


def test_tflite_runs_an_interpreter_per_worker_at_the_split_thread_count(tmp_path: Path) -> None:
    from modelport.common.config import Config
    from modelport.tflite.runtime import TfliteRuntime
    from tiny_models import tiny_tflite

    config = Config.model_validate({"input": {"size": [24, 24]}})
    x = np.random.default_rng(0).standard_normal((1, 24, 24, 3)).astype(np.float32)
    with TfliteRuntime(config, {"model": tiny_tflite(tmp_path / "t.tflite")}) as rt:
        per = rt.worker_threads(3)
        workers = rt.concurrent_workers(3)
        assert rt.thread_count() == 2 and per == max(1, min(2, cores() // 3)) and len({id(w) for w in workers}) == 3
        assert all(w.config.tflite.threads == per and w.active for w in workers)
        np.testing.assert_allclose(workers[-1].infer(x), rt.infer(x), rtol=1e-6)
        rt.release_workers(workers)
        for n in (1, 3):
            p = throughput_point(rt, x, n, 0.1)
            assert p.mechanism == f"{n} thread{'s' if n > 1 else ''}, an Interpreter each"
            assert p.threads_per_worker == rt.worker_threads(n) and p.inferences >= 1 and p.fps > 0


def test_a_sustained_run_gives_windows_of_p50_and_p99_in_the_row_report_and_csv(tmp_path: Path) -> None:
    env = tiny_pipeline(tmp_path)
    ok(env, "fetch")
    ok(env, "convert", "reference", "onnx")
    off = ["-o", "bench.throughput=false", "-o", "bench.cold_start=false", "-o", "bench.layer_profile=false"]
    proc = ok(env, *off, "-o", "bench.sustained_seconds=5", "-o", "bench.sustained_window=1", "bench", "onnx")
    r = BackendResult.model_validate_json((tmp_path / "art/results/onnx.json").read_text())
    s = r.sustained
    assert s is not None and not r.notes, r.notes
    assert s.seconds == 5 and s.window_s == 1 and len(s.windows) >= 4
    for w in s.windows:
        assert w.count > 0 and positive(w.p50, w.p99) and w.p99 >= w.p50
    assert [w.start_s for w in s.windows] == sorted(w.start_s for w in s.windows)
    first, last = s.windows[0], s.windows[-1]
    assert (s.first_p50, s.first_p99, s.last_p50, s.last_p99) == (first.p50, first.p99, last.p50, last.p99)
    assert s.drift == pytest.approx(last.p50 / first.p50)
    assert s.flag == sustained_flag(s.windows, s.seconds, s.throttled)
    assert f"sustained 5 s ({len(s.windows)} windows)" in proc.stdout + proc.stderr
    ok(env, "report")
    out = tmp_path / "art/report"
    md = (out / "results.md").read_text()
    assert "## Sustained run" in md, md
    assert "![sustained](sustained.png)" in md and (out / "sustained.png").is_file()
    assert f"| {r.name} | 5 | {len(s.windows)} x 1 s | {first.p50:.3f} -\\> {last.p50:.3f} | " in md
    assert f" | {s.drift:.2f}x | " in md and f" | {s.flag or '–'}" in md  # the load flag may follow
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    (row,) = [x for x in rows if x["key"] == "onnx"]
    assert float(row["sustained_drift"]) == pytest.approx(s.drift) and row["sustained_flag"] == (s.flag or "")
    assert "<h3>Sustained run</h3>" in (out / "results.html").read_text()
    # a flagged run marks the row's status, as the load flag does
    path = tmp_path / "art/results/onnx.json"
    data = json.loads(path.read_text())
    data["sustained"] |= {"throttled": 3, "flag": "THROTTLED 3 events"}
    path.write_text(json.dumps(data))
    ok(env, "report")
    assert "(SUSTAINED RUN: THROTTLED 3 events)" in (out / "results.md").read_text()


def test_without_sustained_seconds_no_row_runs_one(benched: dict[str, str]) -> None:
    r = BackendResult.model_validate_json((Path(benched["MODELPORT_ARTIFACTS"]) / "results/onnx.json").read_text())
    assert r.sustained is None and "sustained" not in SAID["bench"]


@pytest.mark.parametrize("value", ["-1", "2", "4.9", "3601", "nan"])
def test_a_bad_sustained_seconds_is_one_error_line(tmp_path: Path, value: str) -> None:
    env = tiny_pipeline(tmp_path)
    proc = cli(env, "-o", f"bench.sustained_seconds={value}", "bench", "onnx")
    assert proc.returncode != 0 and "bench.sustained_seconds" in error_line(proc)
    assert not (tmp_path / "art/results").exists()


def test_a_window_leaving_fewer_than_two_is_one_error_line(tmp_path: Path) -> None:
    env = tiny_pipeline(tmp_path)
    proc = cli(env, "-o", "bench.sustained_seconds=5", "-o", "bench.sustained_window=3", "bench", "onnx")
    assert proc.returncode != 0 and "sustained_window" in error_line(proc)


def windows(*p50s: float) -> list[SustainedWindow]:
    return [SustainedWindow(start_s=i, count=10, p50=p, p99=p * 2) for i, p in enumerate(p50s)]


def test_the_sustained_flag_is_drift_beyond_ten_percent_or_any_throttling() -> None:
    assert sustained_flag(windows(1.0, 1.1, 1.2), 30, 0) == "DRIFT +20% p50 over 30 s"
    assert sustained_flag(windows(1.0, 0.8), 30, None) == "DRIFT -20% p50 over 30 s"
    assert sustained_flag(windows(1.0, 1.2, 1.05), 30, 0) is None  # the last window against the first
    assert sustained_flag(windows(1.0, 1.05), 30, None) is None
    assert sustained_flag(windows(1.0, 1.0), 30, 3) == "THROTTLED 3 events"
    assert sustained_flag(windows(1.0, 1.0), 30, 1) == "THROTTLED 1 event"
    assert sustained_flag(windows(1.0, 1.14), 30, 2) == "DRIFT +14% p50 over 30 s; THROTTLED 2 events"


def ns(*ms: float) -> np.ndarray:
    return (np.asarray(ms, dtype=np.float64) * 1e6).astype(np.int64)


def test_a_row_is_unsteady_when_its_blocks_or_its_later_p50_disagree_by_1_3x() -> None:
    steady = ns(*[5.0, 5.2, 5.1, 4.9, 5.3] * 10)
    assert unsteady(steady) is None and unsteady(steady, 5.6, "later") is None
    # the two modes measured on a 2-core KVM guest, switching within the row (ncnn FP32, libgomp)
    modes = ns(*[5.2] * 20, *[10.7] * 30)
    assert unsteady(modes) == "the medians of 5 consecutive blocks of runs span 5.20-10.70 ms (2.06x)"
    assert unsteady(steady, 10.5, "at concurrency 1") == "median 5.10 ms vs 10.50 ms at concurrency 1 (2.06x)"
    both = unsteady(modes, 5.1, "at concurrency 1")
    assert both is not None and "blocks" in both and "vs 5.10 ms at concurrency 1" in both
    assert unsteady(ns(5.0, 10.0, 5.0)) is None  # too few runs to cut into blocks; one slow call is not a mode
    assert unsteady(ns(*[1.0] * 40, *[1.25] * 10)) is None  # a block 25% slower: noise on a shared machine
    assert unsteady(ns(*[1.0] * 40, *[1.3] * 10)) is not None  # a fifth of the row 30% slower: another mode


def test_a_sustained_run_counts_the_throttle_events_and_frequency_sysfs_shows_during_it(tmp_path: Path) -> None:
    cpu = tmp_path / "devices/system/cpu/cpu0"
    write(cpu / "cpufreq/scaling_cur_freq", "2400000")
    write(cpu / "thermal_throttle/core_throttle_count", "5")
    calls = [0]

    def throttling() -> None:  # the kernel counting events and lowering the clock while the row runs
        calls[0] += 1
        if calls[0] == 3:
            write(cpu / "thermal_throttle/core_throttle_count", "7")
            write(cpu / "cpufreq/scaling_cur_freq", "1200000")

    s = sustained_run(throttling, 0.3, 0.1, tmp_path)
    assert calls[0] >= 3 and s.throttled == 2 and (s.mhz_before, s.mhz_after) == ("2400-2400", "1200-1200")
    assert s.flag is not None and s.flag.endswith("THROTTLED 2 events")
    assert sum(w.count for w in s.windows) == calls[0] and all(w.count > 0 and w.p99 >= w.p50 for w in s.windows)
    assert s.windows[0].start_s == 0 and len({w.start_s for w in s.windows}) == len(s.windows)


def test_a_sustained_run_where_sysfs_hides_throttling_says_so(tmp_path: Path) -> None:
    (tmp_path / "devices/system/cpu/cpu0").mkdir(parents=True)
    s = sustained_run(lambda: None, 0.1, 0.05, tmp_path)
    assert s.throttled is None and s.mhz_before == s.mhz_after == NOT_EXPOSED
    assert s.flag is None or "THROTTLED" not in s.flag
