"""results.html in a real headless Chromium: every result row rendered, no console errors (the CI check itself)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, private_artifacts, run
from modelport.common.context import StepContext

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHECK = ROOT / ".ci" / "check_html.py"


def check_html(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which("chromium"):
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    return subprocess.run([sys.executable, str(CHECK), str(page), *extra], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def report_page(pipeline: StepContext, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    art = tmp_path_factory.mktemp("html") / "art"
    private_artifacts(pipeline, art)
    env = {**test_env, "MODELPORT_ARTIFACTS": str(art)}
    # every measurement section is rendered, from a short throughput sweep: the page is checked, not the numbers
    short = ("-o", "bench.throughput_seconds=0.2")
    assert run(env, "bench", "tflite", "onnx", "--runs", "10", "--warmup", "2", *short).returncode == 0
    (art / "onnx" / "model.int8.onnx").unlink()  # a failed row must be rendered like any other
    assert run(env, "bench", "onnx-int8", "--runs", "10").returncode != 0
    proc = run(env, "report")
    assert proc.returncode != 0 and "1 of 3 rows failed" in proc.stderr, proc.stderr
    return art / "report" / "results.html"


def test_report_is_one_self_contained_file(report_page: Path) -> None:
    html = report_page.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    assert "<script src" not in html and "<link" not in html
    data = json.loads(
        html.split('<script id="report-data" type="application/json">')[1].split("</script>")[0].replace("<\\/", "</")
    )
    assert {r["key"]: r["status"] for r in data["results"]} == {"tflite": "ok", "onnx": "ok", "onnx-int8": "failed"}


def test_every_row_renders_in_chromium_without_console_errors(report_page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    proc = check_html(report_page, "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stderr
    assert shot.stat().st_size > 10_000


def test_the_check_fails_on_a_page_that_throws(report_page: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text(report_page.read_text().replace("</body>", '<script>throw new Error("boom")</script></body>'))
    proc = check_html(broken)
    assert proc.returncode == 1 and "boom" in proc.stderr


def test_markup_in_merged_fields_still_renders_every_row(tmp_path: Path) -> None:
    """A label, model name and reason holding `<!--<script>` (as a bundle may carry) once blanked the tables."""
    from test_report_trust import crafted_artifacts

    from conftest import cli

    art = crafted_artifacts(tmp_path / "art")
    cli({}, "-a", str(art), "report")
    proc = check_html(art / "report" / "results.html")
    assert proc.returncode == 0, proc.stderr
