"""Results of several machines in one report: bundles, identity (model, backend, device), precedence, refusals."""

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

import pytest

from conftest import LIGHT_BENCH, error_line, private_artifacts, run
from modelport.bench.merge import merge
from modelport.common.context import StepContext
from modelport.common.schema import BackendResult

pytestmark = pytest.mark.slow  # the real model's converted artifacts (the pipeline fixture)


@pytest.fixture(scope="module")
def two_machines(
    pipeline: StepContext, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Path], dict[str, str]]:
    """The same converted models benchmarked under two device keys, each exported as a bundle."""
    root = tmp_path_factory.mktemp("farm")
    bundles = {}
    for device, threads in (("box-a", 2), ("box-b", 1)):
        art = root / device
        private_artifacts(pipeline, art)
        env = {**test_env, "MODELPORT_ARTIFACTS": str(art), "MODELPORT_DEVICE": device}
        proc = run(
            env, "-o", f"tflite.threads={threads}", "bench", "tflite", "onnx", "--runs", "10", "--warmup", "2", *LIGHT_BENCH
        )
        assert proc.returncode == 0, proc.stderr
        bundles[device] = root / f"{device}.tar.gz"
        proc = run(env, "bundle", "export", "--out", str(bundles[device]))
        assert proc.returncode == 0, proc.stderr
    return root, bundles, test_env


def test_merged_report_keeps_every_device_and_compares_speed_within_one(
    two_machines: tuple[Path, dict[str, Path], dict[str, str]],
) -> None:
    root, bundles, env = two_machines
    merged = root / "merged"
    proc = run(
        {**env, "MODELPORT_ARTIFACTS": str(merged)}, "report", "--merge", str(bundles["box-a"]), "--merge", str(bundles["box-b"])
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((merged / "report" / "results.json").read_text())
    rows = {(r["device_key"], r["key"]): r for r in report["results"]}
    assert sorted(rows) == [("box-a", "onnx"), ("box-a", "tflite"), ("box-b", "onnx"), ("box-b", "tflite")]
    assert rows[("box-a", "tflite")]["settings"]["threads"] == 2 and rows[("box-b", "tflite")]["settings"]["threads"] == 1
    for device in ("box-a", "box-b"):  # each ratio is against that device's own reference
        ref, onnx = rows[(device, "tflite")], rows[(device, "onnx")]
        assert onnx["relative_speed"] == pytest.approx(ref["latency_ms"]["median"] / onnx["latency_ms"]["median"])
    assert set(report["matrix"]) == {"box-a", "box-b"}
    md = (merged / "report" / "results.md").read_text()
    assert "## Models x backends, per device" in md and "**box-a**" in md and "**box-b**" in md
    csv_head = (merged / "report" / "results.csv").read_text().splitlines()[0]
    assert csv_head.startswith("model,device_key,run_id,")
    stored = sorted(
        p.relative_to(merged / "merged").as_posix() for p in (merged / "merged").rglob("*.json") if p.name != "index.json"
    )
    assert len(stored) == 4 and all(s.split("/")[1] in ("box-a", "box-b") for s in stored)


def _result(base: BackendResult, **changes: Any) -> BackendResult:
    return base.model_copy(update=changes)


def test_measured_beats_skipped_and_newer_beats_older(two_machines: tuple[Path, dict[str, Path], dict[str, str]]) -> None:
    root, _, _ = two_machines
    ok = BackendResult.model_validate_json((root / "box-a" / "results" / "tflite.json").read_text())
    skipped_newer = _result(ok, status="skipped", reason="not here", created_utc="2999-01-01T00:00:00+00:00")
    assert merge([ok, skipped_newer]) == [ok]
    newer = _result(ok, created_utc="2999-01-01T00:00:00+00:00")
    assert merge([ok, newer]) == [newer]
    failed_newer = _result(ok, status="failed", reason="broke", created_utc="2999-01-01T00:00:00+00:00")
    assert merge([ok, failed_newer]) == [failed_newer]  # the latest measured attempt is what the report shows
    other_device = _result(ok, device_key="elsewhere")
    assert len(merge([ok, other_device])) == 2


def _rewrite(src: Path, dest: Path, edit: Callable[[tarfile.TarInfo, bytes], tuple[bytes, tarfile.TarInfo]]) -> None:
    with tarfile.open(src) as tar_in, tarfile.open(dest, "w:gz") as tar_out:
        for m in tar_in:
            data = cast(IO[bytes], tar_in.extractfile(m)).read()
            data, m = edit(m, data)
            m.size = len(data)
            tar_out.addfile(m, io.BytesIO(data))


def test_bundles_of_a_newer_schema_or_edited_are_refused_in_one_line(
    two_machines: tuple[Path, dict[str, Path], dict[str, str]], tmp_path: Path
) -> None:
    root, bundles, env = two_machines
    newer = tmp_path / "newer.tar.gz"
    _rewrite(
        bundles["box-a"],
        newer,
        lambda m, d: (d.replace(b'"modelport.bundle/1"', b'"modelport.bundle/2"'), m) if m.name == "bundle.json" else (d, m),
    )
    out = {**env, "MODELPORT_ARTIFACTS": str(tmp_path / "out")}
    line = error_line(run(out, "report", "--merge", str(newer)))
    assert str(newer) in line and "newer than this modelport reads" in line
    edited = tmp_path / "edited.tar.gz"
    _rewrite(
        bundles["box-a"],
        edited,
        lambda m, d: (d.replace(b'"box-a"', b'"box-z"'), m) if m.name.endswith("results/tflite.json") else (d, m),
    )
    line = error_line(run(out, "report", "--merge", str(edited)))
    assert "does not match its sha256" in line and not (tmp_path / "out" / "report").exists()
    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        info = tarfile.TarInfo("bundle.json")
        data = b'{"schema": "someone.else/1"}'
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert "not a modelport bundle" in error_line(run(out, "report", "--merge", str(foreign)))
