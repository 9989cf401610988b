"""Empirical bias correction of an ncnn INT8 model: the search methods ``<calibration>+bc`` and ``+fbc``.

Weight rounding and activation clipping shift each quantized layer's output mean, channel by channel, and
every later layer takes that shift as signal. ncnn's int8 Convolution, ConvolutionDepthWise and InnerProduct
add a float bias after dequantizing their sum, so a measured shift folds into that bias exactly. The shift is
measured by ncnn itself, the FP32 and the INT8 net on the calibration images, before the layer's fused
activation (the bias moves the pre-activation mean; after a ReLU6 part of the shift is clipped away):

- fast (``+bc``, as NNCF's FastBiasCorrection): each layer's own error, the FP32 and the INT8 layer both fed
  the FP32 model's input blob; every layer corrected at once (own errors only: nothing is counted twice).
- full (``+fbc``, as NNCF's BiasCorrection): layer by layer in graph order, the INT8 layer fed the INT8
  model's own input blob (every earlier layer's error in it, already corrected), on FULL_IMAGES images.

This works on the INT8 .param/.bin as written, whichever tools wrote it (the builtin quantizer or
ncnn2int8). The nets that measure output float (no requantize: the consumer's quantize is the same
rounding) and leave the measured layers' activations out; the model written keeps both.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np

from modelport.common.config import Config
from modelport.common.errors import InputError
from modelport.common.log import progress

from .format import Blob, Layer, Model, load, write_bin, write_param
from .runtime import NcnnInt8Runtime, NcnnRuntime
from .table import QUANTIZABLE

CORRECTIONS = {
    "bc": "fast bias correction (each layer's own error, measured in ncnn)",
    "fbc": "full bias correction (layer by layer, on the INT8 model's own inputs)",
}
FULL_IMAGES = 16  # full correction runs the INT8 model once per layer and image: its images, spread over the set
ACTIVATION_KEYS = (9, -23310)  # activation_type, activation_params (an array: key -23300 - 10)


def split_method(method: str, calibrations: Iterable[str]) -> tuple[str, str | None]:
    """``kl+bc`` -> ("kl", "bc"); a calibration or a correction this toolchain does not have is refused in one line."""
    head, *opts = method.split("+")
    known = list(calibrations)
    problems = []
    if head not in known:
        problems.append(f"calibration {head!r} is not one of {', '.join(known)}")
    unknown = [o for o in opts if o not in CORRECTIONS]
    if unknown:
        problems.append(
            f"unknown option {', '.join('+' + o for o in unknown)} (known: {', '.join('+' + o for o in CORRECTIONS)})"
        )
    if len(opts) > 1:
        problems.append("one bias correction at most (+bc or +fbc)")
    if problems:
        raise InputError(f"ncnn INT8 method {method!r}: {'; '.join(problems)}")
    return head, opts[0] if opts else None


def quantized(model: Model) -> list[Layer]:
    """The layers the INT8 model runs in int8 (``8=`` int8_scale_term set), in graph order."""
    return [la for la in model.layers if la.type in QUANTIZABLE and la.pint(8)]


def float_outputs(model: Model, bare: Collection[str] = ()) -> Model:
    """A copy of ``model`` whose int8 layers output float (no requantize), the layers in ``bare`` without their
    fused activation."""
    out = copy.deepcopy(model)
    for la in out.layers:
        s = la.pint(8)
        if la.type in QUANTIZABLE and s > 100:
            la.params[8] = str(s - 100)
            la.weights = la.weights[:-1]  # the output scale requantizing appends
        if la.name in bare:
            for k in ACTIVATION_KEYS:
                la.params.pop(k, None)
    return out


def add_bias(la: Layer, shift: np.ndarray) -> None:
    """Add ``shift`` (per output channel) to ``la``'s float bias, giving it one if it has none."""
    key = 1 if la.type == "InnerProduct" else 5
    if la.pint(key):
        la.weights[1] = Blob((la.weights[1].data.astype(np.float32) + shift).astype(np.float32), False)
    else:
        la.weights.insert(1, Blob(shift.astype(np.float32), False))
        la.params[key] = "1"


def channel_means(x: np.ndarray) -> np.ndarray:
    """[C, H, W] (or [N]) -> the mean of each channel (float64)."""
    return cast(np.ndarray, np.asarray(x, np.float64).reshape(x.shape[0], -1).mean(axis=1))


class Nets:
    """ncnn nets over in-memory models, written to a scratch folder and loaded with the run's [ncnn] options."""

    def __init__(self, config: Config, folder: Path):
        # One thread: the measuring runs one layer at a time, thousands of short calls, and a second OpenMP thread
        # only adds a barrier to each (under load a spinning one: eq on MobileNetV2 took minutes an image).
        self.config, self.folder = config.model_copy(update={"ncnn": config.ncnn.model_copy(update={"threads": 1})}), folder
        self.count = 0

    def open(self, model: Model, int8: bool) -> NcnnRuntime:
        self.count += 1
        param, binfile = self.folder / f"m{self.count}.param", self.folder / f"m{self.count}.bin"
        write_param(model, param)
        write_bin(model, binfile)
        cls = NcnnInt8Runtime if int8 else NcnnRuntime
        return cls(self.config, {"param": param, "bin": binfile}).activate()


def layer_out(rt: NcnnRuntime, la: Layer, x: np.ndarray) -> np.ndarray:
    """``la``'s output with ``x`` as its input blob: ncnn runs that layer alone."""
    import ncnn

    ex = rt.net.create_extractor()
    ex.input(la.bottoms[0], ncnn.Mat(np.ascontiguousarray(x, np.float32)))
    ret, mat = ex.extract(la.tops[0])
    if ret != 0:
        raise InputError(f"ncnn extract({la.tops[0]}) of layer {la.name} returned {ret}", rt.files["param"])
    return np.array(mat).copy()


def correct(
    config: Config,
    fp32: Model,
    int8: Model,
    images: Callable[[], Iterable[np.ndarray]],
    full: bool,
    scratch: Path | None = None,
) -> dict[str, Any]:
    """Fold the measured output-mean shift of every int8 layer of ``int8`` into its bias (in place).
    ``images()`` yields the calibration images (uint8 HWC); ``fp32`` is the model ``int8`` was made of (same
    layer and blob names). Returns {"mode", "layers", "images", "max_shift"}."""
    layers = quantized(int8)
    if not layers:
        return {"mode": "full" if full else "fast", "layers": 0, "images": 0, "max_shift": 0.0}
    names = {la.name for la in layers}
    bottoms = list(dict.fromkeys(la.bottoms[0] for la in layers))
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        nets = Nets(config, Path(tmp))
        fp32_net, fp32_bare = nets.open(fp32, False), nets.open(float_outputs(fp32, names), False)
        want: dict[str, np.ndarray] = {}  # layer -> FP32 pre-activation channel means, summed over images
        got: dict[str, np.ndarray] = {}  # fast: layer -> INT8 pre-activation means on the FP32 inputs
        int8_bare = None if full else nets.open(float_outputs(int8, names), True)
        count = 0
        photos = list(images())  # decoded once: the full correction runs them once per layer
        for img in progress(photos, "bias correction: layer means", total=len(photos)):
            xs = fp32_net.blobs(img[None], bottoms)
            for la in layers:
                x = xs[la.bottoms[0]]
                want[la.name] = want.get(la.name, 0) + channel_means(layer_out(fp32_bare, la, x))
                if int8_bare is not None:
                    got[la.name] = got.get(la.name, 0) + channel_means(layer_out(int8_bare, la, x))
            count += 1
        shifts: dict[str, np.ndarray] = {}
        if not full:
            shifts = {n: (want[n] - got[n]) / count for n in names}
            for la in layers:
                add_bias(la, shifts[la.name].astype(np.float32))
        else:
            for la in progress(layers, "bias correction: layer by layer", total=len(layers)):
                # the INT8 model as corrected so far: the layer's input carries the earlier layers' corrected error
                own = nets.open(float_outputs(int8), True)
                bare = nets.open(float_outputs(int8, {la.name}), True)
                q = np.zeros_like(want[la.name])
                for img in photos:
                    x = own.blobs(img[None], [la.bottoms[0]])[la.bottoms[0]]
                    q += channel_means(layer_out(bare, la, x))
                own.deactivate()
                bare.deactivate()
                shifts[la.name] = (want[la.name] - q) / count
                add_bias(la, shifts[la.name].astype(np.float32))
        for rt in (fp32_net, fp32_bare, int8_bare):
            if rt is not None:
                rt.deactivate()
    return {
        "mode": "full" if full else "fast",
        "layers": len(layers),
        "images": count,
        "max_shift": round(float(max(np.abs(s).max(initial=0.0) for s in shifts.values())), 6),
    }


def correct_files(
    config: Config, fp32: tuple[Path, Path], int8: tuple[Path, Path], images: Callable[[], Iterable[np.ndarray]], full: bool
) -> dict[str, Any]:
    """``correct`` on the INT8 model's files ``int8`` (param, bin), rewritten in place."""
    model = load(*int8)
    made = correct(config, load(*fp32), model, images, full, scratch=int8[0].parent)
    write_param(model, int8[0])
    write_bin(model, int8[1])
    return made
