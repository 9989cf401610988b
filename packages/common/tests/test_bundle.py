"""A bundle from another machine is untrusted: crafted ones are refused in one line and write nothing outside."""

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from modelport.common import bundle
from modelport.common.bundle import read_source
from modelport.common.errors import InputError
from modelport.common.results import read_result
from modelport.common.safe_names import inside, safe_relpath
from modelport.common.schema import BackendResult


def result_json(**changes: Any) -> bytes:
    r = BackendResult(key="onnx", backend="onnxruntime", precision="fp32", name="ONNX FP32", env="t", status="skipped")
    data = json.loads(r.dump()) | changes
    return json.dumps(data).encode()


def craft(path: Path, members: dict[str, bytes], index: dict[str, dict[str, Any]] | None = None) -> Path:
    """A .tar.gz with bundle.json first, then ``members`` as given (names used verbatim, no normalising)."""
    files = {
        name.removeprefix("artifacts/"): {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in members.items()
    }
    if index is not None:
        files = index
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (
            {"bundle.json": json.dumps({"schema": "modelport.bundle/1", "files": files}).encode()} | members
        ).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


Farm = tuple[Path, Path, Path]  # the bundle's parent folder, its temp folder, the victim file


@pytest.fixture
def farm(tmp_path: Path) -> Farm:
    """A bundle's temp folder, and a victim file beside it that nothing may touch."""
    work = tmp_path / "work"
    work.mkdir()
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("untouched")
    return tmp_path, work, victim


def untouched(tmp_path: Path, victim: Path) -> None:
    assert victim.read_text() == "untouched"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]
    assert not list(tmp_path.rglob("esc*"))


def test_a_good_bundle_is_read(farm: Farm) -> None:
    tmp_path, work, _ = farm
    src = read_source(craft(tmp_path / "b.tar.gz", {"artifacts/results/onnx.json": result_json()}), work)
    assert [r.key for r in src.results] == ["onnx"]


@pytest.mark.parametrize(
    "name",
    [
        "artifacts//{victim}",  # resolves to the absolute path: the `..`/leading-'/' checks missed it
        "artifacts/../../elsewhere/victim.txt",
        "artifacts/results/../../../elsewhere/victim.txt",
        "/{victim}",
        "artifacts/./results/x.json",
        "artifacts/.hidden",
    ],
)
@pytest.mark.parametrize("sha_ok", [True, False])
def test_a_member_name_that_leaves_its_folder_is_refused_before_anything_lands(farm: Farm, name: str, sha_ok: bool) -> None:
    tmp_path, work, victim = farm
    name = name.format(victim=str(victim).lstrip("/"))
    payload = b"overwritten"
    members = {"artifacts/results/onnx.json": result_json(), name: payload}
    index = None
    if not sha_ok:
        index = {
            "results/onnx.json": {"sha256": hashlib.sha256(result_json()).hexdigest(), "size": len(result_json())},
            name.removeprefix("artifacts/"): {"sha256": "0" * 64, "size": len(payload)},
        }
    path = craft(tmp_path / "b.tar.gz", members, index)
    with pytest.raises(InputError, match="not a safe relative path|not a plain file under artifacts"):
        read_source(path, work)
    untouched(tmp_path, victim)


def test_a_wrong_sha256_lands_nothing(farm: Farm) -> None:
    tmp_path, work, victim = farm
    data = result_json()
    index = {"results/onnx.json": {"sha256": hashlib.sha256(b"other").hexdigest(), "size": len(data)}}
    with pytest.raises(InputError, match="does not match its sha256"):
        read_source(craft(tmp_path / "b.tar.gz", {"artifacts/results/onnx.json": data}, index), work)
    assert not list(work.rglob("*.json")) and not list(work.rglob("tmp*"))  # not even a partial copy
    untouched(tmp_path, victim)


def test_an_oversized_member_is_refused_before_it_is_read(farm: Farm, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path, work, _ = farm
    monkeypatch.setattr(bundle, "MAX_MEMBER_BYTES", 1000)
    big = {"artifacts/results/onnx.json": result_json(), "artifacts/onnx/model.onnx": b"x" * 1001}
    with pytest.raises(InputError, match="more than 1000"):
        read_source(craft(tmp_path / "b.tar.gz", big), work)
    assert not list(work.rglob("model.onnx"))


def test_a_member_larger_than_its_index_says_is_refused(farm: Farm) -> None:
    tmp_path, work, _ = farm
    data = result_json()
    index = {"results/onnx.json": {"sha256": hashlib.sha256(data).hexdigest(), "size": 10}}
    with pytest.raises(InputError, match="not the size its index says"):
        read_source(craft(tmp_path / "b.tar.gz", {"artifacts/results/onnx.json": data}, index), work)


def test_too_many_members_or_bytes_are_refused(farm: Farm, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path, work, _ = farm
    members = {"artifacts/results/onnx.json": result_json()} | {f"artifacts/depth/{i}.json": b"{}" for i in range(5)}
    monkeypatch.setattr(bundle, "MAX_MEMBERS", 4)
    with pytest.raises(InputError, match="lists 6 files, more than 4"):
        read_source(craft(tmp_path / "a.tar.gz", members), work)
    monkeypatch.setattr(bundle, "MAX_MEMBERS", 100)
    monkeypatch.setattr(bundle, "MAX_TOTAL_BYTES", 100)
    with pytest.raises(InputError, match="more than 100"):
        read_source(craft(tmp_path / "b.tar.gz", members), work)
    monkeypatch.setattr(bundle, "MAX_TOTAL_BYTES", 10_000)
    # members beyond the index are refused even when the index itself is small
    small_index = {"results/onnx.json": {"sha256": hashlib.sha256(result_json()).hexdigest(), "size": len(result_json())}}
    two = {"artifacts/results/onnx.json": result_json(), "artifacts/depth/0.json": b"{}"}
    with pytest.raises(InputError, match="more members than its 1 listed"):
        read_source(craft(tmp_path / "c.tar.gz", two, small_index), work)


@pytest.mark.parametrize(
    "field, value",
    [("key", "../../../../elsewhere/esc"), ("key", "/elsewhere/esc"), ("key", "a/b"), ("device_key", "../x"), ("model", "a\nb")],
)
def test_a_result_with_a_key_that_is_no_key_is_refused_when_read(farm: Farm, field: str, value: str) -> None:
    tmp_path, work, victim = farm
    path = craft(tmp_path / "b.tar.gz", {"artifacts/results/onnx.json": result_json(**{field: value})})
    with pytest.raises(InputError, match=f"invalid result: {field}: "):
        read_source(path, work)
    untouched(tmp_path, victim)


@pytest.mark.parametrize("name", ["", "a//b", "/a", "a/../b", "..", ".", "a/", "a\\b", "a\x00b", "results/.x", 3, None])
def test_unsafe_relative_names_are_refused(tmp_path: Path, name: Any) -> None:
    with pytest.raises(InputError, match="not a safe relative path"):
        safe_relpath(name, "name", "where")
    with pytest.raises(InputError):
        inside(tmp_path, name, "name")


def test_a_symlink_inside_the_root_cannot_lead_out(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(InputError, match="leads outside"):
        inside(tmp_path / "root", "link/x.json", "name")
    assert inside(tmp_path / "root", "results/onnx-int8.json", "name") == tmp_path / "root" / "results" / "onnx-int8.json"


def test_keys_are_checked_on_every_read(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    p.write_bytes(result_json(key="ONNX"))
    with pytest.raises(InputError, match="key 'ONNX' is not lowercase"):
        read_result(p)


def test_export_refuses_a_name_no_merge_would_accept(tmp_path: Path) -> None:
    from modelport.common.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path / "art")
    (store.root / "results").mkdir(parents=True)
    (store.root / "results" / "onnx.json").write_bytes(result_json())
    (store.root / "results" / "a b.json").write_bytes(result_json())
    with pytest.raises(InputError, match="artifact name 'results/a b.json' is not a safe relative path"):
        bundle.export(store, tmp_path / "b.tar.gz")
    assert not list(tmp_path.glob("*.tar.gz*"))
