"""results/<key>.json + .npy: validated, written as a pair, never losing a good result."""

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from modelport.common.artifacts import ArtifactStore
from modelport.common.errors import InputError, ModelportError
from modelport.common.results import read_outputs, read_result, write_result
from modelport.common.schema import BackendResult, TopK


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "art")


def result(status: Literal["ok", "skipped", "failed"] = "ok", reason: str | None = None, images: int = 2) -> BackendResult:
    r = BackendResult(
        key="onnx", backend="onnxruntime", precision="fp32", name="ONNX FP32", env="t", status=status, reason=reason
    )
    if status == "ok":
        r.topk = [TopK(image=f"{i}.jpg", indices=[0], labels=["a"], scores=[1.0]) for i in range(images)]
    return r


def outputs(value: float = 1.0) -> np.ndarray:
    return np.full((2, 4), value, np.float32)


def test_pair_records_and_checks_the_npy(store: ArtifactStore) -> None:
    path = write_result(store, result(), outputs())
    assert read_result(path).outputs_sha256
    np.testing.assert_array_equal(read_outputs(path), outputs())
    np.save(path.with_suffix(".npy"), outputs(2.0))  # a half-finished later write
    with pytest.raises(InputError, match="belong to another run"):
        read_outputs(path)


def test_skipped_never_replaces_ok(store: ArtifactStore) -> None:
    path = write_result(store, result(), outputs())
    write_result(store, result("skipped", "toolchain missing here"))
    assert read_result(path).status == "ok" and path.with_suffix(".npy").is_file()


def test_failed_replaces_ok_but_keeps_it_as_last_ok(store: ArtifactStore) -> None:
    path = write_result(store, result(), outputs())
    good = read_result(path)
    write_result(store, result("failed", "bad option"))
    assert read_result(path).status == "failed" and not path.with_suffix(".npy").exists()
    kept = store.path("results/last-ok/onnx.json")
    assert read_result(kept).created_utc == good.created_utc
    np.testing.assert_array_equal(read_outputs(kept), outputs())
    write_result(store, result(), outputs())  # a new good result supersedes the kept one
    assert not kept.exists()


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((2, 4), np.nan, np.float32), "NaN"),
        (np.ones((3, 4), np.float32), "shape"),
        (None, "without its raw outputs"),
    ],
)
def test_an_invalid_result_replaces_nothing(store: ArtifactStore, bad: np.ndarray, message: str) -> None:
    path = write_result(store, result(), outputs())
    before = path.read_bytes()
    with pytest.raises(ModelportError, match=message):
        write_result(store, result(), bad)
    assert path.read_bytes() == before


@pytest.mark.parametrize("field, value", [("load_ms", float("nan")), ("load_avg", {"before": float("inf")})])
def test_a_non_finite_number_is_never_written(store: ArtifactStore, field: str, value: object) -> None:
    """JSON has no NaN or Infinity: a result holding one is refused naming where, not written as null or Infinity."""
    path = write_result(store, result(), outputs())
    before = path.read_bytes()
    bad = result()
    setattr(bad, field, value)
    with pytest.raises(ModelportError, match=rf"results/onnx.json: refusing to write an invalid result .*\$\.{field}"):
        write_result(store, bad, outputs())
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{nope", "not valid JSON"),
    ],
)
def test_result_files_that_are_not_a_json_object_in_utf8(store: ArtifactStore, content: bytes, message: str) -> None:
    path = store.path("results/x.json")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_result(path)


def test_a_bom_in_a_result_is_accepted(store: ArtifactStore) -> None:
    path = write_result(store, result(), outputs())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_result(path).key == "onnx"
    assert json.loads(path.read_bytes()[3:])["key"] == "onnx"
