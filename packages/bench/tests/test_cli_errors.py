"""Every OS error, MemoryError and bad result file is one `error:` line from the CLI, never a traceback."""

import errno
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import error_line, run
from modelport.bench.report import load_results
from modelport.common import artifacts
from modelport.common.artifacts import ArtifactStore
from modelport.common.cli import hoist_overrides, main
from modelport.common.errors import InputError
from modelport.common.results import write_result
from modelport.common.schema import BackendResult, TopK


@pytest.fixture
def art(tmp_path: Path) -> Path:
    """An artifacts folder with one ok result: enough for `modelport report` to write."""
    store = ArtifactStore(tmp_path / "art")
    r = BackendResult(
        key="onnx",
        backend="onnxruntime",
        precision="fp32",
        name="ONNX FP32",
        env="t",
        topk=[TopK(image="a.jpg", indices=[0], labels=["a"], scores=[1.0])],
    )
    write_result(store, r, np.ones((1, 4), np.float32))
    return store.root


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _raise(exc: Exception) -> Callable[..., None]:
    def f(*a: object, **k: object) -> None:
        raise exc

    return f


@pytest.mark.parametrize(
    "exc, expected",
    [
        (OSError(errno.EROFS, "Read-only file system", "/ro/report"), "/ro/report: read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied", "/x/report"), "/x/report: permission denied"),
    ],
)
def test_a_folder_that_cannot_be_written(
    art: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: OSError, expected: str
) -> None:
    monkeypatch.setattr(artifacts.tempfile, "mkstemp", _raise(exc))  # type: ignore[attr-defined]  # the tempfile artifacts calls
    assert main(["-a", str(art), "report"]) == 1
    assert expected in one_error(capsys)


def test_disk_full_names_the_file(art: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(
        artifacts.os,  # type: ignore[attr-defined]  # the os artifacts calls
        "fsync",
        _raise(OSError(errno.ENOSPC, "No space left on device")),
    )
    assert main(["-a", str(art), "report"]) == 1
    line = one_error(capsys)
    assert "no space left on the device" in line and str(art / "report") in line
    assert not list((art / "report").rglob("*partial*"))  # no temp file left behind


def test_memory_error(art: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from modelport.bench import report

    monkeypatch.setattr(report, "build", _raise(MemoryError()))
    assert main(["-a", str(art), "report"]) == 1
    assert "out of memory" in one_error(capsys)


def test_a_file_where_the_artifacts_folder_should_be(test_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = run(test_env, "-a", str(tmp_path / "file" / "art"), "bench", "onnx")
    assert proc.returncode == 1 and "a file is where a folder is expected" in error_line(proc)


@pytest.mark.parametrize("content, message", [(b"[]", "not a JSON object"), (b"\xff\xfe{", "not UTF-8")])
def test_a_result_that_is_not_a_json_object(art: Path, test_env: dict[str, str], content: bytes, message: str) -> None:
    (art / "results" / "bad.json").write_bytes(content)
    proc = run(test_env, "-a", str(art), "report")
    assert proc.returncode == 2 and message in error_line(proc) and "Traceback" not in proc.stderr


def test_overrides_after_the_subcommand() -> None:
    assert hoist_overrides(["-a", "x", "bench", "onnx", "-o", "bench.runs=5", "--set=bench.warmup=1", "-obench.runs=6"]) == [
        "-a",
        "x",
        "-o",
        "bench.runs=5",
        "--set=bench.warmup=1",
        "-obench.runs=6",
        "bench",
        "onnx",
    ]
    assert hoist_overrides(["-o", "a.b=1", "report"]) == ["-o", "a.b=1", "report"]


def test_an_override_error_blames_the_override(art: Path, test_env: dict[str, str]) -> None:
    proc = run(test_env, "-a", str(art), "report", "-o", "bench.runs=abc")
    line = error_line(proc)
    assert line.startswith("error: override -o bench.runs=abc: bench.runs") and "modelport.toml" not in line


def test_result_schema_version_is_checked(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.json").write_text(json.dumps({"schema": "modelport.result/0", "key": "x"}))
    with pytest.raises(InputError, match="result schema 'modelport.result/0' is not 'modelport.result/1'"):
        load_results(ArtifactStore(tmp_path))
