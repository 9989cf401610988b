"""Every artifact records the chain back to the source model it was made from; nothing mixes two sources."""

import json
from pathlib import Path
from typing import Any, cast

import pytest

from modelport.common.artifacts import ArtifactStore
from modelport.common.errors import InputError
from modelport.common.reference import REFERENCE


def make(store: ArtifactStore, out: str, inputs: dict[str, Path], content: str) -> Path:
    with store.produce(out, inputs=inputs, tool="t", tool_version="1") as job:
        if not job.cached:
            job.tmp().write_text(content)
    return store.path(out)


def fetch(store: ArtifactStore, tmp_path: Path, content: str) -> Path:
    """What `fetch` does: the source model from a file outside the store."""
    src = tmp_path / f"user-{content}.tflite"
    src.write_text(content)
    return make(store, "source/model.tflite", {"model": src}, content)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "art")


def test_manifests_record_the_chain_to_the_source(store: ArtifactStore, tmp_path: Path) -> None:
    source = fetch(store, tmp_path, "A")
    onnx = make(store, "onnx/model.onnx", {"tflite": source}, "onnx-A")
    int8 = make(store, "onnx/model.int8.onnx", {"onnx": onnx}, "int8-A")
    chain = store.lineage(int8)
    assert [c["path"] for c in chain] == ["onnx/model.int8.onnx", "onnx/model.onnx", "source/model.tflite"]
    assert chain[-1]["sha256"] == cast(dict[str, Any], store.current_source())["sha256"]
    m = json.loads(store.manifest_path(int8).read_text())
    assert m["peak_rss_mb"] > 0 and m["seconds"] >= 0


def test_an_artifact_of_another_source_is_refused_naming_it_and_the_step(store: ArtifactStore, tmp_path: Path) -> None:
    onnx = make(store, "onnx/model.onnx", {"tflite": fetch(store, tmp_path, "A")}, "onnx-A")
    store.check_source(onnx, rerun="modelport convert onnx")  # same source: fine
    fetch(store, tmp_path, "B")
    with pytest.raises(InputError, match=r"model.onnx: was made from another source model .*run `modelport convert onnx`"):
        store.check_source(onnx, rerun="modelport convert onnx")


def test_a_step_refuses_inputs_made_from_another_source(store: ArtifactStore, tmp_path: Path) -> None:
    onnx = make(store, "onnx/model.onnx", {"tflite": fetch(store, tmp_path, "A")}, "onnx-A")
    fetch(store, tmp_path, "B")
    with pytest.raises(InputError, match=r"onnx/model.onnx: was made from another source model"):
        make(store, "onnx/model.int8.onnx", {"onnx": onnx}, "int8")
    assert not store.path("onnx/model.int8.onnx").exists()


def test_a_step_refuses_inputs_from_two_sources(store: ArtifactStore, tmp_path: Path) -> None:
    a = make(store, "onnx/model.onnx", {"tflite": fetch(store, tmp_path, "A")}, "onnx-A")
    b = make(store, REFERENCE, {"tflite": fetch(store, tmp_path, "B")}, "ref-B")
    with pytest.raises(InputError, match="inputs were made from different source models"):
        make(store, "onnx/model.int8.onnx", {"onnx": a, "reference": b}, "int8")


def test_a_swapped_input_is_named_before_the_step_runs(store: ArtifactStore, tmp_path: Path) -> None:
    onnx = make(store, "onnx/model.onnx", {"tflite": fetch(store, tmp_path, "A")}, "onnx-A")
    onnx.write_text("someone else's model")
    with pytest.raises(InputError, match=r"onnx/model.onnx: changed since the step that made it"):
        make(store, "ncnn/model.param", {"onnx": onnx}, "param")


def test_peak_memory_is_the_steps_own(store: ArtifactStore, tmp_path: Path) -> None:
    """The high-water mark is reset at each step's start: a big earlier allocation does not count."""
    from modelport.common.memory import peak_rss_mb, reset_peak

    big = bytearray(300 * 1024 * 1024)
    big[::4096] = b"x" * len(big[::4096])  # touch every page
    before = peak_rss_mb()
    del big
    reset_peak()
    src = fetch(store, tmp_path, "A")
    m = json.loads(store.manifest_path(src).read_text())
    assert m["peak_rss_mb"] < before - 200


def test_a_model_made_from_a_replaced_upstream_is_not_current(store: ArtifactStore, tmp_path: Path) -> None:
    """`convert onnx --force` made other bytes: the INT8 model made from the previous onnx/model.onnx is stale."""
    source = fetch(store, tmp_path, "A")
    onnx = make(store, "onnx/model.onnx", {"tflite": source}, "onnx-A")
    int8 = make(store, "onnx/model.int8.onnx", {"onnx": onnx}, "int8-A")
    assert store.check_current(int8, rerun="modelport convert onnx-int8")[-1]["path"] == "source/model.tflite"
    with store.produce("onnx/model.onnx", inputs={"tflite": source}, tool="t", tool_version="1", force=True) as job:
        job.tmp().write_text("onnx-A, by the other converter")
    with pytest.raises(
        InputError,
        match=r"model.int8.onnx: was made from onnx/model.onnx as it was before \(sha256 \w{12}, now \w{12}\): "
        r"run `modelport convert onnx-int8`",
    ):
        store.check_current(int8, rerun="modelport convert onnx-int8")


def test_a_stale_link_further_up_names_its_own_step_first(store: ArtifactStore, tmp_path: Path) -> None:
    """An eval image changed: the reference is stale, so rerunning only the INT8 step would say 'up to date'."""
    image = tmp_path / "img.png"
    image.write_text("pixels")
    source = fetch(store, tmp_path, "A")
    ref = make(store, REFERENCE, {"model": source, "image/0000-img.png": image}, "ref")
    int8 = make(store, "onnx/model.int8.onnx", {"onnx": source, "reference": ref}, "int8")
    store.check_current(int8, rerun="modelport convert onnx-int8")
    image.write_text("other pixels")
    with pytest.raises(
        InputError,
        match=r"reference.npy: was made from .*img.png as it was before .*: rerun the step that makes "
        r"source/reference.npy, then `modelport convert onnx-int8`",
    ):
        store.check_current(int8, rerun="modelport convert onnx-int8")
    image.unlink()  # gone (the artifacts folder on another machine): not held against it
    store.check_current(int8, rerun="modelport convert onnx-int8")


def test_an_input_that_is_gone_is_not_held_against_a_model(store: ArtifactStore, tmp_path: Path) -> None:
    """A deleted reference: bench still times the model and says the agreement is missing (test_trust.py)."""
    source = fetch(store, tmp_path, "A")
    ref = make(store, REFERENCE, {"model": source}, "ref")
    onnx = make(store, "onnx/model.onnx", {"tflite": source, "reference": ref}, "onnx-A")
    ref.unlink()
    store.check_current(onnx, rerun="modelport convert onnx")
