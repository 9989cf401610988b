"""MNN's conversion and quantization, run as a child process: ``python -m modelport.mnn.worker convert|quantize ...``.

A child because MNN's C++ tools end the process on some models (the offline quantizer aborts with
``std::length_error`` on MobileNetV2): in a child that is a failed step with its reason, not a dead CLI.
Only the compiled entry points are called (``_tools.mnnconvert``, ``MNN.nn``): the wheel's Python wrappers
(the ``mnnconvert``/``mnnquant`` commands, ``MNN.tools``) import a usage logger that pip-installs a package
into whatever pip is on PATH and uploads usage logs, so nothing here imports them.
This module imports nothing of modelport: the parent owns the files, the checks and the verification.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

# nn.compress's calibration choices, by the names the config and the recovery search use.
SCALE_UPDATE = ("moving_average", "maximum")
FEATURE_SCALE = ("per_tensor", "per_channel")
# MNNConvert's weight-only quantization methods, as its flags. Symmetric is its default; on MobileNetV2 it rounds
# the depthwise weights so far (cosine min 0.65 vs the source) that only asymmetric (0.967) and HQQ (0.978,
# asymmetric with its scales fitted by half-quadratic optimisation) meet the INT8 floors.
WEIGHT_QUANT = {"symmetric": [], "asymmetric": ["--weightQuantAsymmetric"], "hqq": ["--hqq"]}


def convert(onnx_path: str, out: str, weight_bits: int, weight_quant: str) -> None:
    import _tools  # the wheel's compiled converter (MNN's MNNConvert), not the MNN.tools wrapper

    argv = ["mnnconvert", "-f", "ONNX", "--modelFile", onnx_path, "--MNNModel", out, "--bizCode", "modelport"]
    if weight_bits:
        argv += [f"--weightQuantBits={weight_bits}", *WEIGHT_QUANT[weight_quant]]
    # It returns True and writes nothing when it refuses a model (its reason went to stderr): the file decides.
    if not _tools.mnnconvert(argv) or not os.path.isfile(out) or os.path.getsize(out) == 0:
        sys.exit("MNNConvert wrote no model (its [ERROR] lines are in the log)")


def input_conv(graph: dict[str, Any], in_name: str) -> str:
    """The name of the first convolution: the one that reads the model's input through no other convolution
    (through MNN's layout conversions, or YOLOX's Focus slices and their concatenation)."""
    memo: dict[str, bool] = {}

    def reads_input(var: Any) -> bool:
        if var.name not in memo:
            memo[var.name] = False  # a var is visited once, whatever the fan-in above it
            memo[var.name] = any(i.name == in_name or (i.op_type != "Convolution" and reads_input(i)) for i in var.inputs)
        return memo[var.name]

    found = [name for name, var in graph.items() if var.op_type == "Convolution" and reads_input(var)]
    if len(found) != 1:
        sys.exit(f"float_input: {len(found)} convolutions read the model's input through no other one, expected one")
    return found[0]


def quantize(
    float_model: str, out: str, calibration: str, scale_update: str, feature_scale: str, float_input: bool = False
) -> None:
    """Full INT8 (weights and activations) by MNN's own calibration: ``nn.compress.train_quant`` on the float
    model as a trainable module, one forward pass per calibration tensor (``calibration``: an .npy of
    [n, ...] batch-1 tensors in the model's layout), then the module saved for inference. ``float_input``:
    the convolution on the raw input stays float (a float module in front of the quantized rest)."""
    import MNN

    nn, F = MNN.nn, MNN.expr
    F.lazy_eval(True)
    graph = F.load_as_dict(float_model)
    inputs, outputs = F.get_inputs_and_outputs(graph)
    if len(inputs) != 1:
        sys.exit(f"MNN INT8 expects one input, the model has {len(inputs)}")
    (in_name,), out_names = list(inputs), list(outputs)  # a detector has several outputs: each keeps its name
    head: Any = None
    start = in_name
    if float_input:
        start = input_conv(graph, in_name)
        head = nn.load_module([graph[in_name]], [graph[start]], False)
    net = nn.load_module([graph[start]], [graph[o] for o in out_names], True)  # True: trainable, what train_quant needs

    def forward(xs: list[Any]) -> list[Any]:
        ys: list[Any] = net.forward(head.forward(xs) if head is not None else xs)  # the head's graph feeds the rest
        return ys

    c = nn.compress
    nn.compress.train_quant(
        net,
        quant_bits=8,
        feature_scale_method=c.PER_CHANNEL if feature_scale == "per_channel" else c.PER_TENSOR,
        scale_update_method=c.MOVING_AVERAGE if scale_update == "moving_average" else c.MAXIMUM,
    )
    # No training happens, but a step per batch is what ends MNN's lazily built graph of that batch: without
    # it each forward pass costs more than the last (minutes on MobileNetV2, seconds with it).
    opt = MNN.optim.SGD(net, 0.0, 0.0, 0.0)
    tensors = np.load(calibration)
    net.train(True)  # statistics are gathered in training mode only
    for t in tensors:
        x = F.const(np.ascontiguousarray(t, np.float32).ravel().tolist(), list(t.shape), F.NCHW, F.float)
        ys = forward([x])
        opt.step(F.const([0.0], []))
        for y in ys:
            y.read()
    net.train(False)
    placeholder = F.placeholder(list(tensors.shape[1:]), F.NCHW)
    placeholder.name = in_name
    predicts = forward([placeholder])
    for y, name in zip(predicts, out_names, strict=True):
        y.name = name
    F.save(predicts, out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m modelport.mnn.worker")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("onnx")
    c.add_argument("out")
    c.add_argument("--weight-bits", type=int, default=0)
    c.add_argument("--weight-quant", choices=list(WEIGHT_QUANT), default="hqq")
    q = sub.add_parser("quantize")
    q.add_argument("float_model")
    q.add_argument("out")
    q.add_argument("calibration")
    q.add_argument("--scale-update", choices=SCALE_UPDATE, default=SCALE_UPDATE[0])
    q.add_argument("--feature-scale", choices=FEATURE_SCALE, default=FEATURE_SCALE[0])
    q.add_argument("--float-input", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "convert":
        convert(a.onnx, a.out, a.weight_bits, a.weight_quant)
    else:
        quantize(a.float_model, a.out, a.calibration, a.scale_update, a.feature_scale, a.float_input)


if __name__ == "__main__":
    main()
