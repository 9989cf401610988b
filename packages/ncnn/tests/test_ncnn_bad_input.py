"""Bad ncnn input through the CLI: one line naming the file, non-zero exit, only a failed row written."""

import shutil
from pathlib import Path

import pytest

from conftest import failed_row, private_artifacts, run
from modelport.common.context import StepContext

pytestmark = [pytest.mark.ncnn, pytest.mark.slow]


@pytest.fixture
def ncnn_art(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private artifacts folder with a converted ncnn FP32 model (cached by manifest in the shared one)."""
    from modelport.convert.registry import target_module

    target_module("ncnn").run(pipeline, force=False)
    dst = tmp_path / "art"
    shutil.copytree(pipeline.store.root, dst, ignore=shutil.ignore_patterns("results", "report", "rknn", "tensorrt", ".tmp"))
    return dst, {**test_env, "MODELPORT_ARTIFACTS": str(dst)}


@pytest.mark.parametrize(
    "which,content",
    [
        ("model.param", b"7767517\n3 3\nInput in0 0 1 in0\nConvolution conv 1 1 in0 x 0=32 1=3\n"),  # cut mid-graph
        ("model.param", b"TFL3 this is a flatbuffer, not an ncnn param\n"),
        ("model.bin", b"\0" * 4096),  # far shorter than the weights the param declares
    ],
)
def test_corrupt_ncnn_model(ncnn_art: tuple[Path, dict[str, str]], which: str, content: bytes) -> None:
    dst, env = ncnn_art
    path = dst / "ncnn" / which
    path.write_bytes(content)
    (dst / "ncnn" / f"{which}.manifest.json").unlink()  # user-supplied files: ncnn itself must judge them
    proc = run(env, "bench", "ncnn")
    assert proc.returncode != 0
    assert str(path) in proc.stderr, proc.stderr
    assert str(path) in failed_row(dst, "ncnn")["reason"]


def test_ncnn_model_changed_since_conversion(ncnn_art: tuple[Path, dict[str, str]]) -> None:
    dst, env = ncnn_art
    path = dst / "ncnn" / "model.bin"
    path.write_bytes(path.read_bytes()[:-16])
    proc = run(env, "bench", "ncnn")
    assert proc.returncode != 0 and str(path) in proc.stderr and "sha256 differs from its manifest" in proc.stderr
    assert str(path) in failed_row(dst, "ncnn")["reason"]


def test_corrupt_onnx_is_refused_before_pnnx(pipeline: StepContext, test_env: dict[str, str], tmp_path: Path) -> None:
    dst = tmp_path / "art"
    private_artifacts(pipeline, dst)
    model = dst / "onnx" / "model.onnx"
    model.write_bytes(model.read_bytes()[:50_000])
    proc = run({**test_env, "MODELPORT_ARTIFACTS": str(dst)}, "convert", "ncnn")
    assert proc.returncode != 0 and f"{model}: not a readable ONNX model" in proc.stderr
    written = sorted(p.name for p in (dst / "ncnn").iterdir() if not p.name.startswith("."))
    assert written == ["model.bin.failed.json", "model.param.failed.json"]  # only the failure, for bench's row


def test_official_ncnn_tools_requested_on_the_command_line_but_missing(ncnn_art: tuple[Path, dict[str, str]]) -> None:
    """`--ncnn-tools official` without ncnnoptimize/ncnn2table/ncnn2int8 on PATH: a clear error, nothing rewritten."""
    dst, env = ncnn_art

    def models() -> list[tuple[str, bytes]]:
        return sorted((p.name, p.read_bytes()) for p in (dst / "ncnn").iterdir() if p.is_file() and "failed" not in p.name)

    before = models()
    proc = run({**env, "PATH": "/usr/bin:/bin"}, "convert", "ncnn-int8", "--ncnn-tools", "official", "--force")
    assert proc.returncode != 0 and "[ncnn] tools = official, but not on PATH" in proc.stderr, proc.stderr
    assert models() == before
    assert "not on PATH" in (dst / "ncnn" / "model-int8.param.failed.json").read_text()
