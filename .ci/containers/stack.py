"""compose.yaml as CI sees it: which services run here, building their images, `up`, and checking each exit code.

Everything goes through docker-compose (1.29.2, Debian) and the repo's compose.yaml,
plus one CI-only override file holding what only an offline machine needs: builds on
the host network (our engine has no bridge) and the offline build args; and the bench
services' command lines with CI_BENCH appended.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Build args an offline build needs, passed to every Dockerfile that declares them (named by the ARG,
# not the env). Their defaults in the Dockerfiles are the normal online behaviour.
OFFLINE_BUILD_ARGS = {"NCNN_TOOLS": "skip"}
# What the container check asks of each bench service: every row still benched in its image and judged
# (agreement, floors, layer profile: .ci/check_report.py), with fewer timed runs and without the throughput
# sweep and fresh-process cold start, which the main job measures on this machine with the product's [bench].
CI_BENCH = ["-o", "bench.runs=20", "-o", "bench.warmup=5", "-o", "bench.throughput=false", "-o", "bench.cold_start=false"]


@dataclass
class Service:
    name: str
    image: str
    env: str | None  # envs/<env>/Dockerfile it is built from, if any
    profiles: list[str]
    depends_on: list[str]
    build: dict = field(default_factory=dict)
    command: list[str] = field(default_factory=list)


class Compose:
    def __init__(self, docker_env: dict[str, str], project: str, workdir: Path, data: Path, log: callable = print) -> None:
        self.docker_env = dict(docker_env, MODELPORT_DATA=str(data), MODELPORT_FETCH_NETWORK="none")
        self.project = project
        self.workdir = workdir
        self.log = log
        self.exe = shutil.which("docker-compose")
        if self.exe is None:
            raise RuntimeError("docker-compose not found (Debian: apt-get install docker-compose)")
        self.override = workdir / "compose.ci.yaml"

    # -- configuration -------------------------------------------------------------------------
    def base_cmd(self, override: bool = True) -> list[str]:
        files = ["-f", str(ROOT / "compose.yaml")] + (["-f", str(self.override)] if override and self.override.exists() else [])
        return [self.exe, "-p", self.project, *files]

    def config(self) -> dict[str, Service]:
        """Services as docker-compose resolves them (parsed by docker-compose's own Python, which has PyYAML)."""
        text = self.run("config", override=False, capture=True).stdout
        interpreter = Path(self.exe).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()
        parsed = subprocess.run(
            [*interpreter, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        services = {}
        for name, spec in json.loads(parsed)["services"].items():
            dockerfile = (spec.get("build") or {}).get("dockerfile", "")
            m = re.fullmatch(r"envs/([^/]+)/Dockerfile", dockerfile)
            services[name] = Service(
                name,
                spec["image"],
                m.group(1) if m else None,
                spec.get("profiles", []),
                list(spec.get("depends_on", {})),
                spec.get("build") or {},
                [str(a) for a in spec.get("command") or []],
            )
        return services

    def write_override(self, services: dict[str, Service], build_args: dict[str, dict[str, str]]) -> str:
        lines = [
            "# CI only (no registry, engine without a bridge): build on the host network + offline build args;",
            "# bench services with CI_BENCH (.ci/containers/stack.py).",
            "services:",
        ]
        for s in services.values():
            if not s.build or s.env not in build_args:  # only the envs CI builds
                continue
            lines.append(f"  {s.name}:")
            if s.command[:1] == ["bench"]:
                lines.append(f"    command: {json.dumps([*s.command, *CI_BENCH])}")
            lines.append("    build:")
            lines.append("      network: host")
            args = build_args.get(s.env or "", {})
            if args:
                lines.append("      args:")
                lines += [f"        {k}: {json.dumps(v)}" for k, v in args.items()]
        self.override.write_text("\n".join(lines) + "\n")
        return self.override.read_text()

    # -- running -------------------------------------------------------------------------------
    def run(
        self, *args: str, override: bool = True, capture: bool = False, check: bool = True, logfile: Path | None = None
    ) -> subprocess.CompletedProcess:
        cmd = [*self.base_cmd(override), *args]
        if logfile is not None:
            with open(logfile, "ab") as f:
                f.write(f"$ {' '.join(cmd)}\n".encode())
                f.flush()
                proc = subprocess.run(cmd, cwd=ROOT, env=self.docker_env, stdout=f, stderr=subprocess.STDOUT)
        else:
            proc = subprocess.run(cmd, cwd=ROOT, env=self.docker_env, capture_output=capture, text=capture)
        if check and proc.returncode != 0:
            detail = _tail(logfile) if logfile else (proc.stderr or "") if capture else ""
            raise RuntimeError(f"`docker-compose {' '.join(args)}` exited {proc.returncode}\n{detail}")
        return proc

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", *args], env=self.docker_env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"`docker {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def up(self, services: list[str], logfile: Path) -> float:
        """`up` in the foreground (no --abort-on-container-exit: it would stop later services); returns seconds."""
        t = time.monotonic()
        self.run("up", "--no-build", "--no-color", "--no-deps", *services, check=False, logfile=logfile)
        return time.monotonic() - t

    def containers(self) -> dict[str, dict]:
        """service -> docker inspect state of its container, for every container of this project."""
        ids = self.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}").stdout.split()
        if not ids:
            return {}
        states = json.loads(self.docker("inspect", *ids).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in states}

    def check_services(self, services: dict[str, Service], expected: list[str], tail: int = 25) -> list[str]:
        """One line per expected service; returns the failures, each with its log tail."""
        found = self.containers()
        failures = []
        for name in expected:
            c = found.get(name)
            if c is None:
                blocked = [d for d in services[name].depends_on if d in expected]
                failures.append(f"service {name}: never started (waits on {', '.join(blocked) or 'nothing'})")
                self.log(f"  {name:18} NOT STARTED")
                continue
            state = c["State"]
            code, status = state.get("ExitCode"), state.get("Status")
            started, finished = state.get("StartedAt", ""), state.get("FinishedAt", "")
            self.log(f"  {name:18} {status:8} exit {code}  {_duration(started, finished)}")
            if status != "exited" or code != 0:
                logs = self.docker("logs", "--tail", str(tail), c["Id"], check=False)
                failures.append(
                    f"service {name}: {status}, exit code {code}; last {tail} log lines:\n" + _indent(logs.stdout + logs.stderr)
                )
        return failures

    def copy_out(self, service: str, path: str, dest: Path) -> Path:
        c = self.containers().get(service)
        if c is None:
            raise RuntimeError(f"no container for service {service} to copy {path} from")
        self.docker("cp", f"{c['Id']}:{path}", str(dest))
        return dest

    def volume_owner(self, volume: str) -> str:
        """uid:gid of the named volume's root on the host (non-root services must be able to write it)."""
        name = f"{self.project}_{volume}"
        mountpoint = self.docker("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip()
        st = Path(mountpoint).stat()
        return f"{name} owned by {st.st_uid}:{st.st_gid}, mode {st.st_mode & 0o777:o}"

    def down(self) -> None:
        self.run("down", "-v", "--remove-orphans", "--timeout", "5", check=False, capture=True)


def declared_args(dockerfile: Path) -> set[str]:
    return set(re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", dockerfile.read_text(), re.M))


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return ""
    return _indent("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.rstrip().splitlines())


def _duration(started: str, finished: str) -> str:
    from datetime import datetime

    try:
        a = datetime.fromisoformat(started[:26].rstrip("Z"))
        b = datetime.fromisoformat(finished[:26].rstrip("Z"))
        return f"{(b - a).total_seconds():6.1f} s"
    except ValueError:
        return ""
