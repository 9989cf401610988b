"""`modelport doctor`: the checks of this env, saved per env, and one summary of what can run where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelport.common import doctor
from modelport.common.cli import main


def saved(env: str, *checks: tuple[str, str, bool, str]) -> dict[str, Any]:
    return {"env": env, "checks": [{"kind": k, "name": n, "ok": ok, "detail": d} for k, n, ok, d in checks]}


def test_the_summary_says_where_each_backend_runs_and_why_not_where_it_belongs() -> None:
    reports = [
        saved(
            "a", ("convert", "onnx", True, "1.0"), ("runtime", "onnx", True, "ort 1"), ("runtime", "ncnn", False, "no ncnn in a")
        ),
        saved("b", ("convert", "onnx", False, "not here"), ("runtime", "ncnn", False, "ncnn wheel missing")),
        saved("c", ("rknn", "board", False, "needs a board")),
    ]
    rows = doctor.summary_rows(reports, {"ncnn": "b"})
    assert rows == [
        ("onnx", ["ok", "no", ""], ""),  # runs in a: no reason to give
        ("ncnn", ["no", "no", ""], "b: ncnn wheel missing"),  # its own env's reason, not a's
        ("rknn board", ["", "", "no"], "c: needs a board"),
    ]


def test_each_env_saves_its_checks_and_the_summary_reads_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["doctor", "--save", str(a)]) == 0
    b.write_text(json.dumps(saved("ncnn", ("runtime", "ncnn", False, "a reason nobody else gives"))))
    capsys.readouterr()
    assert main(["doctor", "--summary", str(a), str(b)]) == 0
    out = "".join(capsys.readouterr())
    assert "what can run where" in out and "a reason nobody else gives" in out
    assert json.loads(a.read_text())["checks"] and doctor._owners()["ncnn-int8"] == "ncnn"


def test_a_file_that_is_no_saved_report_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("[1]")
    assert main(["doctor", "--summary", str(bad)]) != 0
    err = "".join(capsys.readouterr()).strip()
    assert err.startswith("error:") and "x.json: not a saved doctor report" in err and len(err.splitlines()) == 1
    assert main(["doctor", "--summary"]) == 2
