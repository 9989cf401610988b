"""TensorRT's implicit INT8 calibration, fed by the common calibration set.

Three small parts, so everything but the TensorRT hand-off runs without a GPU:

- ``CalibrationFeeder``: the batch stream TensorRT pulls (``get_batch``) and the
  calibration cache it reads and writes. Pure Python + numpy.
- a staging strategy that puts a host batch where TensorRT can read it and returns the
  address: ``PycudaStaging`` (device memory, the real one) or ``HostStaging`` (host
  memory; for tests and for checking the stream without a GPU).
- ``entropy_calibrator(feeder)``: the ``trt.IInt8EntropyCalibrator2`` subclass,
  created only when TensorRT is imported. Deprecated since TensorRT 10.1 and removed
  in 11, which is why envs/tensorrt pins 10.x; explicit quantization (QDQ) is the
  default path and this one the fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelport.common.log import warn


class Staging(Protocol):
    def put(self, name: str, batch: np.ndarray) -> int:
        """Copy ``batch`` for input ``name`` to memory TensorRT reads; return its address."""

    def free(self) -> None: ...


class HostStaging:
    """Host buffers, reused per input name; the address is the numpy buffer's."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def put(self, name: str, batch: np.ndarray) -> int:
        buf = self.buffers.get(name)
        if buf is None or buf.shape != batch.shape or buf.dtype != batch.dtype:
            buf = self.buffers[name] = np.empty_like(batch)
        np.copyto(buf, batch)
        return int(buf.ctypes.data)

    def free(self) -> None:
        self.buffers.clear()


class PycudaStaging:
    """One device allocation per input, filled with a synchronous copy (calibration is not timed).

    Works in the device's primary context, the one TensorRT's CUDA runtime calls use,
    pushed here and popped by ``free``.
    """

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self._cuda = cuda
        self._ctx = cuda.Device(device).retain_primary_context()
        self._ctx.push()
        self.buffers: dict[str, tuple[Any, int]] = {}  # name -> (pycuda DeviceAllocation, bytes)

    def put(self, name: str, batch: np.ndarray) -> int:
        alloc = self.buffers.get(name)
        if alloc is None or alloc[1] != batch.nbytes:
            if alloc is not None:
                alloc[0].free()
            alloc = self.buffers[name] = (self._cuda.mem_alloc(batch.nbytes), batch.nbytes)
        self._cuda.memcpy_htod(alloc[0], np.ascontiguousarray(batch))
        return int(alloc[0])

    def free(self) -> None:
        for alloc, _ in self.buffers.values():
            alloc.free()
        self.buffers.clear()
        if self._ctx is not None:
            self._cuda.Context.pop()
            self._ctx.detach()
            self._ctx = None


class CalibrationCache:
    """Read the previous cache (when the caller judged it still valid); write the new one."""

    def __init__(self, write_to: Path, read_from: Path | None = None):
        self.write_to, self.read_from = Path(write_to), read_from
        self.data: bytes | None = None  # what TensorRT read or wrote, to commit with the engine

    def read(self) -> bytes | None:
        if self.read_from is None or not Path(self.read_from).is_file():
            return None
        data = Path(self.read_from).read_bytes()
        if not data:
            return None  # an empty cache would make TensorRT skip calibration with no scales
        self.data = data
        return data

    def write(self, data: bytes) -> None:
        self.data = bytes(data)
        self.write_to.write_bytes(self.data)


class CalibrationFeeder:
    """Batches of the calibration tensors, in order, shaped like the network input.

    ``tensors`` are batch-1 arrays (``CalibrationSet.tensors(layout, "float32")``);
    they are stacked into batches of ``input_shape[0]``. A last partial batch is
    dropped (TensorRT needs every batch at the profile's shape) and said so.
    """

    def __init__(
        self,
        tensors: Iterable[np.ndarray],
        input_name: str,
        input_shape: Sequence[int],
        staging: Staging,
        cache: CalibrationCache,
        dtype: str = "float32",
    ):
        if any(int(d) < 1 for d in input_shape):
            raise ValueError(f"calibration input shape must be static, got {tuple(input_shape)}")
        self.input_name, self.input_shape = input_name, tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        self.staging, self.cache = staging, cache
        self._tensors: Iterator[np.ndarray] = iter(tensors)
        self.batches = 0  # batches handed to TensorRT
        self.images = 0
        self.dropped = 0
        self.error: BaseException | None = None  # raised again by the caller after the build

    @property
    def batch_size(self) -> int:
        return self.input_shape[0]

    def next_batch(self) -> np.ndarray | None:
        items = []
        for t in self._tensors:
            t = np.asarray(t)
            if t.shape != (1, *self.input_shape[1:]):
                raise ValueError(f"calibration tensor {t.shape} does not fit input {self.input_name} {self.input_shape}")
            items.append(t)
            if len(items) == self.batch_size:
                break
        if len(items) < self.batch_size:
            if items:
                self.dropped += len(items)
                warn(f"calibration: last {len(items)} image(s) dropped (batch size {self.batch_size})")
            return None
        batch = np.ascontiguousarray(np.concatenate(items, axis=0), dtype=self.dtype)
        self.images += len(items)
        return batch

    def get_batch(self, names: Sequence[str]) -> list[int] | None:
        """TensorRT's ``get_batch``: one device address per name, or None when done.

        Exceptions must not cross back into TensorRT (it would end calibration with no
        explanation): they are kept in ``error`` and the stream ends.
        """
        try:
            if list(names) != [self.input_name]:
                raise ValueError(f"TensorRT asked for inputs {list(names)}, the calibration feeds {self.input_name!r}")
            batch = self.next_batch()
            if batch is None:
                return None
            ptr = self.staging.put(self.input_name, batch)
            self.batches += 1
            return [ptr]
        except Exception as e:  # noqa: BLE001 - re-raised by the builder after TensorRT returns
            self.error = e
            return None

    def read_calibration_cache(self) -> bytes | None:
        return self.cache.read()

    def write_calibration_cache(self, data: bytes | memoryview) -> None:
        self.cache.write(bytes(data))

    def close(self) -> None:
        self.staging.free()


def entropy_calibrator(feeder: CalibrationFeeder) -> Any:
    """The TensorRT calibrator object around ``feeder`` (imports tensorrt)."""
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]  # tensorrt ships no type information: its base class is Any here
        def __init__(self) -> None:
            # pybind11 trampolines must have the base initialised explicitly.
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.feeder = feeder

        def get_batch_size(self) -> int:
            return feeder.batch_size

        def get_batch(self, names: Sequence[str]) -> list[int] | None:
            return feeder.get_batch(names)

        def read_calibration_cache(self) -> bytes | None:
            return feeder.read_calibration_cache()

        def write_calibration_cache(self, cache: bytes | memoryview) -> None:
            feeder.write_calibration_cache(cache)

    return EntropyCalibrator()
