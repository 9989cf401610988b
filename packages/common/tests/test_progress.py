"""Long steps show they are alive: periodic lines off a terminal, one shared helper."""

import threading

from modelport.common import log


def test_a_long_step_prints_elapsed_time_lines(capsys):
    done = threading.Event()
    seen = []

    def wait_for_a_line():
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


def test_run_logged_keeps_chatter_in_the_log(tmp_path, capsys):
    import sys

    log_file = tmp_path / "logs" / "tool.log"
    proc = log.run_logged([sys.executable, "-c", "import sys; print('chatter'); sys.exit('E: the real error')"], log_file, "tool")
    assert proc.returncode == 1 and proc.last_error == "E: the real error"
    assert "chatter" in log_file.read_text() and "chatter" not in capsys.readouterr().err
