"""INT8 calibration for ncnn: weight scales, activation scales, and the .table file.

The table is the text file ncnn2table writes and ncnn2int8 reads:

    <layer>_param_0 s0 s1 ... sN    per-output-channel weight scales of <layer>
    <layer> s                       scale of <layer>'s input (bottom) blob

A scale maps float to int8 as q = round(x * scale), i.e. scale = 127 / threshold.
Activation statistics come from running the FP32 model in the ncnn runtime itself
on the calibration images (the caller supplies that function), so the thresholds
describe exactly the tensors the int8 kernels will see.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .format import Layer, Model, NcnnFormatError

QUANTIZABLE = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
METHODS = ("minmax", "kl", "aciq")
HIST_BINS = 2048
KL_LEVELS = 128  # positive int8 levels a threshold is spread over


def quantizable_layers(model: Model) -> list[Layer]:
    return [la for la in model.layers if la.type in QUANTIZABLE and la.weights and len(la.bottoms) == 1]


def weight_rows(la: Layer) -> int:
    """How many scales a layer has: one per output channel, one per group for depthwise."""
    return la.pint(7, 1) if la.type == "ConvolutionDepthWise" else la.pint(0)


def weight_scales(la: Layer) -> np.ndarray:
    """Symmetric per-output-channel scales from |w|max."""
    w = la.weights[0].data.astype(np.float32)
    absmax = np.abs(w.reshape(weight_rows(la), -1)).max(axis=1)
    # ncnn's int8 winograd F(4,3) for plain 3x3 stride-1 convolutions accumulates in
    # 16 bit and therefore expects 6-bit weights; full 8-bit weights would overflow.
    p = la.pint
    six_bit = (
        la.type == "Convolution"
        and (p(1), p(11, p(1))) == (3, 3)
        and (p(2, 1), p(12, p(2, 1))) == (1, 1)
        and (p(3, 1), p(13, p(3, 1))) == (1, 1)
    )
    qmax = 31.0 if six_bit else 127.0
    # An all-zero channel quantizes to zeros with any scale; 1 keeps the file finite.
    return np.where(absmax > 0, qmax / np.maximum(absmax, 1e-30), 1.0).astype(np.float32)


@dataclass
class BlobStats:
    """Running statistics of one activation blob over the calibration images."""

    absmax: float = 0.0
    count: int = 0
    abs_sum: float = 0.0
    images: int = 0
    channel_sum: np.ndarray | None = None  # sum over images of per-channel means (bias correction)
    hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS))

    def observe(self, x: np.ndarray) -> None:
        a = np.abs(x)
        self.absmax = max(self.absmax, float(a.max(initial=0.0)))
        self.count += x.size
        self.abs_sum += float(a.sum(dtype=np.float64))
        means = x.reshape(x.shape[0], -1).mean(axis=1, dtype=np.float64)
        self.channel_sum = means if self.channel_sum is None else self.channel_sum + means
        self.images += 1

    def observe_histogram(self, x: np.ndarray) -> None:
        a = np.abs(x[x != 0])  # exact zeros (after ReLU) say nothing about the range to keep
        if a.size and self.absmax > 0:
            idx = np.minimum((a * (HIST_BINS / self.absmax)).astype(np.int64), HIST_BINS - 1)
            self.hist += np.bincount(idx, minlength=HIST_BINS)

    @property
    def channel_mean(self) -> np.ndarray:
        if self.channel_sum is None:
            raise ValueError("no calibration image observed: no channel means")
        return self.channel_sum / max(self.images, 1)


def kl_threshold(hist: np.ndarray, absmax: float) -> float:
    """The clip value minimising KL(P || Q) (TensorRT-style entropy calibration).

    For each candidate bin i: P = histogram[:i] with the clipped tail added to its last
    bin; Q = histogram[:i] merged into 128 levels and spread back evenly over the bins
    that were non-empty. The tail is in P but not in Q, which is what clipping costs.
    """
    total = hist.sum()
    if total == 0 or absmax == 0:
        return absmax
    h = hist / total
    tail = np.concatenate([np.cumsum(h[::-1])[::-1], [0.0]])  # tail[i] = sum(h[i:])
    best, best_i = math.inf, HIST_BINS
    for i in range(KL_LEVELS, HIST_BINS + 1):
        p = h[:i].copy()
        p[-1] += tail[i]
        level = np.arange(i) * KL_LEVELS // i
        occupied = h[:i] > 0
        mass = np.bincount(level, weights=h[:i], minlength=KL_LEVELS)
        slots = np.bincount(level, weights=occupied, minlength=KL_LEVELS)
        q = np.where(occupied, (mass / np.maximum(slots, 1))[level], 0.0)
        p /= p.sum()
        q /= q.sum()
        m = p > 0
        kl = float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))
        if kl < best:
            best, best_i = kl, i
    return (best_i + 0.5) * absmax / HIST_BINS


def aciq_threshold(st: BlobStats) -> float:
    """ACIQ (Banner et al. 2019) with a zero-centred Laplace(b) prior, b = E|x|: the clip
    value minimising expected clipping + rounding MSE at 8 bits is 9.89 b."""
    return 9.89 * st.abs_sum / max(st.count, 1)


def calibrate(
    model: Model,
    run_blobs: Callable[[np.ndarray, list[str]], dict[str, np.ndarray]],
    images: Callable[[], Iterable[np.ndarray]],
    method: str,
) -> tuple[dict[str, float], dict[str, BlobStats]]:
    """Input-blob scale of every quantizable layer (keyed by blob name), and the statistics.

    ``run_blobs(image, names)`` runs the FP32 model and returns those blobs as [C, H, W]
    (or [N]) arrays; ``images()`` yields the calibration inputs. KL needs a second pass:
    the histogram range is the absmax found by the first.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    names = list(dict.fromkeys(la.bottoms[0] for la in quantizable_layers(model)))
    stats = {n: BlobStats() for n in names}
    for img in images():
        for n, x in run_blobs(img, names).items():
            stats[n].observe(x)
    if method == "kl":
        for img in images():
            for n, x in run_blobs(img, names).items():
                stats[n].observe_histogram(x)
    scales = {}
    for n, st in stats.items():
        if method == "kl":
            t = kl_threshold(st.hist, st.absmax)
        elif method == "aciq":
            t = aciq_threshold(st)
        else:
            t = st.absmax
        t = min(t, st.absmax)  # past the largest value seen a threshold only costs resolution
        scales[n] = 127.0 / t if t > 0 else 1.0
    return scales, stats


@dataclass
class Table:
    weights: dict[str, np.ndarray]  # layer name -> per-channel weight scales
    bottoms: dict[str, float]  # layer name -> input blob scale
    disabled: set[str] = field(default_factory=set)  # layers kept in float ('#' lines, as ncnn's docs do it)

    @classmethod
    def build(cls, model: Model, blob_scales: dict[str, float]) -> Table:
        layers = quantizable_layers(model)
        return cls({la.name: weight_scales(la) for la in layers}, {la.name: blob_scales[la.bottoms[0]] for la in layers})

    def enabled(self) -> list[str]:
        return [n for n in self.weights if n in self.bottoms and n not in self.disabled]

    def write(self, path: Path) -> None:
        fmt = "{:.9g}".format  # ncnn reads these with %f: plain decimal or exponent both parse

        def off(name: str) -> str:
            return "#" if name in self.disabled else ""

        lines = [f"{off(n)}{n}_param_0 " + " ".join(map(fmt, s)) for n, s in self.weights.items()]
        lines += [f"{off(n)}{n} {fmt(s)}" for n, s in self.bottoms.items()]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Table:
        weights, bottoms, disabled = {}, {}, set()
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            t = line.split()
            if not t or t[0] == "#":
                continue
            name = t[0].lstrip("#")
            try:
                values = [float(x) for x in t[1:]]
            except ValueError:
                if t[0].startswith("#"):
                    continue  # a prose comment
                raise NcnnFormatError(f"not a calibration table line: {line[:60]!r}", path) from None
            if name.endswith("_param_0"):
                name = name[: -len("_param_0")]
                weights[name] = np.asarray(values, np.float32)
            elif "_param_" not in name and values:
                bottoms[name] = values[0]
            else:
                continue
            if t[0].startswith("#"):  # commented out: that layer stays float (mixed precision)
                disabled.add(name)
        return cls(weights, bottoms, disabled)
