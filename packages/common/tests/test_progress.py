"""Long steps show they are alive: periodic lines off a terminal, one shared helper."""

import threading
from pathlib import Path

import pytest

from modelport.common import log


def test_a_long_step_prints_elapsed_time_lines(capsys: pytest.CaptureFixture[str]) -> None:
    done = threading.Event()
    seen = []

    def wait_for_a_line() -> None:
        while not done.is_set():  # ends when a progress line was printed (no timing assumed)
            seen.append(capsys.readouterr().err)
            if "... tf2onnx conversion (3/12):" in "".join(seen):
                done.set()

    with log.activity("tf2onnx conversion", every=0.01) as tick:
        tick("3/12")
        thread = threading.Thread(target=wait_for_a_line)
        thread.start()
        assert done.wait(30)
    thread.join()
    assert "s elapsed" in "".join(seen)


def test_run_logged_keeps_chatter_in_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as on users' machines: the child's stdout is buffered
    log_file = tmp_path / "logs" / "tool.log"
    proc = log.run_logged([sys.executable, "-c", "import sys; print('chatter'); sys.exit('E: the real error')"], log_file, "tool")
    assert proc.returncode == 1 and proc.last_error == "E: the real error"
    assert "chatter" in log_file.read_text() and "chatter" not in capsys.readouterr().err


def test_run_logged_quotes_stderr_even_when_stdout_chatter_lands_after_it(tmp_path: Path) -> None:
    import sys

    # The order a block-buffered stdout reaches the log in, made explicit: the error first, the chatter later.
    # One write per line (print writes the line and its end separately when stdout is unbuffered, and the
    # stderr line could land between them).
    code = "import sys; sys.stderr.write('E: the real error\\n'); sys.stderr.flush(); sys.stdout.write('chatter\\n'); sys.stdout.flush(); sys.exit(2)"
    log_file = tmp_path / "tool.log"
    proc = log.run_logged([sys.executable, "-c", code], log_file, "tool")
    assert proc.returncode == 2 and proc.last_error == "E: the real error"
    assert {"E: the real error", "chatter"} <= set(log_file.read_text().splitlines())


def test_run_logged_falls_back_to_stdout_when_stderr_is_silent(tmp_path: Path) -> None:
    import sys

    proc = log.run_logged([sys.executable, "-c", "print('only stdout'); raise SystemExit(3)"], tmp_path / "t.log", "tool")
    assert proc.returncode == 3 and proc.last_error == "only stdout"


def test_toolchain_chatter_goes_to_the_log_and_ours_to_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import logging
    import os
    import sys

    log_file = tmp_path / "logs" / "step.log"
    with log.captured(log_file):
        os.write(1, b"c++ stdout chatter\n")  # as TFLite's and onnxruntime's C++ code writes
        os.write(2, b"c++ stderr chatter\n")
        print("python chatter")  # as onnxruntime's calibration prints its histogram sizes
        handler = logging.StreamHandler(sys.stdout)  # as NNCF's logger, made on import inside the call
        logging.getLogger("toolchain-under-test").addHandler(handler)
        logging.getLogger("toolchain-under-test").warning("INFO:nncf:chatter")
        log.step("our own step line")
    out, err = capfd.readouterr()
    assert "chatter" not in out + err and "our own step line" in err
    assert {"c++ stdout chatter", "c++ stderr chatter", "python chatter", "INFO:nncf:chatter"} <= set(
        log_file.read_text().splitlines()
    )
    logging.getLogger("toolchain-under-test").warning("after")  # a handler kept past the call still works
    logging.getLogger("toolchain-under-test").removeHandler(handler)
    print("back on the terminal")
    assert "back on the terminal" in capfd.readouterr().out and "after" not in log_file.read_text()
