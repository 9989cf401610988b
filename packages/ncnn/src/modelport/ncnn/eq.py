"""The ``eq`` calibration (ncnn2table's method of that name): each layer's input scale searched for the one
whose int8 layer output is closest, by cosine, to the FP32 layer's.

min-max keeps every outlier and spends resolution on it; KL and ACIQ clip by a histogram's shape, and on
ReLU6 activations clip too much (MobileNetV2 on the harder photos: cosine min 0.85 / 0.81 / 0.75). Here each
layer tries thresholds from EQ_LOW to 1 times its input's absmax and keeps the one with the best summed
cosine of its own output, measured in ncnn: the layer's FP32 input blob, fake-quantized at the candidate
threshold, through the layer with its weights already rounded to int8, against the FP32 layer on the
unrounded input. Layers are searched independently (on FP32 inputs), on EQ_IMAGES calibration images.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

import numpy as np

from modelport.common.config import Config
from modelport.common.log import progress

from .bias import Nets, layer_out
from .format import Blob, Model
from .table import quantizable_layers, weight_rows, weight_scales

EQ = "eq"
EQ_IMAGES = 8
EQ_LOW = 0.3  # lowest threshold tried, as a fraction of the input's absmax
EQ_STEPS = 15


def rounded_weights(model: Model) -> Model:
    """A copy of ``model`` whose quantizable layers' weights are rounded to their int8 grid (still float)."""
    import copy

    out = copy.deepcopy(model)
    for la in quantizable_layers(out):
        s = weight_scales(la)
        w = la.weights[0].data.astype(np.float32).reshape(weight_rows(la), -1)
        q = np.clip(np.rint(w * s[:, None]), -127, 127) / s[:, None]
        la.weights[0] = Blob(q.reshape(-1).astype(np.float32), True)
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    n = float(np.sqrt(float(a @ a) * float(b @ b)))
    return float(a @ b) / n if n > 0 else 1.0


def fake_quant(x: np.ndarray, scale: float) -> np.ndarray:
    return (np.clip(np.rint(x * scale), -127, 127) / scale).astype(np.float32)


def eq_scales(
    config: Config,
    model: Model,
    absmax: dict[str, float],
    images: Callable[[], Iterable[np.ndarray]],
    skip: Collection[str] = (),
    scratch: Path | None = None,
) -> dict[str, float]:
    """Input-blob scale of every quantizable layer but the types in ``skip`` (those the model keeps in float), keyed
    by blob as ``table.calibrate`` returns them: of the layers reading one blob, the first's choice (a blob has one
    scale in ncnn's table)."""
    layers = [la for la in quantizable_layers(model) if absmax.get(la.bottoms[0], 0) > 0 and la.type not in skip]
    fractions = np.linspace(EQ_LOW, 1.0, EQ_STEPS)
    scores = {la.name: np.zeros(EQ_STEPS) for la in layers}
    bottoms = list(dict.fromkeys(la.bottoms[0] for la in layers))
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        nets = Nets(config, Path(tmp))
        fp32, rounded = nets.open(model, False), nets.open(rounded_weights(model), False)
        photos = list(images())  # EQ_IMAGES decoded images: their count for the progress line
        try:
            for img in progress(photos, "eq: input scales by layer output cosine", total=len(photos)):
                xs = fp32.blobs(img[None], bottoms)
                for la in layers:
                    x = xs[la.bottoms[0]]
                    want = layer_out(fp32, la, x)
                    for i, f in enumerate(fractions):
                        scale = 127.0 / (f * absmax[la.bottoms[0]])
                        scores[la.name][i] += cosine(layer_out(rounded, la, fake_quant(x, scale)), want)
        finally:
            fp32.deactivate()
            rounded.deactivate()
    out: dict[str, float] = {}
    for la in layers:
        best = float(fractions[EQ_STEPS - 1 - int(np.argmax(scores[la.name][::-1]))])  # a tie: the wider range
        out.setdefault(la.bottoms[0], 127.0 / (best * absmax[la.bottoms[0]]))
    return out
