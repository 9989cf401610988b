"""Smallest classifiers that exercise a contract, built at test time (onnx.helper, the TFLite converter), and
a pipeline around one (labels, generated images, config) for the fast tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    from modelport.common.config import Config


def tiny_onnx(
    path: Path,
    *,
    layout: str = "NCHW",
    size: tuple[int | str, int | str] = (32, 32),
    batch: int | str = "1",
    classes: int = 10,
    softmax: bool = True,
    channels: int = 3,
    extra_input: bool = False,
    extra_output: bool = False,
    output_rank: int = 2,
    rank: int = 4,
) -> Path:
    """Conv 3x3 -> ReLU -> global average pool -> Gemm (-> Softmax); ``batch``/``size`` entries may be names (dynamic)."""
    rng = np.random.default_rng(0)
    h, w = size
    dims = [batch, channels, h, w] if layout == "NCHW" else [batch, h, w, channels]
    dims = dims[:rank] if rank < 4 else dims
    nodes, x = [], "image"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, channels, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.5, (8, classes)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (classes,)).astype(np.float32), "fc_b"),
    ]
    nodes += [
        helper.make_node("Conv", [x, "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
    ]
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        out = "probs"
    out_dims = [batch, classes]
    if output_rank == 3:
        inits.append(numpy_helper.from_array(np.array([1, classes, 1], np.int64), "shape3"))
        nodes.append(helper.make_node("Reshape", [out, "shape3"], ["scores3"]))
        out, out_dims = "scores3", [batch, classes, 1]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)]
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_dims)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("second", TensorProto.FLOAT, [1, 4]))
        nodes.append(helper.make_node("Identity", ["second"], ["second_out"]))
        outputs.append(helper.make_tensor_value_info("second_out", TensorProto.FLOAT, [1, 4]))
        outputs = outputs if extra_output else outputs[:1]
    elif extra_output:
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes]))
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_tflite(
    path: Path,
    *,
    full_integer: bool = False,
    calibration: list[np.ndarray] | None = None,
    classes: int = 6,
    conv_head: bool = False,
    dense_on_4d: bool = False,
) -> Path:
    """A Keras conv classifier through the TFLite converter; ``full_integer``: int8 input and output;
    ``conv_head``: a 1x1 conv and a batch-1 RESHAPE to the classes instead of Dense, as MobileNetV2 ends;
    ``dense_on_4d``: pooled with keepdims, flattened, then a Dense with a bias: the converter drops the
    flatten, so FULLY_CONNECTED reads the 1x1x1xC tensor (tflite2onnx makes a Gemm of it that onnx rejects)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((24, 24, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(inp)
    if dense_on_4d:
        x = tf.keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = tf.keras.layers.Flatten()(x)
        x = tf.keras.layers.Dense(classes, activation="softmax", bias_initializer="random_normal")(x)
    elif conv_head:
        x = tf.keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = tf.keras.layers.Conv2D(classes, 1)(x)
        x = tf.keras.layers.Softmax()(tf.keras.layers.Reshape((classes,))(x))
    else:
        x = tf.keras.layers.GlobalAveragePooling2D()(x)
        x = tf.keras.layers.Dense(classes, activation="softmax")(x)
    converter = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, x))
    if full_integer:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [((a.astype(np.float32) - 127.5) / 127.5)[None]] for a in cast("list[np.ndarray]", calibration)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def tiny_tflite_boxes_scores(path: Path, *, calibration: list[np.ndarray] | None = None) -> tuple[Path, Any]:
    """tiny_boxes_scores' Keras twin through the TFLite converter: 24x24 NHWC in, ``scores`` [1, 36, 2] (Softmax)
    and ``boxes`` [1, 36, 4] out; with ``calibration`` (HWC uint8 images) full-integer, int8 in and out, each
    output with its own scale. Returns the file and the Keras model (the float reference)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    inp = tf.keras.Input((24, 24, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.AveragePooling2D(4)(x)
    scores = tf.keras.layers.Softmax(name="scores")(tf.keras.layers.Reshape((36, 2))(tf.keras.layers.Conv2D(2, 1)(x)))
    boxes = tf.keras.layers.Reshape((36, 4), name="boxes")(tf.keras.layers.Conv2D(4, 1, kernel_initializer="random_normal")(x))
    model = tf.keras.Model(inp, [scores, boxes])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([((a.astype(np.float32) - 127.5) / 127.5)[None]] for a in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path, model


def tiny_images(folder: Path, n: int = 4, size: tuple[int, int] = (20, 24)) -> Path:
    """``n`` generated PNGs (eval and calibration images of a tiny model: no photo decoding)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def tiny_pipeline(root: Path, *, tflite: bool = False, **model_kw: Any) -> dict[str, str]:
    """A tiny source (``tiny_onnx(**model_kw)``, default 3x8x8 -> 5 classes; ``tflite``: ``tiny_tflite``, 24x24x3
    -> 5), labels, generated images and its config in ``root``: the env vars that point `modelport` at them, with
    an empty artifacts folder."""
    defaults: dict[str, Any] = {"classes": 5}
    model_kw = defaults | model_kw
    if tflite:
        model = tiny_tflite(root / "tiny.tflite", **model_kw)
    else:
        onnx_defaults: dict[str, Any] = {"size": (8, 8), "batch": 1}
        model = tiny_onnx(root / "tiny.onnx", **onnx_defaults | model_kw)
    labels = root / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(model_kw["classes"])))
    images = tiny_images(root / "images")
    config = root / "tiny.toml"
    # What `modelport init` would write for it, minus the comments; small runs keep the timing steps short.
    config.write_text(f"""[model]
name = "tiny"
path = "{model.name}"
labels = "labels.txt"

[input]
mean = [127.5, 127.5, 127.5]
std = [127.5, 127.5, 127.5]
layout = "NCHW"

[images]
eval = "images"
calibration = "images"
headline = "img0.png"

[bench]
warmup = 1
runs = 3
throughput_seconds = 0.2
cold_start_runs = 2
frame_runs = 4
layer_profile_runs = 3
""")
    return {
        "MODELPORT_CONFIG": str(config),
        "MODELPORT_ARTIFACTS": str(root / "art"),
        "MODELPORT_MODEL": str(model),
        "MODELPORT_LABELS": str(labels),
        "MODELPORT_IMAGES": str(images),
        "MODELPORT_CALIBRATION": str(images),
    }


def tiny_detector(
    path: Path, *, size: tuple[int, int] = (32, 32), classes: int = 3, strides: tuple[int, ...] = (8, 16, 32)
) -> Path:
    """A YOLOX-like head ``[1, N, 5 + C]`` (sigmoids applied), one row per cell of each stride's grid, finest
    first: Conv 3x3 -> ReLU, per stride AveragePool(s) -> Conv 1x1 to 5 + C -> [1, 5 + C, cells], concatenated,
    transposed, Sigmoid. Objectness is biased high, so a few boxes clear an agreement threshold of 0.3."""
    rng = np.random.default_rng(2)
    h, w = size
    k = 5 + classes
    bias = np.zeros(k, np.float32)
    bias[4] = 3.0
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.02, (8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 1.0, (k, 8, 1, 1)).astype(np.float32), "head_w"),
        numpy_helper.from_array(bias, "head_b"),
        numpy_helper.from_array(np.array([1, k, -1], np.int64), "flat_shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["feat"]),
    ]
    levels = []
    for s in strides:
        nodes += [
            helper.make_node("AveragePool", ["feat"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Conv", [f"pool{s}", "head_w", "head_b"], [f"head{s}"]),
            helper.make_node("Reshape", [f"head{s}", "flat_shape"], [f"flat{s}"]),
        ]
        levels.append(f"flat{s}")
    n = sum((h // s) * (w // s) for s in strides)
    nodes += [
        helper.make_node("Concat", levels, ["cells"], axis=2),
        helper.make_node("Transpose", ["cells"], ["rows"], perm=[0, 2, 1]),
        helper.make_node("Sigmoid", ["rows"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n, k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_boxes_scores(path: Path, *, size: tuple[int, int] = (32, 32), stride: int = 4) -> Path:
    """An SSD-like two-output head as RFB-320 ends: ``scores`` [1, N, 2] (Softmax over background/face) and
    ``boxes`` [1, N, 4], in that order, one row per cell of a stride-``stride`` grid: Conv 3x3 -> ReLU ->
    AveragePool, then a 1x1 Conv per head, reshaped to rows. Distinct heads, so a runtime that returned one
    output under the other's name fails the comparison."""
    rng = np.random.default_rng(3)
    h, w = size
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.02, (8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 1.0, (2, 8, 1, 1)).astype(np.float32), "score_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (2,)).astype(np.float32), "score_b"),
        numpy_helper.from_array(rng.normal(0, 1.0, (4, 8, 1, 1)).astype(np.float32), "box_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "box_b"),
        numpy_helper.from_array(np.array([1, 2, -1], np.int64), "score_shape"),
        numpy_helper.from_array(np.array([1, 4, -1], np.int64), "box_shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["feat"]),
        helper.make_node("AveragePool", ["feat"], ["pool"], kernel_shape=[stride, stride], strides=[stride, stride]),
        helper.make_node("Conv", ["pool", "score_w", "score_b"], ["score_map"]),
        helper.make_node("Reshape", ["score_map", "score_shape"], ["score_cells"]),
        helper.make_node("Transpose", ["score_cells"], ["score_rows"], perm=[0, 2, 1]),
        helper.make_node("Softmax", ["score_rows"], ["scores"], axis=2),
        helper.make_node("Conv", ["pool", "box_w", "box_b"], ["box_map"]),
        helper.make_node("Reshape", ["box_map", "box_shape"], ["box_cells"]),
        helper.make_node("Transpose", ["box_cells"], ["boxes"], perm=[0, 2, 1]),
    ]
    n = (h // stride) * (w // stride)
    graph = helper.make_graph(
        nodes,
        "tiny_boxes_scores",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, n, 2]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, n, 4]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def detect_config(model: Path) -> Config:
    """A plain [0, 255] float input config completed by ``model``'s own contract, as `fetch` leaves a detector's
    (its outputs' names and order: what infer_all returns)."""
    from modelport.common.config import Config, ModelConfig
    from modelport.common.preprocess import InputSpec
    from modelport.convert.inspect import inspect

    contract = inspect(model)
    assert contract.size is not None
    spec = InputSpec(size=contract.size)
    if contract.dtype == "float32":  # plain [0, 255]; an int8 input's quantization is the model's
        spec = InputSpec(size=contract.size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    config = Config(model=ModelConfig(task="detect"), input=spec)
    return config.with_contract(contract, model)


def tiny_detector_pipeline(root: Path) -> dict[str, str]:
    """``tiny_pipeline``'s detector twin: a tiny_detector (32x32 -> 21 rows, 3 classes), labels, 4 generated
    photos of another aspect ratio (letterboxed) and its config; [detect] annotations are added by the test."""
    model = tiny_detector(root / "tiny_det.onnx")
    labels = root / "labels.txt"
    labels.write_text("a\nb\nc\n")
    images = tiny_images(root / "images", size=(24, 40))
    config = root / "tiny_det.toml"
    config.write_text(f"""[model]
name = "tiny_det"
path = "{model.name}"
task = "detect"
labels = "labels.txt"

[input]
color = "BGR"
mean = [0, 0, 0]
std = [1, 1, 1]
layout = "NCHW"

[images]
eval = "images"
calibration = "images"
headline = "img0.png"

[detect]
decoder = "yolox"
strides = [8, 16, 32]
score_threshold = 0.05
agreement_score = 0.3

[quantization]
recover = false

[bench]
warmup = 1
runs = 3
throughput = false
cold_start = false
""")
    return {
        "MODELPORT_CONFIG": str(config),
        "MODELPORT_ARTIFACTS": str(root / "art"),
        "MODELPORT_MODEL": str(model),
        "MODELPORT_LABELS": str(labels),
        "MODELPORT_IMAGES": str(images),
        "MODELPORT_CALIBRATION": str(images),
    }


def ort_qdq(source: Path, out: Path, exclude: list[str], **extra_options: Any) -> Path:
    """``source`` quantized by onnxruntime's static QDQ (U8 activations, S8 weights) on three random images of
    its input's shape, ``exclude`` (node names) left in float: the QDQ model every float-layer test reads."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    dims = onnx.load(str(source)).graph.input[0].type.tensor_type.shape.dim
    shape, name = tuple(d.dim_value for d in dims), onnx.load(str(source)).graph.input[0].name

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type information
        def __init__(self) -> None:
            self.feeds = iter([{name: np.random.default_rng(i).random(shape, dtype=np.float32)} for i in range(3)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    quantize_static(
        str(source),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        extra_options=extra_options,
    )
    return out
