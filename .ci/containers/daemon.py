"""A private Docker engine: own socket, data root and exec root in one temp dir, no bridge.

Started as a child process and stopped by its PID; everything it created lives under
its temp dir, which `stop()` removes. It never touches the host's default engine,
creates no bridge (--bridge=none) and writes no iptables rules (--iptables=false).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


class Dockerd:
    def __init__(self, log: callable = print) -> None:
        self.log = log
        self.root: Path | None = None
        self.created_root: Path | None = None  # kept after stop() so leftovers can be checked
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def env(self) -> dict[str, str]:
        """Environment for docker / docker-compose / the SDK to talk to this engine only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(
            DOCKER_HOST=self.host, DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0", DOCKER_CONFIG=str(self.root / "client")
        )
        return env

    def start(self, timeout: float = 60) -> None:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("dockerd not found (Debian: apt-get install docker.io)")
        # Short path: unix socket paths are limited to 108 bytes.
        self.root = self.created_root = Path(tempfile.mkdtemp(prefix="modelport-dockerd-", dir="/tmp"))
        (self.root / "client").mkdir()
        logfile = open(self.root / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            [
                dockerd,
                "-H",
                self.host,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--storage-driver=overlay2",
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}:\n{self.log_tail()}")
            ok = subprocess.run(
                ["docker", "version", "--format", "{{.Server.Version}}"], env=self.env(), capture_output=True, text=True
            )
            if ok.returncode == 0:
                self.log(f"dockerd {ok.stdout.strip()} pid {self.proc.pid} on {self.host}")
                return
            time.sleep(0.5)
        raise RuntimeError(f"dockerd did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "dockerd.log" if self.root else None
        if not path or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM our dockerd (by PID), wait, SIGKILL if needed, then remove its temp dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.log(f"dockerd {self.proc.pid} ignored SIGTERM for {timeout:.0f} s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
            self.log(f"dockerd {self.proc.pid} stopped (exit {self.proc.returncode})")
        if self.root is not None and self.root.exists():
            unmount_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
            if self.root.exists():
                self.log(f"warning: could not fully remove {self.root}")
            else:
                self.log(f"removed {self.root}")
        self.root = None


def unmount_under(root: Path) -> None:
    """Unmount anything an interrupted engine left mounted below root (overlays, netns, shm), deepest first."""
    try:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        return
    for target in sorted((m for m in mounts if m.startswith(str(root) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
