"""Local stand-ins for the base images our Dockerfiles name, built without a registry.

  debian:bookworm-slim      debootstrap --variant=minbase bookworm, docs/locales stripped
  python:3.11-slim-bookworm that + Debian's python3, python3-venv, ca-certificates,
                            a venv at /usr/local (so `pip install` works as in the official image)

Only CI needs these (no Docker Hub here). The host's CA certificates are copied in
so HTTPS through this network's proxy works inside builds. The debootstrapped rootfs
is cached as a tarball keyed by mirror and UTC date: a re-run on the same machine
skips the ~40 s debootstrap; a fresh machine builds it.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from daemon import unmount_under

SUITE = "bookworm"
DEBIAN_TAG = "debian:bookworm-slim"
PYTHON_TAG = "python:3.11-slim-bookworm"
CACHE_VERSION = 2  # bump when the rootfs recipe below changes

PYTHON_DOCKERFILE = f"""\
FROM {DEBIAN_TAG}
ENV LANG=C.UTF-8 PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \\
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \\
    && update-ca-certificates \\
    && rm -rf /var/lib/apt/lists/* \\
    && python3 -m venv /usr/local \\
    && ln -sf /usr/local/bin/python3 /usr/local/bin/python
CMD ["python3"]
"""


def apt_mirror() -> str:
    """The Debian mirror the host's apt uses (deb822 or one-line sources), else deb.debian.org."""
    for path in [
        Path("/etc/apt/sources.list.d/debian.sources"),
        Path("/etc/apt/sources.list"),
        *sorted(Path("/etc/apt/sources.list.d").glob("*")),
    ]:
        try:
            text = path.read_text()
        except OSError:
            continue
        if f"{SUITE}" not in text:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+" + SUITE + r"\s", text, re.M
        )
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def cache_dir() -> Path:
    base = os.environ.get("MODELPORT_CI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "modelport-ci"
    )
    return Path(base)


def host_ca_certs() -> list[Path]:
    return sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


def rootfs_tarball(log: callable = print) -> Path:
    """bookworm minbase rootfs (+ host CAs) as a tar, built once per mirror per UTC day."""
    mirror = apt_mirror()
    day = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    certs = host_ca_certs()
    key = hashlib.sha256(repr((mirror, [c.read_bytes() for c in certs], CACHE_VERSION)).encode()).hexdigest()[:12]
    tarball = cache_dir() / f"{SUITE}-minbase-{day}-{key}.tar"
    if tarball.exists():
        log(f"rootfs: cached {tarball}")
        return tarball
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise RuntimeError("debootstrap not found (Debian: apt-get install debootstrap)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="modelport-rootfs-", dir="/tmp"))
    try:
        rootfs = tmp / "rootfs"
        log(f"rootfs: debootstrap --variant=minbase {SUITE} from {mirror}")
        subprocess.run([debootstrap, "--variant=minbase", SUITE, str(rootfs), mirror], check=True, stdout=subprocess.DEVNULL)
        for sub in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / sub, ignore_errors=True)
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
        (rootfs / "usr/local/share/ca-certificates").mkdir(parents=True, exist_ok=True)
        # As in Docker's official Debian images: apt keeps no .debs in image layers.
        (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
            'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
            '/var/cache/apt/*.bin || true"; };\nAPT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
            '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
            'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
        )
        for cert in certs:  # picked up by update-ca-certificates once ca-certificates is installed
            shutil.copy2(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    finally:
        unmount_under(tmp)  # a failed debootstrap can leave proc/sys mounted in the rootfs
        shutil.rmtree(tmp, ignore_errors=True)
    for old in tarball.parent.glob(f"{SUITE}-minbase-*.tar"):
        if old != tarball:
            old.unlink()
    log(f"rootfs: {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
    return tarball


def build(docker_env: dict[str, str], log: callable = print) -> None:
    """Import the rootfs as debian:bookworm-slim, then build python:3.11-slim-bookworm on it."""
    tarball = rootfs_tarball(log)
    with open(tarball, "rb") as f:
        subprocess.run(["docker", "import", "-", DEBIAN_TAG], stdin=f, env=docker_env, check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="modelport-python-base-") as ctx:
        (Path(ctx) / "Dockerfile").write_text(PYTHON_DOCKERFILE)
        built = subprocess.run(
            ["docker", "build", "-q", "--network", "host", "-t", PYTHON_TAG, ctx], env=docker_env, capture_output=True, text=True
        )
        if built.returncode != 0:
            raise RuntimeError(f"building the {PYTHON_TAG} stand-in failed:\n{built.stdout}{built.stderr}")
    out = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            PYTHON_TAG,
            "python",
            "-c",
            "import sys, ssl; print(sys.version.split()[0], sys.prefix, ssl.OPENSSL_VERSION)",
        ],
        env=docker_env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log(f"base: {DEBIAN_TAG} (local debootstrap), {PYTHON_TAG} = Debian python {out}")
