"""Can TensorRT run here, and if not, which layer is missing.

The stack has five layers, each needing the one before it:

    driver        libcuda.so.1 (the NVIDIA driver's user-space library)
    gpu           cuInit + at least one CUDA device
    cuda-runtime  a driver new enough for CUDA 12, and libcudart.so.12
    tensorrt      the TensorRT Python package and its libraries (libnvinfer.so.10)
    pycuda        page-locked buffers, streams and events for the runtime/calibrator

``missing_layer()`` names the first one that is missing as one line, e.g.
``"no CUDA GPU: cuInit failed: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)"``.
Doctor, the converters and the runtime all report that same string.

Importing this module does nothing. Probing uses ctypes on the driver library (no
toolchain import) and only imports tensorrt / pycuda once a GPU is known to exist,
so a machine without one (CI) never loads either.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

LAYERS = ("driver", "gpu", "cuda-runtime", "tensorrt", "pycuda")
# The pinned TensorRT wheels (envs/tensorrt/requirements.txt) are built for CUDA 12.
CUDA_MAJOR = 12
TENSORRT_MAJOR = 10
INSTALL_HINT = "pip install -r envs/tensorrt/requirements.txt"

_DRIVER_LIB = "libcuda.so.1"
_CUDART_LIB = f"libcudart.so.{CUDA_MAJOR}"
# cuDeviceGetAttribute ids (cuda.h: CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR).
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76


@dataclass(frozen=True)
class LayerStatus:
    layer: str
    ok: bool
    detail: str  # what was found when ok, exactly what is missing when not
    hardware: bool = False  # missing hardware/driver (a skip), not a missing Python toolchain

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.6"
    driver_cuda: str  # highest CUDA version the driver supports, "12.4"
    driver_version: str | None  # "550.54.14" from /proc, when visible


class CudaDriver:
    """The few driver-API calls modelport needs, over ctypes (no pycuda, no context)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    @classmethod
    def load(cls, loader: Callable[[str], ctypes.CDLL] = ctypes.CDLL) -> CudaDriver:
        return cls(loader(_DRIVER_LIB))

    def _check(self, rc: int, call: str) -> None:
        if rc != 0:
            raise CudaError(call, rc, *self.error_text(rc))

    def error_text(self, rc: int) -> tuple[str, str]:
        name, text = ctypes.c_char_p(), ctypes.c_char_p()
        # Both calls work before cuInit; unknown codes leave the pointers NULL.
        self.lib.cuGetErrorName(rc, ctypes.byref(name))
        self.lib.cuGetErrorString(rc, ctypes.byref(text))
        return (name.value or b"CUDA error %d" % rc).decode(), (text.value or b"").decode()

    def init(self) -> None:
        self._check(self.lib.cuInit(0), "cuInit")

    def driver_cuda_version(self) -> tuple[int, int]:
        v = ctypes.c_int()
        self._check(self.lib.cuDriverGetVersion(ctypes.byref(v)), "cuDriverGetVersion")
        return v.value // 1000, (v.value % 1000) // 10

    def device_count(self) -> int:
        n = ctypes.c_int()
        self._check(self.lib.cuDeviceGetCount(ctypes.byref(n)), "cuDeviceGetCount")
        return n.value

    def device(self, index: int) -> tuple[str, str]:
        dev = ctypes.c_int()
        self._check(self.lib.cuDeviceGet(ctypes.byref(dev), index), "cuDeviceGet")
        buf = ctypes.create_string_buffer(256)
        self._check(self.lib.cuDeviceGetName(buf, len(buf), dev), "cuDeviceGetName")
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.cuDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, dev), "cuDeviceGetAttribute")
        self._check(self.lib.cuDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, dev), "cuDeviceGetAttribute")
        return buf.value.decode(errors="replace"), f"{major.value}.{minor.value}"


class CudaError(RuntimeError):
    def __init__(self, call: str, code: int, name: str, text: str):
        self.call, self.code, self.name, self.text = call, code, name, text
        super().__init__(f"{call} failed: {name}" + (f" ({text})" if text else ""))


def driver_version_text() -> str | None:
    """The kernel module's version line, e.g. '550.54.14' (absent in WSL and without a driver)."""
    try:
        line = Path("/proc/driver/nvidia/version").read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return None
    for word in line.split():
        if word.count(".") >= 1 and word.replace(".", "").isdigit():
            return word
    return line.strip()


# -- the layers --------------------------------------------------------------------


def probe_driver(loader: Callable[[str], ctypes.CDLL] = ctypes.CDLL) -> tuple[LayerStatus, CudaDriver | None]:
    try:
        drv = CudaDriver.load(loader)
    except OSError as e:
        msg = _first_line(e)
        what = "not found" if "cannot open shared object file" in msg else f"not loadable ({msg})"
        proc = "" if Path("/proc/driver/nvidia").exists() else ", no /proc/driver/nvidia"
        return LayerStatus("driver", False, f"no NVIDIA driver: {_DRIVER_LIB} {what}{proc}", hardware=True), None
    version = driver_version_text()
    return LayerStatus("driver", True, f"NVIDIA driver {version}" if version else f"{_DRIVER_LIB} loaded"), drv


def probe_gpu(drv: CudaDriver, index: int = 0) -> tuple[LayerStatus, GpuInfo | None]:
    try:
        drv.init()
        count = drv.device_count()
    except CudaError as e:
        return LayerStatus("gpu", False, f"no CUDA GPU: {e}", hardware=True), None
    if count == 0:
        return LayerStatus("gpu", False, "no CUDA GPU: the driver sees 0 devices", hardware=True), None
    if index >= count:
        return LayerStatus(
            "gpu", False, f"no CUDA GPU {index}: the driver sees {count} device(s) ([tensorrt] device)", hardware=True
        ), None
    try:
        name, cc = drv.device(index)
        major, minor = drv.driver_cuda_version()
    except CudaError as e:
        return LayerStatus("gpu", False, f"CUDA GPU {index} not usable: {e}", hardware=True), None
    info = GpuInfo(index, name, cc, f"{major}.{minor}", driver_version_text())
    return LayerStatus("gpu", True, f"{name} (compute capability {cc})"), info


def probe_cuda_runtime(gpu: GpuInfo, loader: Callable[[str], ctypes.CDLL] = ctypes.CDLL) -> LayerStatus:
    major = int(gpu.driver_cuda.split(".")[0])
    if major < CUDA_MAJOR:
        return LayerStatus(
            "cuda-runtime",
            False,
            f"CUDA runtime: the NVIDIA driver supports CUDA {gpu.driver_cuda}; TensorRT {TENSORRT_MAJOR} for "
            f"CUDA {CUDA_MAJOR} needs a driver for CUDA >= {CUDA_MAJOR}.0",
            hardware=True,
        )
    errors = []
    for candidate in _cudart_candidates():
        try:
            lib = loader(candidate)
        except OSError as e:
            errors.append(_first_line(e))
            continue
        v = ctypes.c_int()
        if lib.cudaRuntimeGetVersion(ctypes.byref(v)) == 0:
            return LayerStatus("cuda-runtime", True, f"CUDA runtime {v.value // 1000}.{(v.value % 1000) // 10}")
        return LayerStatus("cuda-runtime", True, f"{candidate} loaded")
    return LayerStatus(
        "cuda-runtime",
        False,
        f"CUDA runtime: {_CUDART_LIB} not found ({errors[0] if errors else 'not searched'}); "
        f"install nvidia-cuda-runtime-cu{CUDA_MAJOR} ({INSTALL_HINT}) or the CUDA {CUDA_MAJOR} toolkit",
    )


def _cudart_candidates() -> list[str]:
    # The wheel TensorRT's libs depend on puts it under site-packages/nvidia/cuda_runtime/lib;
    # a CUDA image has it on the loader path.
    out = []
    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "lib" / _CUDART_LIB
        if p.is_file():
            out.append(str(p))
    return out + [_CUDART_LIB]


# layer -> (top-level module to find, module to import, distributions that carry it)
_MODULES = {
    "tensorrt": ("tensorrt", "tensorrt", (f"tensorrt-cu{CUDA_MAJOR}", "tensorrt")),
    "pycuda": ("pycuda", "pycuda.driver", ("pycuda",)),
}


def probe_module(layer: str, do_import: bool) -> LayerStatus:
    """find_spec first (cheap); import only when asked, to surface missing shared libraries."""
    top, module, dists = _MODULES[layer]
    label = "TensorRT" if layer == "tensorrt" else layer
    if importlib.util.find_spec(top) is None:
        return LayerStatus(layer, False, f"{label}: Python package '{dists[0]}' not installed ({INSTALL_HINT})")
    version = _dist_version(dists)
    if not do_import:
        return LayerStatus(layer, True, f"{label} {version or '?'} installed (not imported)")
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # ImportError/OSError for a missing .so; pycuda can raise its own
        return LayerStatus(layer, False, f"{label}: import {module} failed: {_first_line(e)}")
    version = getattr(mod, "__version__", None) or version or "?"
    if layer == "tensorrt" and not str(version).startswith(f"{TENSORRT_MAJOR}."):
        return LayerStatus(layer, False, f"TensorRT: version {version} installed, modelport needs {TENSORRT_MAJOR}.x")
    return LayerStatus(layer, True, f"{label} {version}")


def _dist_version(dists: Sequence[str]) -> str | None:
    for name in dists:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


# -- what callers use --------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    layers: tuple[LayerStatus, ...]  # in order, up to and including the first missing one
    gpu: GpuInfo | None  # set once the GPU layer passed, even if a later layer is missing

    @property
    def missing(self) -> LayerStatus | None:
        return next((s for s in self.layers if not s.ok), None)

    def error(self) -> Exception | None:
        """HardwareMissing (no driver/GPU: the step is skipped) or ToolchainMissing (a failure)."""
        from modelport.common.errors import HardwareMissing, ToolchainMissing

        missing = self.missing
        if missing is None:
            return None
        return (HardwareMissing if missing.hardware else ToolchainMissing)(missing.detail)


def probe(device: int = 0, loader: Callable[[str], ctypes.CDLL] = ctypes.CDLL) -> Probe:
    """Check the layers in order and stop at the first missing one (the rest depend on it)."""
    out: list[LayerStatus] = []
    gpu: GpuInfo | None = None
    status, drv = probe_driver(loader)
    out.append(status)
    if drv is not None:
        status, gpu = probe_gpu(drv, device)
        out.append(status)
    if gpu is not None:
        out.append(probe_cuda_runtime(gpu, loader))
    for layer in _MODULES:
        if out[-1].ok:
            out.append(probe_module(layer, do_import=True))
    return Probe(tuple(out), gpu)


@cache
def _probe(device: int) -> Probe:
    return probe(device)


def missing_layer(device: int = 0) -> str | None:
    """The first missing layer as one line, or None when TensorRT can build and run here.

    Cached per process: the answer does not change while it runs.
    """
    missing = _probe(device).missing
    return missing.detail if missing else None


def require(device: int = 0) -> GpuInfo:
    """Raise what ``Probe.error`` says unless TensorRT can build and run here; else the GPU it runs on."""
    found = _probe(device)
    error = found.error()
    if error is not None:
        raise error
    assert found.gpu is not None  # no layer missing: the GPU layer passed, which sets it
    return found.gpu


def gpu_info(device: int = 0) -> GpuInfo | None:
    return _probe(device).gpu


def tensorrt_version() -> str | None:
    """Installed TensorRT version from package metadata (no import)."""
    return _dist_version(_MODULES["tensorrt"][2])


def report(device: int = 0) -> list[LayerStatus]:
    """Every layer, for a doctor table: the probe up to the first gap, then what is installed at all."""
    found = list(_probe(device).layers)
    seen = {s.layer for s in found}
    for layer in _MODULES:
        if layer not in seen:
            found.append(probe_module(layer, do_import=False))
    return found
