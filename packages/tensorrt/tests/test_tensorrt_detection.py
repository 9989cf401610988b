"""Which layer of the TensorRT stack is missing, as one line: the string doctor, convert and bench report.

On this machine (and CI) the real probe finds no driver. The other branches are driven
through the probe's library loader: a stand-in for libcuda/libcudart's C entry points,
so the message for "driver but no GPU", "driver too old" and "no CUDA runtime" is
checked without that hardware. TensorRT itself is never stood in for.
"""

import ctypes
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, cast

import pytest

from modelport.common.errors import HardwareMissing, ToolchainMissing
from modelport.tensorrt import cuda

pytestmark = pytest.mark.tensorrt

ERRORS = {100: (b"CUDA_ERROR_NO_DEVICE", b"no CUDA-capable device is detected"), 999: (b"CUDA_ERROR_UNKNOWN", b"unknown error")}


def _driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


class FakeLibcuda:
    """libcuda.so.1's entry points as modelport calls them (out-parameters through ctypes.byref)."""

    def __init__(
        self,
        init_rc: int = 0,
        devices: int = 1,
        driver_cuda: int = 12040,
        name: bytes = b"NVIDIA Test GPU",
        cc: tuple[int, int] = (8, 6),
    ) -> None:
        self.init_rc, self.devices, self.driver_cuda, self.name, self.cc = init_rc, devices, driver_cuda, name, cc

    def cuGetErrorName(self, rc: int, out: Any) -> int:
        out._obj.value = ERRORS.get(rc, (None, None))[0]
        return 0

    def cuGetErrorString(self, rc: int, out: Any) -> int:
        out._obj.value = ERRORS.get(rc, (None, None))[1]
        return 0

    def cuInit(self, flags: int) -> int:
        return self.init_rc

    def cuDeviceGetCount(self, out: Any) -> int:
        out._obj.value = self.devices
        return 0

    def cuDriverGetVersion(self, out: Any) -> int:
        out._obj.value = self.driver_cuda
        return 0

    def cuDeviceGet(self, out: Any, index: int) -> int:
        out._obj.value = index
        return 0

    def cuDeviceGetName(self, buf: Any, size: int, dev: Any) -> int:
        buf.value = self.name
        return 0

    def cuDeviceGetAttribute(self, out: Any, attr: int, dev: Any) -> int:
        out._obj.value = {75: self.cc[0], 76: self.cc[1]}[attr]
        return 0


class FakeLibcudart:
    def cudaRuntimeGetVersion(self, out: Any) -> int:
        out._obj.value = 12090
        return 0


def loader(libcuda: FakeLibcuda | None = None, cudart: FakeLibcudart | None = None) -> Callable[[str], ctypes.CDLL]:
    def load(name: str) -> ctypes.CDLL:
        base = os.path.basename(name)
        lib = {"libcuda.so.1": libcuda, "libcudart.so.12": cudart}.get(base)
        if lib is None:
            raise OSError(f"{base}: cannot open shared object file: No such file or directory")
        return cast(ctypes.CDLL, lib)  # a stand-in for the library: the entry points the probe calls

    return load


@pytest.mark.skipif(_driver_present(), reason="this machine has an NVIDIA driver")
def test_this_machine_reports_the_missing_driver() -> None:
    reason = cuda.missing_layer()
    assert reason is not None and reason.startswith("no NVIDIA driver: libcuda.so.1 not found")
    assert "\n" not in reason
    assert cuda.gpu_info() is None
    with pytest.raises(HardwareMissing) as e:
        cuda.require()
    assert str(e.value) == reason


def test_no_driver_is_a_hardware_skip() -> None:
    p = cuda.probe(loader=loader())
    assert p.missing is not None
    assert [s.layer for s in p.layers] == ["driver"]
    assert p.missing.detail.startswith("no NVIDIA driver: libcuda.so.1 not found")
    assert isinstance(p.error(), HardwareMissing)


def test_driver_without_a_gpu() -> None:
    p = cuda.probe(loader=loader(FakeLibcuda(init_rc=100)))
    assert p.missing is not None
    assert p.missing.layer == "gpu"
    assert p.missing.detail == "no CUDA GPU: cuInit failed: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)"
    assert isinstance(p.error(), HardwareMissing) and p.gpu is None


def test_zero_devices_and_a_missing_device_index() -> None:
    none = cuda.probe(loader=loader(FakeLibcuda(devices=0))).missing
    assert none is not None and none.detail == "no CUDA GPU: the driver sees 0 devices"
    p = cuda.probe(device=2, loader=loader(FakeLibcuda(devices=1)))
    assert p.missing is not None
    assert p.missing.detail == "no CUDA GPU 2: the driver sees 1 device(s) ([tensorrt] device)"


def test_unknown_cuda_error_code_keeps_the_number() -> None:
    p = cuda.probe(loader=loader(FakeLibcuda(init_rc=12345)))
    assert p.missing is not None
    assert p.missing.detail == "no CUDA GPU: cuInit failed: CUDA error 12345"


def test_driver_too_old_for_cuda_12() -> None:
    p = cuda.probe(loader=loader(FakeLibcuda(driver_cuda=11040)))
    assert p.missing is not None and p.gpu is not None
    assert p.gpu.name == "NVIDIA Test GPU" and p.gpu.compute_capability == "8.6" and p.gpu.driver_cuda == "11.4"
    assert p.missing.layer == "cuda-runtime"
    assert p.missing.detail == (
        "CUDA runtime: the NVIDIA driver supports CUDA 11.4; TensorRT 10 for CUDA 12 needs a driver for CUDA >= 12.0"
    )
    assert isinstance(p.error(), HardwareMissing)  # a driver upgrade, not a pip install


def test_gpu_but_no_cuda_runtime_library() -> None:
    p = cuda.probe(loader=loader(FakeLibcuda()))
    assert p.missing is not None
    assert [s.layer for s in p.layers] == ["driver", "gpu", "cuda-runtime"]
    assert p.layers[1].detail == "NVIDIA Test GPU (compute capability 8.6)"
    assert p.missing.detail.startswith("CUDA runtime: libcudart.so.12 not found")
    assert "nvidia-cuda-runtime-cu12" in p.missing.detail
    assert isinstance(p.error(), ToolchainMissing)  # a failure in the tensorrt env, not a skip


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_gpu_and_cuda_but_no_tensorrt_package() -> None:
    p = cuda.probe(loader=loader(FakeLibcuda(), FakeLibcudart()))
    assert p.missing is not None
    assert p.layers[2].detail == "CUDA runtime 12.9"
    assert p.missing.layer == "tensorrt"
    assert p.missing.detail == (
        "TensorRT: Python package 'tensorrt-cu12' not installed (pip install -r envs/tensorrt/requirements.txt)"
    )
    assert isinstance(p.error(), ToolchainMissing)


def test_report_lists_every_layer_without_importing_toolchains() -> None:
    layers = [s.layer for s in cuda.report()]
    assert layers[0] == "driver" and layers[-2:] == ["tensorrt", "pycuda"]


def test_importing_the_tensorrt_modules_imports_no_toolchain() -> None:
    """Every env imports these (doctor, the registries): no tensorrt, pycuda or onnx may load."""
    code = (
        "import sys\n"
        "import modelport.tensorrt.cuda, modelport.tensorrt.convert\n"
        "import modelport.tensorrt.calibrator, modelport.tensorrt.network\n"
        "import modelport.tensorrt.runtime\n"
        "heavy = [m for m in ('tensorrt', 'pycuda', 'onnx', 'tensorflow', 'onnxruntime') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
