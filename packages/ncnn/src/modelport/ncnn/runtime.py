"""ncnn (Tencent) FP32 and INT8, Option flags from [ncnn].

- Input is the prepared uint8 image; ncnn normalises it itself (``from_pixels`` +
  ``substract_mean_normalize`` with the config's mean and 1/std), as ncnn apps and
  ncnn2table do, so calibration, verification and benchmark feed identical tensors.
- Input/output blob names come from the loaded model, never assumed.
- Option flags must be set before ``load_param``: ncnn chooses kernels at load time
  (changing ``num_threads`` later even leaves the gemm convolutions on the old count),
  so every thread count in ``extra_threads`` is timed on its own freshly loaded Net.
- INT8 runs on the CPU only: ncnn's Vulkan layers have no int8 kernels.
"""

from __future__ import annotations

import ctypes.util
import re
from collections.abc import Callable
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

import numpy as np

from modelport.common.config import Config
from modelport.common.errors import InputError, ModelportError
from modelport.common.schema import LatencyStats
from modelport.common.timing import measure
from modelport.runtime.base import Runtime

_OUT_BLOB = re.compile(r"out\d+")
# ncnn GpuInfo.type(): 0 discrete, 1 integrated, 2 virtual, 3 cpu (Mesa llvmpipe/lavapipe).
_CPU_VULKAN_DEVICE = 3


def vulkan_devices() -> list[tuple[str, int]]:
    """(name, type) of each Vulkan device ncnn sees; [] without a Vulkan loader."""
    if ctypes.util.find_library("vulkan") is None:
        return []  # asking ncnn would only print a dlopen failure per probe
    import ncnn

    return [(ncnn.get_gpu_info(i).device_name(), ncnn.get_gpu_info(i).type()) for i in range(ncnn.get_gpu_count())]


class NcnnRuntime(Runtime):
    key, backend, precision, display = "ncnn", "ncnn", "fp32", "NCNN FP32"
    input_layout, input_dtype = "NHWC", "uint8"
    artifacts = {"param": "ncnn/model.param", "bin": "ncnn/model.bin"}
    requires = ("ncnn",)
    layer_times_reason = (
        "the ncnn pip wheel has no per-layer timer: ncnn times layers only when built with NCNN_BENCHMARK, "
        "and prints them to stderr, not to Python"
    )
    int8 = False
    # One Net serves extractors in several threads at once (ncnn's own concurrency: the Net is read-only
    # while extracting, each extractor holds its own blobs); the workers share one Net at the split count.
    thread_safe = True

    @classmethod
    def version(cls) -> str:
        try:
            return version("ncnn")
        except PackageNotFoundError:
            return "unknown"

    @cached_property
    def use_vulkan(self) -> bool:
        mode = self.config.ncnn.vulkan
        if self.int8 or mode == "off":
            return False
        devices = vulkan_devices()
        if mode == "on":
            if not devices:
                raise ModelportError("[ncnn] vulkan = on, but ncnn finds no Vulkan device (install a driver, or use auto/off)")
            return True
        return any(kind != _CPU_VULKAN_DEVICE for _, kind in devices)

    def settings(self) -> dict[str, object]:
        c = self.config.ncnn
        out: dict[str, object] = {
            "threads": c.threads,
            "use_vulkan_compute": self.use_vulkan,
            "use_int8_inference": self.int8,
            "use_fp16_storage": c.fp16_storage,
            "use_fp16_packed": c.fp16_packed,
            "use_fp16_arithmetic": c.fp16_arithmetic,
            "use_packing_layout": c.packing_layout,
            "use_winograd_convolution": c.winograd,
            "use_sgemm_convolution": c.sgemm,
            "input_blob": getattr(self, "input_name", None),
            "output_blob": getattr(self, "output_name", None),
        }
        if self.use_vulkan:
            out["vulkan_devices"] = [name for name, _ in vulkan_devices()]
        return out

    def thread_count(self) -> int:
        return self.config.ncnn.threads

    def config_with_threads(self, threads: int) -> Config:
        return self.config.model_copy(update={"ncnn": self.config.ncnn.model_copy(update={"threads": threads})})

    def concurrency_mechanism(self, workers: int) -> str:
        return f"{workers} thread{'s' if workers > 1 else ''}, an Extractor each on one Net"

    def new_net(self, threads: int) -> Any:
        import ncnn

        c = self.config.ncnn
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = threads
        opt.use_vulkan_compute = self.use_vulkan
        opt.use_int8_inference = self.int8
        opt.use_fp16_storage, opt.use_fp16_packed, opt.use_fp16_arithmetic = c.fp16_storage, c.fp16_packed, c.fp16_arithmetic
        opt.use_packing_layout = c.packing_layout
        opt.use_winograd_convolution = c.winograd
        opt.use_sgemm_convolution = c.sgemm
        param, binfile = self.files["param"], self.files["bin"]
        if net.load_param(str(param)) != 0:
            raise InputError(f"{self.display}: ncnn cannot parse this .param (see ncnn's message above)", param)
        if net.load_model(str(binfile)) != 0:
            raise InputError(
                f"{self.display}: ncnn cannot load this .bin for {param.name} (truncated or another model's?)", binfile
            )
        return net

    def activate_impl(self) -> None:
        self.net = self.new_net(self.config.ncnn.threads)
        ins, outs = list(self.net.input_names()), list(self.net.output_names())
        if len(ins) != 1 or not outs:
            raise InputError(
                f"{self.display}: expected one input blob and outputs, model has {ins} -> {outs}", self.files["param"]
            )
        if len(outs) > 1 and all(_OUT_BLOB.fullmatch(o) for o in outs):
            outs.sort(key=lambda o: int(o[3:]))  # convert names blob out<k> after the source's k-th output
        self.input_name, self.output_name, self.output_names = ins[0], outs[0], outs
        spec = self.config.input
        self.mean, self.norm = spec.mean_values, spec.norm_values
        self._last: np.ndarray | None = None

    def to_mat(self, tensor: np.ndarray) -> Any:
        """Batch-1 uint8 NHWC -> normalised ncnn Mat. from_pixels copies: no aliasing of numpy memory."""
        import ncnn

        img = np.ascontiguousarray(tensor[0])
        h, w, _ = img.shape
        # The prepared array is already in the model's channel order: RGB here means "as is".
        mat = ncnn.Mat.from_pixels(img, ncnn.Mat.PixelType.PIXEL_RGB, w, h)
        mat.substract_mean_normalize(self.mean, self.norm)
        return mat

    def run(self, net: Any, tensor: np.ndarray) -> np.ndarray:
        ex = net.create_extractor()
        ex.input(self.input_name, self.to_mat(tensor))
        ret, out = ex.extract(self.output_name)
        if ret != 0:
            raise ModelportError(f"{self.display}: ncnn extract({self.output_name}) returned {ret}", self.files["param"])
        return cast(np.ndarray, np.array(out).reshape(1, -1).copy())  # copy: the Mat's memory belongs to the extractor

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        self._last = tensor
        if len(self.output_names) > 1:  # ncnn computes only what an extracted blob needs: the timed call extracts all
            return next(iter(self.outputs(tensor).values())).reshape(1, -1)
        return self.run(self.net, tensor)

    def outputs(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Every output blob by its ncnn name (a detector has several), as ncnn shapes it: batch dropped, e.g. [3549, 85]."""
        return self.blobs(tensor, self.output_names)

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs under the source model's names and shapes: blob out<k> is the source's k-th output (pnnx's
        naming, checked output by output against the reference when converted)."""
        contract = self.config.contract
        infos = contract.outputs if contract is not None else ()
        if not infos and len(self.output_names) == 1:
            return super().infer_all_impl(tensor)
        got = list(self.outputs(tensor).values())
        if len(infos) != len(got):
            raise ModelportError(
                f"{self.display}: the model has outputs {self.output_names}, the source {[o.name for o in infos]}",
                self.files["param"],
            )
        out = {}
        for info, arr in zip(infos, got, strict=True):
            dims = [d for d in info.shape if isinstance(d, int) and d > 0]
            static = len(dims) == len(info.shape)
            out[info.name] = arr.reshape(dims) if static and arr.size == int(np.prod(dims)) else arr[None]
        return out

    def own_call(self, tensor: np.ndarray) -> Callable[[], object]:
        """ncnn's own API, as an ncnn app writes it: Mat from the pixels, extractor, input, extract."""
        import ncnn

        net, i, outs, (h, w) = self.net, self.input_name, self.output_names, tensor.shape[1:3]
        img, mean, norm = np.ascontiguousarray(tensor[0]), self.mean, self.norm

        def call() -> object:
            mat = ncnn.Mat.from_pixels(img, ncnn.Mat.PixelType.PIXEL_RGB, w, h)
            mat.substract_mean_normalize(mean, norm)
            ex = net.create_extractor()
            ex.input(i, mat)
            if len(outs) == 1:
                return ex.extract(outs[0])
            return [ex.extract(o) for o in outs]  # every output, as the timed call computes them

        return call

    def blobs(self, tensor: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """Intermediate blobs as float32 [C, H, W] (calibration). Light mode is off: it frees
        blobs once consumed, and extracting several of them from one extractor then crashes."""
        ex = self.net.create_extractor()
        ex.set_light_mode(False)
        ex.input(self.input_name, self.to_mat(tensor))
        out: dict[str, np.ndarray] = {}
        for name in names:
            ret, mat = ex.extract(name)
            if ret != 0:
                raise ModelportError(f"{self.display}: ncnn extract({name}) returned {ret}", self.files["param"])
            out[name] = np.array(mat).copy()
        return out

    @property
    def extra_timings(self) -> dict[str, LatencyStats]:
        """Latency at the other thread counts of [ncnn] extra_threads, on the input just timed."""
        if self._last is None:
            return {}
        b = self.config.bench
        out: dict[str, LatencyStats] = {}
        for n in sorted(set(self.config.ncnn.extra_threads) - {self.config.ncnn.threads}):
            net = self.new_net(n)
            out[f"threads_{n}"] = measure(cast(Callable[[], object], lambda net=net: self.run(net, self._last)), b.warmup, b.runs)
            del net
        return out

    def deactivate_impl(self) -> None:
        self.__dict__.pop("net", None)


class NcnnInt8Runtime(NcnnRuntime):
    key, precision, display = "ncnn-int8", "int8", "NCNN INT8"
    artifacts = {"param": "ncnn/model-int8.param", "bin": "ncnn/model-int8.bin"}
    int8 = True

    def settings(self) -> dict[str, object]:
        counts = int8_layers(self.files["param"].read_text(encoding="utf-8"))
        counts.pop("requantized_tops")
        return super().settings() | counts | self.int8_evidence()

    def int8_evidence(self) -> dict[str, int]:
        """Which blobs ncnn actually holds as int8 while running (1 byte per element).

        A requantizing conv (int8_scale_term > 100) hands int8 to the next layer; finding
        those blobs stored as int8 shows ncnn ran its int8 kernels, not a float fallback.
        """
        if self._last is None:
            return {}
        tops = int8_layers(self.files["param"].read_text(encoding="utf-8"))["requantized_tops"]
        ex = self.net.create_extractor()
        ex.set_light_mode(False)
        ex.input(self.input_name, self.to_mat(self._last))
        stored = {}
        for name in tops:
            ret, mat = ex.extract(name, 1)  # type 1: as stored (packed, int8), no conversion
            if ret == 0 and mat.elempack:
                stored[name] = mat.elemsize // mat.elempack
        return {"int8_blobs_at_runtime": sum(1 for b in stored.values() if b == 1), "requantized_blobs_checked": len(stored)}


def int8_layers(param_text: str) -> dict[str, Any]:
    """Count int8 layers in a .param (``8=`` int8_scale_term) and the blobs requantizing layers output."""
    quantized, tops = 0, []
    for line in param_text.splitlines()[2:]:
        t = line.split()
        m = re.search(r"(?:^|\s)8=(\d+)", line)
        if not t or not m or int(m.group(1)) == 0:
            continue
        quantized += 1
        if int(m.group(1)) > 100:
            nb, nt = int(t[2]), int(t[3])
            tops += t[4 + nb : 4 + nb + nt]
    return {"int8_layers": quantized, "requantized_layers": len(tops), "requantized_tops": tops}
