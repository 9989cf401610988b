"""Read and write ncnn .param/.bin pairs (text param format, magic 7767517).

Only what post-training quantization needs: the layer graph, each layer's
parameter dictionary (kept as the original text so unknown keys round-trip
untouched) and the weight blobs of the layer types whose .bin layout we know.
A model containing a weighted layer type we do not know is refused, because
the .bin is a plain concatenation and one wrong size shifts every later layer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelport.common.errors import InputError

MAGIC = 7767517
# ModelBin tags (4 bytes in front of a "typed" weight blob; raw blobs have none).
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32 = 0x0002C056  # explicit fp32 marker; a zero tag also means fp32

# Layer types that never read anything from the .bin.
WEIGHTLESS = frozenset(
    "Input Split Concat Slice Crop Reshape Flatten Permute Squeeze ExpandDims Noop Dropout "
    "Pooling Pooling1D Pooling3D ReLU Clip Sigmoid Swish HardSwish HardSigmoid TanH ELU SELU "
    "Mish GELU Softmax LogSoftmax BinaryOp UnaryOp Eltwise Interp Padding ShuffleChannel "
    "Reduction Threshold Power Exp Log AbsVal Bias Tile Cast Quantize Dequantize Requantize "
    "PixelShuffle Reorg DeepCopy Shrink Erf CopyTo Fold Unfold".split()
)


class NcnnFormatError(InputError):
    """The .param/.bin is malformed or uses something this module cannot rewrite."""


@dataclass
class Blob:
    """One entry of a layer's .bin data. `typed` blobs carry a 4-byte storage tag."""

    data: np.ndarray  # float32, float16 or int8, 1-D
    typed: bool


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str] = field(default_factory=dict)
    weights: list[Blob] = field(default_factory=list)

    def pint(self, key: int, default: int = 0) -> int:
        v = self.params.get(key)
        return default if v is None else int(float(v))


@dataclass
class Model:
    layers: list[Layer]
    blob_count: int

    def producer(self, blob: str) -> Layer | None:
        return next((la for la in self.layers if blob in la.tops), None)

    def consumers(self, blob: str) -> list[Layer]:
        return [la for la in self.layers if blob in la.bottoms]

    @property
    def inputs(self) -> list[str]:
        return [t for la in self.layers if la.type == "Input" for t in la.tops]

    @property
    def outputs(self) -> list[str]:
        consumed = {b for la in self.layers for b in la.bottoms}
        return [t for la in self.layers for t in la.tops if t not in consumed]


def read_param(path: Path) -> Model:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NcnnFormatError("not a text .param (binary .param.bin is not supported)", path) from None
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise NcnnFormatError(f"not an ncnn text .param (magic {MAGIC} missing)", path)
    layers = []
    try:
        layer_count, blob_count = (int(x) for x in lines[1][:2])
        for n, t in enumerate(lines[2:], 3):
            nb, nt = int(t[2]), int(t[3])
            if len(t) < 4 + nb + nt:
                raise ValueError(f"line {n}: {nb} bottoms + {nt} tops announced, fewer given")
            params = {}
            for kv in t[4 + nb + nt :]:
                k, _, v = kv.partition("=")
                params[int(k)] = v
            layers.append(Layer(t[0], t[1], t[4 : 4 + nb], t[4 + nb : 4 + nb + nt], params))
    except (ValueError, IndexError) as e:
        raise NcnnFormatError(f"malformed .param: {e}", path) from None
    if len(layers) != layer_count:
        raise NcnnFormatError(f"header says {layer_count} layers, found {len(layers)}", path)
    return Model(layers, blob_count)


def write_param(model: Model, path: Path) -> None:
    lines = [str(MAGIC), f"{len(model.layers)} {model.blob_count}"]
    for la in model.layers:
        head = f"{la.type:<24} {la.name:<24} {len(la.bottoms)} {len(la.tops)}"
        parts = [head, *la.bottoms, *la.tops, *(f"{k}={v}" for k, v in la.params.items())]
        lines.append(" ".join(parts))
    Path(path).write_text("\n".join(lines) + "\n")


def _layout(la: Layer) -> list[tuple[bool, int]]:
    """(typed, element count) of each blob the runtime's load_model reads, in order."""
    p = la.pint
    if la.type in WEIGHTLESS:
        return []
    if la.type in ("Convolution", "Deconvolution", "ConvolutionDepthWise", "DeconvolutionDepthWise"):
        if p(19):  # dynamic weight: weights come from a second bottom blob
            return []
        out = [(True, p(6))] + ([(False, p(0))] if p(5) else [])
        s = p(8)
        if s and la.type == "Convolution":
            out += [(False, p(0)), (False, 1)]
        elif s and la.type == "ConvolutionDepthWise":
            out += [(False, p(7, 1)) if s in (1, 101) else (False, 1), (False, 1)]
        elif s:
            raise NcnnFormatError(f"{la.name}: int8 {la.type} is not supported")
        return out + ([(False, 1)] if s > 100 else [])
    if la.type == "InnerProduct":
        out = [(True, p(2))] + ([(False, p(0))] if p(1) else [])
        return out + ([(False, p(0)), (False, 1)] if p(8) else [])
    if la.type == "BatchNorm":
        return [(False, p(0))] * 4
    if la.type == "Scale":
        n = p(0)
        return ([] if n == -233 else [(False, n)]) + ([(False, n)] if p(1) else [])
    if la.type == "PReLU":
        return [(False, p(0))]
    if la.type == "MemoryData":
        n = max(p(0), 1) * max(p(1), 1) * max(p(11), 1) * max(p(2), 1)
        return [(False, n)]
    raise NcnnFormatError(
        f"layer {la.name}: type {la.type} is not known to the builtin quantizer "
        "(its .bin layout cannot be skipped safely); use the official ncnn tools"
    )


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


def read_bin(model: Model, path: Path) -> None:
    """Fill each layer's `weights` from the .bin, checking the file is consumed exactly."""
    buf = Path(path).read_bytes()
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(buf):
            raise NcnnFormatError(f"truncated at byte {pos} (needs {n} more)", path)
        pos += n
        return buf[pos - n : pos]

    for la in model.layers:
        la.weights = []
        for typed, n in _layout(la):
            if not typed:
                la.weights.append(Blob(np.frombuffer(take(4 * n), "<f4").copy(), False))
                continue
            (tag,) = struct.unpack("<I", take(4))
            if tag == TAG_FP16:
                arr = np.frombuffer(take(_align4(2 * n))[: 2 * n], "<f2").copy()
            elif tag == TAG_INT8:
                arr = np.frombuffer(take(_align4(n))[:n], np.int8).copy()
            elif tag in (0, TAG_FP32):
                arr = np.frombuffer(take(4 * n), "<f4").copy()
            else:  # 256-entry codebook + uint8 indices
                table = np.frombuffer(take(256 * 4), "<f4")
                arr = table[np.frombuffer(take(_align4(n))[:n], np.uint8)].astype(np.float32)
            la.weights.append(Blob(arr, True))
    if pos != len(buf):
        raise NcnnFormatError(f"{len(buf) - pos} trailing bytes: .param and .bin disagree", path)


def write_bin(model: Model, path: Path) -> None:
    with open(path, "wb") as f:
        for la in model.layers:
            for b in la.weights:
                if not b.typed:
                    f.write(np.ascontiguousarray(b.data, "<f4").tobytes())
                    continue
                if b.data.dtype == np.int8:
                    tag, raw = TAG_INT8, b.data.tobytes()
                elif b.data.dtype == np.float16:
                    tag, raw = TAG_FP16, b.data.astype("<f2").tobytes()
                else:
                    tag, raw = 0, np.ascontiguousarray(b.data, "<f4").tobytes()
                f.write(struct.pack("<I", tag) + raw + b"\0" * (_align4(len(raw)) - len(raw)))


def load(param: Path, binfile: Path) -> Model:
    model = read_param(param)
    read_bin(model, binfile)
    return model
