"""FP32 ncnn model + calibration table -> native ncnn INT8 model (what ncnn2int8 writes).

Per quantized layer: ``8=int8_scale_term`` in the .param; in the .bin the weights
stored as int8 (int8 ModelBin tag), then the bias, the per-channel weight scales and
the input-blob scale. Where a quantized convolution feeds only quantized convolutions
(directly, or through a Split whose every branch is one), the consumer's input scale
is appended as the output scale and 100 is added to int8_scale_term: the runtime then
requantizes inside the producer and the next layer takes int8 directly, instead of
dequantizing to fp32 and quantizing again.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from .format import Blob, Layer, Model, NcnnFormatError
from .table import Table, quantizable_layers, weight_rows

CONV_TYPES = ("Convolution", "ConvolutionDepthWise")


def _bias_key(la: Layer) -> int:
    return 1 if la.type == "InnerProduct" else 5


def _quantize(w: np.ndarray, scales: np.ndarray) -> np.ndarray:
    rows = w.astype(np.float32).reshape(scales.size, -1) * scales[:, None]
    return cast(np.ndarray, np.clip(np.rint(rows), -127, 127).astype(np.int8).reshape(-1))


def corrected_bias(la: Layer, qweights: np.ndarray, scales: np.ndarray, mean_in: np.ndarray) -> np.ndarray:
    """Empirical bias correction (Nagel et al., 2019): rounding the weights shifts each
    output by (Wq/s - W) . E[x]; subtracting that from the bias removes the shift.
    E[x] is per input channel over the calibration images; zero padding at the borders
    is ignored."""
    rows = scales.size
    err = qweights.reshape(rows, -1).astype(np.float32) / scales[:, None] - la.weights[0].data.astype(np.float32).reshape(
        rows, -1
    )
    bias = la.weights[1].data if la.pint(_bias_key(la)) else np.zeros(la.pint(0), np.float32)
    if la.type == "ConvolutionDepthWise":
        if not rows == la.pint(0) == mean_in.size:
            return bias.astype(np.float32)  # grouped (not depthwise) conv: outputs span groups; left as is
        shift = err.sum(axis=1) * mean_in
    else:
        if err.shape[1] % mean_in.size:
            raise NcnnFormatError(f"{la.name}: {mean_in.size} input channels do not divide its {err.shape[1]} weights per output")
        shift = err.reshape(rows, mean_in.size, -1).sum(axis=2) @ mean_in
    return cast(np.ndarray, (bias - shift).astype(np.float32))


def _quantize_layer(la: Layer, wscale: np.ndarray, bscale: float, mean_in: np.ndarray | None) -> None:
    if wscale.size != weight_rows(la):
        raise NcnnFormatError(f"{la.name}: the table has {wscale.size} weight scales, the layer needs {weight_rows(la)}")
    weight, rest = la.weights[0], la.weights[1:]
    if weight.data.dtype == np.int8:
        raise NcnnFormatError(f"{la.name}: weights are int8 already (quantize the FP32 model, not an INT8 one)")
    q = _quantize(weight.data, wscale)
    if mean_in is not None:
        bias = Blob(corrected_bias(la, q, wscale, mean_in), typed=False)
        rest = [bias, *rest[1:]] if la.pint(_bias_key(la)) else [bias]
        la.params[_bias_key(la)] = "1"
    la.weights = [Blob(q, typed=True), *rest, Blob(wscale.astype(np.float32), False), Blob(np.array([bscale], np.float32), False)]
    # ConvolutionDepthWise: 1 = one weight scale per group. Convolution / InnerProduct: 2
    # (their loaders read num_output weight scales for any non-zero value).
    la.params[8] = "1" if la.type == "ConvolutionDepthWise" else "2"


def _int8_consumers(model: Model, blob: str, quantized: set[str]) -> list[Layer] | None:
    """The quantized convs that take ``blob`` (directly or via one Split), or None when
    any consumer needs it in float."""
    users = model.consumers(blob)
    if len(users) == 1 and users[0].type == "Split":
        users = [c for t in users[0].tops for c in model.consumers(t)]
    elif len(users) != 1:
        return None
    ok = all(u.type in CONV_TYPES and u.name in quantized and len(u.bottoms) == 1 for u in users)
    return users if ok and users else None


def quantize_model(
    model: Model,
    table: Table,
    requantize: bool = True,
    input_means: dict[str, np.ndarray] | None = None,
) -> dict[str, list[str]]:
    """Rewrite ``model`` in place. Layers missing from the table or disabled in it ('#'
    lines) stay FP32. Returns the names of the quantized and the requantizing layers."""
    quantized = []
    enabled = set(table.enabled())
    for la in quantizable_layers(model):
        if la.name in enabled:
            mean_in = None if input_means is None else input_means.get(la.bottoms[0])
            _quantize_layer(la, table.weights[la.name], table.bottoms[la.name], mean_in)
            quantized.append(la.name)
    fused = []
    if requantize:
        qset = set(quantized)
        for la in model.layers:
            if la.type not in CONV_TYPES or la.name not in qset:
                continue
            consumers = _int8_consumers(model, la.tops[0], qset)
            # A Split hands the same int8 tensor to every branch: fuse only when all
            # branches expect it at one scale (they do when calibrated on that tensor).
            if not consumers or len({table.bottoms[c.name] for c in consumers}) != 1:
                continue
            la.params[8] = str(int(la.params[8]) + 100)
            la.weights.append(Blob(np.array([table.bottoms[consumers[0].name]], np.float32), False))
            fused.append(la.name)
    return {"quantized": quantized, "requantized": fused}
