"""Container test: build every CPU env image and run `docker-compose up` end to end, with no registry.

    python .ci/containers/run.py [--negative] [--in-docker] [--install-tools] [--data DIR]   (or: nox -s containers -- ...)

1. start a private dockerd (own socket/data/exec root in a temp dir, no bridge, no iptables)
2. build local stand-ins for the base images (debootstrap; see base_images.py)
3. build the env images from the repo's unmodified envs/<env>/Dockerfile via compose.yaml
   (an env without a Dockerfile is skipped, and said so)
4. `docker-compose up` the CPU services with the real model and photos (MODELPORT_DATA, default ./data),
   check every service's exit code, copy report/results.json out of the volume and assert the
   same floors as the nox pipeline (.ci/check_report.py)
5. --negative: mount a corrupt model; the check must fail naming the service, with its log tail
Always: `docker-compose down -v`, stop the daemon by PID, remove its temp dir, verify nothing is left.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import base_images  # noqa: E402
import daemon  # noqa: E402
import host_state  # noqa: E402
import stack  # noqa: E402
import wheelhouse  # noqa: E402

sys.path.insert(0, str(stack.ROOT / "packages" / "common" / "src"))  # CI's bare python3.11: envs is stdlib-only
from modelport.common import envs  # noqa: E402

ROOT = stack.ROOT
try:
    CPU_ENVS = envs.load(ROOT).cpu_envs()  # the env table's envs that need no hardware: what `compose up` runs
except envs.TableError as e:
    sys.exit(f"containers: {e}")
PROJECT = "modelport-ci"
BUILD_WORKERS = 5  # every CPU env at once
TIMES: list[tuple[str, float]] = []


def log(msg: str) -> None:
    # One write per line: the image builds log from several threads, and print() writes the newline apart.
    sys.stdout.write(f"[containers] {msg}\n")
    sys.stdout.flush()


@contextmanager
def phase(name: str):
    log(f"--- {name}")
    t = time.monotonic()
    try:
        yield
    finally:
        TIMES.append((name, time.monotonic() - t))
        log(f"--- {name}: {TIMES[-1][1]:.1f} s")


def ensure_tools(install: bool) -> None:
    needed = {"dockerd": "docker.io", "docker": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}
    missing = sorted({pkg for exe, pkg in needed.items() if shutil.which(exe) is None})
    if not missing:
        return
    if not install or os.geteuid() != 0:
        sys.exit(f"missing tools; install with: apt-get install {' '.join(missing)}")
    log(f"apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *missing],
        check=True,
        stdout=subprocess.DEVNULL,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
    )


def build_images(compose: stack.Compose, services: dict[str, stack.Service], logs: Path) -> list[str]:
    """Build each CPU env's image (once, through its first service); returns the envs built."""
    built, args = [], {}
    for env in CPU_ENVS:
        dockerfile = ROOT / "envs" / env / "Dockerfile"
        if not dockerfile.exists():
            log(f"SKIP {env}: {dockerfile.relative_to(ROOT)} does not exist (its services are left out)")
            continue
        declared = stack.declared_args(dockerfile)
        args[env] = {k: v for k, v in stack.OFFLINE_BUILD_ARGS.items() if k in declared}
        args[env].update(wheelhouse.build_args(env, declared, log))
    log("CI override:\n" + compose.write_override(services, args))

    def build(env: str) -> str:
        first = next(s for s in services.values() if s.env == env and s.build)
        with phase(f"build {env} ({first.image})"):
            compose.run("build", first.name, logfile=logs / f"build-{env}.log")
        return env

    # A build mostly waits on pip's downloads and layer writes: every image at once takes about half the
    # sequential time on CI's 2 cores. Each keeps its own log; the first failure is raised once all are done.
    with ThreadPoolExecutor(BUILD_WORKERS) as pool:
        futures = [pool.submit(build, env) for env in args]
        wait(futures)
    for f in futures:
        built.append(f.result())
    return built


def runnable(services: dict[str, stack.Service], built: list[str]) -> list[str]:
    """Services without a profile whose image we built (or that need none), in compose.yaml's order."""
    return [s.name for s in services.values() if not s.profiles and (s.env is None or s.env in built)]


def run_stack(compose: stack.Compose, services: dict[str, stack.Service], names: list[str], logs: Path, label: str) -> list[str]:
    logfile = logs / f"up-{label}.log"
    with phase(f"compose up ({label}): {' '.join(names)}"):
        compose.up(names, logfile)
    compose.run("logs", "--no-color", "--timestamps", check=False, logfile=logs / f"services-{label}.log")
    log(f"services ({label}):")
    return compose.check_services(services, names)


def check_report(compose: stack.Compose, built: list[str]) -> None:
    """Copy report/results.json out of the volume; .ci/check_report.py asserts the floors for the envs that ran."""
    dest = ROOT / ".nox" / "containers" / "results.json"
    compose.copy_out("report", "/artifacts/report/results.json", dest)
    print(compose.docker("logs", compose.containers()["report"]["Id"]).stdout, flush=True)  # the report table
    owners = "; ".join(compose.volume_owner(v) for v in ("source", "onnx", "ncnn", "rknn", "results", "report"))
    log(f"report copied to {dest.relative_to(ROOT)}; volumes: {owners}")
    subprocess.run([sys.executable, str(ROOT / ".ci" / "check_report.py"), str(dest), "--envs", ",".join(built)], check=True)


def negative(
    compose_factory, services: dict[str, stack.Service], names: list[str], logs: Path, workdir: Path, data: Path
) -> None:
    """A corrupt model mounted in must make the check fail, naming the service, with its log tail."""
    bad = workdir / "bad-data"
    shutil.copytree(data / "images", bad / "images")
    (bad / "models").mkdir(parents=True)
    shutil.copy2(data / "models" / "labels.txt", bad / "models" / "labels.txt")
    model = (data / "models" / "mobilenet_v2_1.0_224.tflite").read_bytes()
    (bad / "models" / "mobilenet_v2_1.0_224.tflite").write_bytes(model[: len(model) // 3])  # truncated
    compose = compose_factory(f"{PROJECT}-negative", bad)
    try:
        failures = run_stack(compose, services, names, logs, "negative")
    finally:
        compose.down()
    failed = [f for f in failures if "exit code" in f]
    if not failed or "log lines:" not in failed[0]:
        raise RuntimeError("negative test: a truncated model did not fail a service:\n" + "\n".join(failures))
    log("negative test ok: the check reports\n" + "\n".join(failures))


def in_docker_check(docker_env: dict[str, str], built: list[str], workdir: Path, data: Path) -> None:
    """`nox -s convert bench -- --in-docker` for tf-onnx against this engine, into a fresh artifacts folder."""
    env = dict(
        docker_env,
        MODELPORT_ARTIFACTS=str(workdir / "in-docker-artifacts"),
        MODELPORT_MODEL=str(data / "models" / "mobilenet_v2_1.0_224.tflite"),
        MODELPORT_LABELS=str(data / "models" / "labels.txt"),
        MODELPORT_IMAGES=str(data / "images"),
        MODELPORT_CALIBRATION=str(data / "images" / "calibration"),
        MODELPORT_FETCH_NETWORK="none",
    )
    sessions = [f"{step}(env='{e}')" for step in ("convert", "bench") for e in ("tf-onnx",) if e in built]
    subprocess.run([sys.executable, "-m", "nox", "-s", *sessions, "report", "--", "--in-docker"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [
            sys.executable,
            str(ROOT / ".ci" / "check_report.py"),
            str(workdir / "in-docker-artifacts" / "report" / "results.json"),
            "--envs",
            "tf-onnx",
        ],
        check=True,
    )


def image_sizes(docker_env: dict[str, str], images: list[str]) -> None:
    log("image sizes:")
    for image in images:
        out = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", image], env=docker_env, capture_output=True, text=True
        )
        size = f"{int(out.stdout) / 1e6:8.0f} MB" if out.returncode == 0 else "   (none)"
        log(f"  {image:32} {size}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--negative", action="store_true", help="also check that a corrupt model fails the test")
    parser.add_argument("--negative-only", action="store_true", help="only the negative test (images still built)")
    parser.add_argument("--in-docker", action="store_true", help="also run `nox -s convert bench -- --in-docker` for tf-onnx")
    parser.add_argument(
        "--install-tools", action="store_true", help="apt-get install missing docker.io, docker-compose, debootstrap"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="models/ + images/ to mount (default: $MODELPORT_DATA, $MODELPORT_TEST_DATA, ./data)",
        default=Path(os.environ.get("MODELPORT_DATA") or os.environ.get("MODELPORT_TEST_DATA") or ROOT / "data"),
    )
    opts = parser.parse_args()
    data = opts.data.resolve()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup below runs
    ensure_tools(opts.install_tools)

    logs = ROOT / ".nox" / "containers"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    before = host_state.snapshot()
    engine = daemon.Dockerd(log)
    workdir = Path(tempfile.mkdtemp(prefix="modelport-containers-"))
    composes: list[stack.Compose] = []

    def compose_for(project: str, data_dir: Path) -> stack.Compose:
        c = stack.Compose(engine.env(), project, workdir, data_dir, log)
        composes.append(c)
        return c

    start = time.monotonic()
    failures: list[str] = []
    try:
        with phase("start dockerd"):
            engine.start()
        with phase("base images (debootstrap stand-ins)"):
            base_images.build(engine.env(), log)
        compose = compose_for(PROJECT, data)
        services = compose.config()
        built = build_images(compose, services, logs)
        names = runnable(services, built)
        if not opts.negative_only:
            failures = run_stack(compose, services, names, logs, "main")
            if not failures:
                with phase("report check"):
                    check_report(compose, built)
        if opts.in_docker:
            with phase("nox --in-docker (Docker SDK) for tf-onnx"):
                in_docker_check(engine.env(), built, workdir, data)
        if opts.negative or opts.negative_only:
            with phase("negative test"):
                negative(compose_for, services, names, logs, workdir, data)
        image_sizes(
            engine.env(),
            [base_images.DEBIAN_TAG, base_images.PYTHON_TAG, *sorted({s.image for s in services.values() if s.env in built})],
        )
    finally:
        with phase("teardown"):
            for c in composes:
                if engine.proc is not None and engine.proc.poll() is None:
                    c.down()
            engine.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            wheelhouse.cleanup(log)
            problems = host_state.leftovers(before, engine)
            log(
                "cleanup verified: no dockerd, bridge, iptables rule or temp root left"
                if not problems
                else "cleanup problems:\n  " + "\n  ".join(problems)
            )
        log("wall time per phase:")
        for name, secs in TIMES:
            log(f"  {secs:7.1f} s  {name}")
        log(f"  {time.monotonic() - start:7.1f} s  total (logs in {logs.relative_to(ROOT)})")
    if failures:
        print("\ncontainer test FAILED:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
