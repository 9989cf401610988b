import json
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from modelport.common.artifacts import ArtifactStore, Job
from modelport.common.errors import InputError


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    s = ArtifactStore(tmp_path / "art")
    (tmp_path / "in.txt").write_text("v1")
    return s


def produce(
    store: ArtifactStore,
    src: Path,
    options: dict[str, Any] | None = None,
    force: bool = False,
    content: str = "out",
    fail: bool = False,
) -> Job:
    with store.produce("x/out.bin", inputs={"src": src}, tool="t", tool_version="1", options=options or {}, force=force) as job:
        if not job.cached:
            job.tmp().write_text(content)
            if fail:
                raise RuntimeError("verification failed")
    return job


def test_manifest_and_cache_hit(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    assert not produce(store, src).cached
    m = json.loads((store.path("x/out.bin.manifest.json")).read_text())
    assert m["inputs"]["src"]["sha256"] and m["size_bytes"] == 3 and m["tool"] == {"name": "t", "version": "1"}
    assert produce(store, src).cached
    assert not produce(store, src, force=True).cached


def test_changed_input_or_option_redoes(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    produce(store, src)
    assert not produce(store, src, options={"a": 1}).cached
    src.write_text("v2")
    assert not produce(store, src, options={"a": 1}).cached


def test_modified_artifact_is_not_trusted(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    produce(store, src)
    store.path("x/out.bin").write_text("tampered")
    assert not produce(store, src).cached


def test_failed_step_writes_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        produce(store, tmp_path / "in.txt", fail=True)
    assert list(store.path("x").iterdir()) == []


def test_failed_redo_keeps_previous_good_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    produce(store, src, content="good")
    with pytest.raises(RuntimeError):
        produce(store, src, force=True, content="bad", fail=True)
    assert store.path("x/out.bin").read_text() == "good"
    assert sorted(p.name for p in store.path("x").iterdir()) == ["out.bin", "out.bin.manifest.json"]


def test_missing_input_is_a_clear_error(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input 'src' does not exist"):
        produce(store, tmp_path / "nope")


def _hold_lock(root: Path, held: threading.Event, seconds: float) -> None:
    with ArtifactStore(root).lock():
        held.set()
        time.sleep(seconds)


def test_second_writer_waits_for_the_lock(tmp_path: Path) -> None:
    root = tmp_path / "art"
    ArtifactStore(root).root.mkdir()
    mp = multiprocessing.get_context("spawn")
    held = mp.Event()
    p = mp.Process(target=_hold_lock, args=(root, held, 1.0))
    p.start()
    assert held.wait(60)
    assert (root / ".lock").read_text().startswith("pid ")
    t0 = time.monotonic()
    with ArtifactStore(root).lock():
        waited = time.monotonic() - t0
    p.join()
    assert waited > 0.3


def test_up_to_date_is_said_once_per_process_not_after_building_it(
    store: ArtifactStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.txt"
    produce(store, src)  # made here: the later steps that reuse it say nothing more about it
    assert produce(store, src).cached and produce(store, src).cached
    assert "up to date" not in "".join(capsys.readouterr())
    again = ArtifactStore(store.root)  # the next run (a new process) finds it current and says so, once
    assert produce(again, src).cached and produce(again, src).cached
    assert "".join(capsys.readouterr()).count("up to date") == 1


def test_a_file_replaced_with_its_size_and_mtime_kept_is_hashed_again(tmp_path: Path) -> None:
    """cp -p / rsync -t / a restore: same path, same size, same mtime, other bytes (another inode)."""
    import os

    from modelport.common.artifacts import sha256_file

    path, other = tmp_path / "img.png", tmp_path / "new.png"
    path.write_bytes(b"A" * 64)
    before = sha256_file(path)
    st = path.stat()
    other.write_bytes(b"B" * 64)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    assert sha256_file(path) != before


def test_two_inputs_of_one_name_in_different_folders_are_both_in_the_key(store: ArtifactStore, tmp_path: Path) -> None:
    """A list file may name a/photo.png and b/photo.png: a change to either redoes the step."""
    from modelport.common.artifacts import file_inputs

    files = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        files.append(tmp_path / d / "photo.png")
        files[-1].write_text(d)

    def step() -> Job:
        with store.produce("x/out.bin", inputs=file_inputs("image", files), tool="t", tool_version="1") as job:
            if not job.cached:
                job.tmp().write_text("out")
        return job

    assert not step().cached and step().cached
    files[0].write_text("a, other bytes")
    assert not step().cached


@pytest.mark.parametrize("damage", [b"[]", b'"x"', b"\xff\xfe not utf-8", b'{"sha256": 5}', b'{"sha256": "ab", "lineage": 3}'])
def test_a_damaged_manifest_is_never_trusted_and_never_a_crash(store: ArtifactStore, tmp_path: Path, damage: bytes) -> None:
    src = tmp_path / "in.txt"
    produce(store, src)
    out = store.path("x/out.bin")
    store.manifest_path(out).write_bytes(damage)
    assert store.read_manifest("x/out.bin") is None
    assert store.lineage(out) == []
    with pytest.raises(InputError, match=r"out.bin: changed since the step that made it"):
        store.check_current(out, rerun="modelport convert x")
    assert not produce(store, src).cached  # remade, and its manifest with it
    assert cast(dict[str, Any], store.read_manifest("x/out.bin"))["sha256"]


@pytest.mark.parametrize("damage", [b"[]", b"\xff not utf-8", b'{"reason": 3, "agreement": [1]}', b'{"agreement": {"x": 1}}'])
def test_a_damaged_failure_record_still_says_failed_and_never_crashes(
    store: ArtifactStore, tmp_path: Path, damage: bytes
) -> None:
    out = store.path("x/out.bin")
    out.parent.mkdir(parents=True)
    store.failure_path(out).write_bytes(damage)
    assert cast(str, store.failure(out)).startswith("failed")
    assert store.failure_agreement(out) is None
