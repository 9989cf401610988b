"""Run one modelport CLI step inside its env's image, through the Docker SDK for Python.

    python -m modelport.common.in_docker --env tf-onnx -- convert reference onnx

For hosts where a toolchain is easier to get as an image than as wheels (TensorRT on a
GPU box): the same CLI, the same config and inputs, the same artifacts folder. Every
path the step reads or writes is bind-mounted at the SAME absolute path it has on the
host, so manifests and results name the same files as a venv run; the artifacts folder
read-write, everything else read-only. The container runs as the calling user, so the
files it writes belong to you, and without a network (except `fetch` with nothing local
to import: MODELPORT_FETCH_NETWORK, default bridge, as in compose.yaml).

Only the standard library and `docker` (the SDK, pinned in envs/tools.toml) are imported
here: the host that calls this needs no toolchain and no modelport dependencies. Each
env's image tag and whether it needs a GPU come from the env table (envs/<env>/env.toml).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from . import __version__, envs

PATH_VARS = {  # env var -> (config section, key): the inputs a step may read
    "MODELPORT_MODEL": ("model", "path"),
    "MODELPORT_LABELS": ("model", "labels"),
    "MODELPORT_IMAGES": ("images", "eval"),
    "MODELPORT_CALIBRATION": ("images", "calibration"),
}


def _config_file() -> Path | None:
    p = Path(os.environ.get("MODELPORT_CONFIG") or "modelport.toml")
    return p.resolve() if p.is_file() else None


def inputs(config: Path | None) -> dict[str, Path]:
    """Env var -> absolute host path of every input the step may read (env vars win over the config)."""
    data = tomllib.loads(config.read_text(encoding="utf-8")) if config else {}
    found = {}
    for var, (section, key) in PATH_VARS.items():
        value = os.environ.get(var) or data.get(section, {}).get(key)
        if value:
            base = config.parent if config and not os.environ.get(var) else Path.cwd()
            found[var] = (base / value).resolve()
    return found


def container_spec(env: str, args: list[str], artifacts: Path, image: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `client.containers.run` (kept separate so it can be shown and tested)."""
    table = envs.load()
    if env not in table.envs:
        raise envs.TableError(f"{table.root / 'envs'}: no env {env!r} (envs: {', '.join(table.envs)})")
    artifacts = artifacts.resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    environment = {"MODELPORT_ENV": env, "MODELPORT_ARTIFACTS": str(artifacts), "HOME": "/tmp"}
    for var in ("MODELPORT_DEVICE", "MODELPORT_RUN_ID"):  # results made in the image keep the host run's identity
        if os.environ.get(var):
            environment[var] = os.environ[var]
    volumes = {str(artifacts): {"bind": str(artifacts), "mode": "rw"}}
    config = _config_file()
    if config:
        environment["MODELPORT_CONFIG"] = str(config)
        volumes[str(config)] = {"bind": str(config), "mode": "ro"}
    local = inputs(config)
    for var, path in local.items():
        environment[var] = str(path)
        if path.exists():
            volumes[str(path)] = {"bind": str(path), "mode": "ro"}
    fetching = args[:1] == ["fetch"] and not ({"MODELPORT_MODEL", "MODELPORT_LABELS"} <= local.keys())
    spec: dict[str, Any] = {
        "image": image or table.envs[env].image,
        "command": args,
        "environment": environment,
        "volumes": volumes,
        "user": f"{os.getuid()}:{os.getgid()}",
        "network_mode": os.environ.get("MODELPORT_FETCH_NETWORK", "bridge") if fetching else "none",
    }
    if table.envs[env].needs == "gpu":
        import docker

        spec["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return spec


def run(env: str, args: list[str], artifacts: Path, image: str | None = None) -> int:
    """Run the step, streaming its output; returns the container's exit code."""
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        spec = container_spec(env, args, artifacts, image)
    except envs.TableError as e:
        sys.exit(f"in-docker: {e}")
    try:
        client = docker.from_env()
        client.images.get(spec["image"])
    except ImageNotFound:
        sys.exit(
            f"in-docker: image {spec['image']} not found on {os.environ.get('DOCKER_HOST', 'the local engine')}; "
            f"build it first: docker compose build"
        )
    except DockerException as e:
        sys.exit(f"in-docker: cannot reach a Docker engine: {e}")
    mounts = ", ".join(f"{src} ({v['mode']})" for src, v in spec["volumes"].items())
    print(f"in-docker: {spec['image']} modelport {' '.join(args)}  [network {spec['network_mode']}; {mounts}]", flush=True)
    container = client.containers.run(detach=True, **spec)
    try:
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelport.common.in_docker", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--env", required=True, help="toolchain env whose image runs the step (envs/<env>/env.toml)")
    parser.add_argument("--image", help="image to use (default: the env's image in its env.toml, what compose.yaml builds)")
    parser.add_argument("--artifacts", type=Path, default=Path(os.environ.get("MODELPORT_ARTIFACTS", "artifacts")))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the modelport command line, after --")
    opts = parser.parse_args(argv)
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    if not args:
        parser.error("no modelport command given (e.g. -- convert onnx)")
    return run(opts.env, args, opts.artifacts, opts.image)


if __name__ == "__main__":
    sys.exit(main())
