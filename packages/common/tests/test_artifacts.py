import json
import multiprocessing
import time

import pytest

from modelport.common.artifacts import ArtifactStore
from modelport.common.errors import InputError


@pytest.fixture
def store(tmp_path):
    s = ArtifactStore(tmp_path / "art")
    (tmp_path / "in.txt").write_text("v1")
    return s


def produce(store, src, options=None, force=False, content="out", fail=False):
    with store.produce("x/out.bin", inputs={"src": src}, tool="t", tool_version="1", options=options or {}, force=force) as job:
        if not job.cached:
            job.tmp().write_text(content)
            if fail:
                raise RuntimeError("verification failed")
    return job


def test_manifest_and_cache_hit(store, tmp_path):
    src = tmp_path / "in.txt"
    assert not produce(store, src).cached
    m = json.loads((store.path("x/out.bin.manifest.json")).read_text())
    assert m["inputs"]["src"]["sha256"] and m["size_bytes"] == 3 and m["tool"] == {"name": "t", "version": "1"}
    assert produce(store, src).cached
    assert not produce(store, src, force=True).cached


def test_changed_input_or_option_redoes(store, tmp_path):
    src = tmp_path / "in.txt"
    produce(store, src)
    assert not produce(store, src, options={"a": 1}).cached
    src.write_text("v2")
    assert not produce(store, src, options={"a": 1}).cached


def test_modified_artifact_is_not_trusted(store, tmp_path):
    src = tmp_path / "in.txt"
    produce(store, src)
    store.path("x/out.bin").write_text("tampered")
    assert not produce(store, src).cached


def test_failed_step_writes_nothing(store, tmp_path):
    with pytest.raises(RuntimeError):
        produce(store, tmp_path / "in.txt", fail=True)
    assert list(store.path("x").iterdir()) == []


def test_failed_redo_keeps_previous_good_artifact(store, tmp_path):
    src = tmp_path / "in.txt"
    produce(store, src, content="good")
    with pytest.raises(RuntimeError):
        produce(store, src, force=True, content="bad", fail=True)
    assert store.path("x/out.bin").read_text() == "good"
    assert sorted(p.name for p in store.path("x").iterdir()) == ["out.bin", "out.bin.manifest.json"]


def test_missing_input_is_a_clear_error(store, tmp_path):
    with pytest.raises(InputError, match="input 'src' does not exist"):
        produce(store, tmp_path / "nope")


def _hold_lock(root, held, seconds):
    with ArtifactStore(root).lock():
        held.set()
        time.sleep(seconds)


def test_second_writer_waits_for_the_lock(tmp_path):
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


def test_up_to_date_is_said_once_per_process_not_after_building_it(store, tmp_path, capsys):
    src = tmp_path / "in.txt"
    produce(store, src)  # made here: the later steps that reuse it say nothing more about it
    assert produce(store, src).cached and produce(store, src).cached
    assert "up to date" not in "".join(capsys.readouterr())
    again = ArtifactStore(store.root)  # the next run (a new process) finds it current and says so, once
    assert produce(again, src).cached and produce(again, src).cached
    assert "".join(capsys.readouterr()).count("up to date") == 1
