"""A Caffe model run by OpenCV's dnn module (4.x: OpenCV 5 dropped the Caffe importer).

The source model's own runtime: the reference every conversion of a Caffe source is verified
against, as the TFLite interpreter is for a TFLite source. The network's outputs are the
layers nothing consumes (``getUnconnectedOutLayersNames``), in the network's order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.common.errors import InputError, ModelportError
from modelport.common.log import captured
from modelport.runtime.base import LayerTime, Runtime

from .files import read_prototxt, weights_for

if TYPE_CHECKING:
    from modelport.common.onnx_layers import OnnxGraph

SOURCE_PROTOTXT, SOURCE_WEIGHTS = "source/model.prototxt", "source/model.caffemodel"


def load_net(prototxt: Path, weights: Path) -> Any:
    """``cv2.dnn`` Net of the two files, or one InputError naming the one OpenCV refused (its protobuf
    parser's own lines, printed by C++, go to the toolchain log)."""
    import cv2

    read_prototxt(prototxt)
    with captured():
        try:
            cv2.dnn.readNetFromCaffe(str(prototxt))  # the text alone first: a parse error names the prototxt
        except cv2.error as e:
            raise InputError(f"OpenCV cannot parse this Caffe network: {cv_message(e)}", prototxt) from None
        try:
            net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
        except cv2.error as e:
            raise InputError(f"OpenCV cannot read these weights for {prototxt.name}: {cv_message(e)}", weights) from None
    if net.empty():
        raise InputError("OpenCV made an empty network from it", prototxt)
    return net


_CV_ERROR = re.compile(r"error: \([^)]*\) (.*?)(?: in function .*)?$")


def cv_message(e: Exception) -> str:
    """What an OpenCV error says is wrong, without its source file, function and our temp paths."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(e).__name__
    m = _CV_ERROR.search(last)
    text = m.group(1) if m else last
    return re.sub(r" file: \S+", "", text).removeprefix("FAILED: ").rstrip(".")


class CaffeRuntime(Runtime):
    key, backend, precision, display = "caffe", "opencv-dnn", "fp32", "Caffe FP32 (source, OpenCV dnn)"
    input_layout, input_dtype = "NCHW", "float32"
    artifacts = {"prototxt": SOURCE_PROTOTXT, "caffemodel": SOURCE_WEIGHTS}
    requires = ("cv2",)

    @classmethod
    def version(cls) -> str:
        try:
            return version("opencv-python-headless")
        except PackageNotFoundError:
            return "unknown"

    @classmethod
    def made_by(cls) -> str:
        return "fetch"

    def settings(self) -> dict[str, object]:
        return {"backend": "DNN_BACKEND_OPENCV", "target": "DNN_TARGET_CPU", "outputs": getattr(self, "output_names", None)}

    def activate_impl(self) -> None:
        import cv2

        prototxt = self.files["prototxt"]
        weights = self.files.get("caffemodel") or weights_for(prototxt)
        self.net = load_net(prototxt, weights)
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.output_names = list(self.net.getUnconnectedOutLayersNames())

    def outputs(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the network by name (a detector has several), batch first."""
        import cv2

        self.net.setInput(np.ascontiguousarray(tensor, dtype=np.float32))
        try:
            outs = self.net.forward(self.output_names)
        except cv2.error as e:
            raise ModelportError(f"{self.display}: OpenCV could not run it: {cv_message(e)}", self.files["prototxt"]) from None
        return {name: np.array(out, copy=True) for name, out in zip(self.output_names, outs, strict=True)}

    def infer_all_impl(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return self.outputs(tensor)  # the network's blob names are the source model's output names

    def infer_impl(self, tensor: np.ndarray) -> np.ndarray:
        return next(iter(self.outputs(tensor).values()))

    def own_call(self, tensor: np.ndarray) -> Callable[[], object]:
        net, names, blob = self.net, self.output_names, np.ascontiguousarray(tensor, dtype=np.float32)

        def call() -> object:
            net.setInput(blob)
            return net.forward(names)

        return call

    profiler = "cv2.dnn.Net.getPerfProfile"

    def layer_times(self, tensor: np.ndarray, runs: int, graph: OnnxGraph | None) -> list[LayerTime] | None:
        """OpenCV's own per-layer ticks of each forward pass (getPerfProfile: one entry per layer of
        getLayerNames, in its order), averaged over ``runs`` after one untimed pass. caffe2onnx names each
        ONNX node after its Caffe layer, so ``graph`` maps most names."""
        import cv2

        call = self.own_call(tensor)
        call()
        names = list(self.net.getLayerNames())
        total = np.zeros(len(names))
        for _ in range(runs):
            call()
            _, ticks = self.net.getPerfProfile()
            total += np.asarray(ticks, dtype=np.float64).reshape(-1)[: len(names)]
        ms = total / runs / cv2.getTickFrequency() * 1e3
        out: dict[str, LayerTime] = {}
        for i, name in enumerate(names):
            layer = graph.find(name) if graph is not None else None
            key = layer.node if layer else name
            op = self.net.getLayer(i + 1).type  # layer ids start at 1 (0 is the input)
            # An activation OpenCV fused into its conv is the conv's ONNX layer too: one entry, the first op's
            had = out.get(key)
            out[key] = LayerTime(key, had.op if had else op, (had.ms if had else 0.0) + float(ms[i]), layer is not None)
        return list(out.values())

    def deactivate_impl(self) -> None:
        self.__dict__.pop("net", None)
