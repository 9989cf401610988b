"""The report as a trust boundary: merged names and fields cannot write outside, break the page or inject
Markdown; `--merge` takes several paths; a failed write keeps the previous report whole."""

import errno
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import cli, error_line
from modelport.bench.merge import store_merged
from modelport.common import artifacts
from modelport.common.artifacts import ArtifactStore
from modelport.common.bundle import Source
from modelport.common.errors import InputError
from modelport.common.results import write_result
from modelport.common.schema import Agreement, BackendResult, DetectAgreement, LatencyStats, TopK

CRAFTED = "<!--<script>alert(1)</script> | `x` **y** [z](javascript:0) <img src=x>"


def _ok(key: str = "tflite", **changes: Any) -> BackendResult:
    lat = LatencyStats(warmup=1, runs=3, min=1.0, median=2.0, mean=2.0, p90=3.0, p99=3.0, max=3.0, std=0.1, fps=500.0)
    r = BackendResult(
        key=key,
        backend="tflite",
        precision="fp32",
        name="TFLite",
        env="t",
        latency_ms=lat,
        topk=[TopK(image="a.jpg", indices=[0], labels=["a"], scores=[1.0])],
    )
    return r.model_copy(update=changes)


def bundle_of(path: Path, *results: BackendResult) -> Path:
    """A bundle as `bundle export` writes one, holding ``results`` (crafted in the test)."""
    members = {f"results/r{i}.json": r.dump().encode() for i, r in enumerate(results)}  # a safe name, whatever the key
    files = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members.items()}
    with tarfile.open(path, "w:gz") as tar:
        index = json.dumps({"schema": "modelport.bundle/1", "files": files}).encode()
        for name, data in {"bundle.json": index, **{f"artifacts/{n}": d for n, d in members.items()}}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def crafted_artifacts(root: Path) -> Path:
    """An artifacts folder whose results carry markup in every field a label, model or reason reaches."""
    store = ArtifactStore(root)
    ok = _ok(name=f"TFLite {CRAFTED}", model=CRAFTED, notes=[CRAFTED])
    ok.topk = [TopK(image="a.jpg", indices=[0], labels=[CRAFTED], scores=[1.0])]
    write_result(store, ok, np.ones((1, 4), np.float32))
    failed = BackendResult(
        key="onnx", backend="onnxruntime", precision="fp32", name="ONNX", env="t", status="failed", reason=CRAFTED
    )
    write_result(store, failed)
    return store.root


@pytest.fixture
def art(tmp_path: Path) -> Path:
    return crafted_artifacts(tmp_path / "art")


def _embedded(page: str) -> str:
    return page.split('<script id="report-data" type="application/json">')[1].split("</script>")[0]


def test_markup_in_merged_fields_cannot_blank_the_page_or_reach_results_md(art: Path) -> None:
    proc = cli({}, "-a", str(art), "report")
    assert "1 of 2 rows failed" in error_line(proc)
    page = (art / "report" / "results.html").read_text()
    data = _embedded(page)
    assert "<!--" not in data and "<script" not in data.lower() and "<" not in data
    report = json.loads(data)
    assert {r["reason"] for r in report["results"] if r["status"] == "failed"} == {CRAFTED}  # the same text, escaped
    assert page.count("<script") == 2 and '<table id="results"' in page  # the data and the page's own script
    md = (art / "report" / "results.md").read_text()
    assert not re.search(r"(?<!\\)<", md) and "<" in md  # no raw HTML: every angle bracket escaped
    table = [line for line in md.splitlines() if line.startswith("| ") and "ONNX" in line]
    header = next(line for line in md.splitlines() if line.startswith("| # |"))
    cells = re.compile(r"(?<!\\)\|")
    assert len(table) == 1 and len(cells.findall(table[0])) == len(cells.findall(header))  # no extra cell


def test_markup_in_a_detectors_labels_and_class_names_stays_text_in_the_boxes_and_ap_table(tmp_path: Path) -> None:
    label = CRAFTED + " $x^{2$"  # an unbalanced "$": mathtext would refuse to draw it
    drawn = {"box": [1.0, 2.0, 30.0, 20.0], "cls": 4, "label": label, "score": 0.9}
    detect = DetectAgreement.model_validate(
        {"source_boxes": 1, "row_boxes": 1, "matched": 1, "precision": 1.0, "recall": 1.0, "f1": 1.0, "mean_iou": 1.0,
         "score_drift_mean": 0.0, "score_drift_max": 0.0, "map": 0.5, "ap50": 0.7,
         "class_ap": [{"name": label, "instances": 3, "ap": 0.5}],
         "photo": {"image": CRAFTED, "width": 64, "height": 48, "boxes": [drawn], "source": [drawn]}}
    )  # fmt: skip
    agreement = Agreement(images=1, top1=1.0, top5_overlap=1.0, cosine_min=1.0, cosine_mean=1.0, max_abs_diff=0.0, mse=0.0)
    store = ArtifactStore(tmp_path / "art")
    write_result(store, _ok(agreement=agreement.model_copy(update={"detect": detect})), np.ones((1, 4), np.float32))
    ok = cli({}, "-a", str(store.root), "report")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = store.root / "report"
    assert (report / "boxes.png").stat().st_size > 0
    page = (report / "results.html").read_text()
    assert "<" not in _embedded(page) and page.count("<script") == 2
    md = (report / "results.md").read_text()
    table = md[md.index("| class | instances |") :].split("\n\n")[0]
    assert "\\<\\!--\\<script\\>" in table and not re.search(r"(?<!\\)<", md)  # escaped text, no raw HTML
    assert "&lt;!--&lt;script&gt;alert(1)&lt;/script&gt;" in page.split("Detector boxes")[1]


def test_markdown_escapes_read_back_as_the_text_in_html() -> None:
    from modelport.bench.report_html import _inline
    from modelport.bench.report_md import md_code, md_text

    text = md_text(CRAFTED) + " " + md_code("a<b>.jpg")
    assert "\\" not in _inline(text, Path("."))
    assert _inline(text, Path(".")).startswith("&lt;!--&lt;script&gt;") and "<code>a&lt;b&gt;.jpg</code>" in _inline(
        text, Path(".")
    )


def test_a_merged_key_that_leaves_the_merged_folder_writes_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    (store.root / "merged").mkdir(parents=True)
    (store.root / "merged" / "index.json").write_text("{}")  # the last merge: kept on refusal
    escaping = _ok().model_copy(update={"key": "../../../../elsewhere/esc"})  # as if no reader had checked it
    with pytest.raises(InputError, match="not a safe relative path"):
        store_merged(store, [escaping], [Source("x", [escaping], tmp_path)])
    assert not list(tmp_path.rglob("esc*")) and (store.root / "merged" / "index.json").read_text() == "{}"


def test_report_merge_refuses_a_bundle_whose_key_is_a_path(tmp_path: Path) -> None:
    # relative, so that even a regressed reader writes only inside tmp_path (absolute keys: test_bundle.py)
    bad = bundle_of(tmp_path / "bad.tar.gz", _ok().model_copy(update={"key": "../../../../elsewhere/esc"}))
    proc = cli({}, "-a", str(tmp_path / "art"), "report", "--merge", str(bad))
    assert proc.returncode == 2 and "key" in error_line(proc) and str(bad) in error_line(proc)
    assert not list(tmp_path.rglob("esc*"))
    assert not (tmp_path / "art" / "report").exists() and not (tmp_path / "art" / "merged").exists()


@pytest.mark.parametrize("flags", [["--merge", "A", "B"], ["--merge", "A", "--merge", "B"]])
def test_merge_takes_several_paths_after_one_flag_and_stays_repeatable(tmp_path: Path, flags: list[str]) -> None:
    paths = {
        "A": bundle_of(tmp_path / "a.tar.gz", _ok(device_key="box-a")),
        "B": bundle_of(tmp_path / "b.tar.gz", _ok(device_key="box-b")),
    }
    proc = cli({}, "-a", str(tmp_path / "art"), "report", *[str(paths.get(f, f)) for f in flags])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "art" / "report" / "results.json").read_text())
    assert sorted(r["device_key"] for r in report["results"]) == ["box-a", "box-b"]


def test_paths_without_merge_are_a_usage_error(tmp_path: Path) -> None:
    proc = cli({}, "-a", str(tmp_path / "art"), "report", str(tmp_path))
    assert proc.returncode != 0 and "--merge" in proc.stderr


def test_a_failed_write_keeps_the_previous_report_whole(art: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli({}, "-a", str(art), "report")
    report = art / "report"
    before = {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()}
    assert {"results.json", "results.md", "results.html", "results.csv"} <= set(before)
    write_result(ArtifactStore(art), _ok(key="onnx", backend="onnxruntime", name="ONNX"), np.ones((1, 4), np.float32))
    real_fsync = os.fsync

    def full_at_html(fd: int) -> None:  # the disk fills up when results.html, the last of the set, is written
        if ".results.html." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(artifacts.os, "fsync", full_at_html)  # type: ignore[attr-defined]  # the os that artifacts calls
    proc = cli({}, "-a", str(art), "report")
    line = error_line(proc)
    assert "no space left on the device" in line and str(report / "results.html") in line
    assert {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()} == before
    assert not (art / ".tmp").exists() or not list((art / ".tmp").iterdir())  # the half-built set is gone


def test_a_report_folder_that_is_a_mount_point_gets_its_files_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In compose, report/ is a volume: renaming it fails with EBUSY, so the set's files replace its entries."""
    from modelport.bench import report as report_module

    final, new = tmp_path / "report", tmp_path / ".tmp" / "report-x"
    (final / "sections").mkdir(parents=True)
    (final / "results.md").write_text("old")
    (final / "sections" / "a.md").write_text("old section")
    (new / "sections").mkdir(parents=True)
    (new / "results.md").write_text("new")
    (new / "results.html").write_text("<html>")
    (new / "sections" / "a.md").write_text("new section")
    real_rename = Path.rename

    def busy(self: Path, target: Path) -> Path:
        if self == final:
            raise OSError(errno.EBUSY, "Device or resource busy", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", busy)
    report_module._swap(new, final)
    assert (final / "results.md").read_text() == "new" and (final / "results.html").read_text() == "<html>"
    assert (final / "sections" / "a.md").read_text() == "new section"
    assert not [p for p in final.iterdir() if p.name.startswith(".")]
