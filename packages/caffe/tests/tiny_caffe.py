"""A tiny Caffe classifier built at test time: .prototxt (text) and .caffemodel (binary NetParameter).

The binary is written with the Caffe protobuf classes caffe2onnx ships, in a child process: they
need the pure-Python protobuf implementation, which must not leak into the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

PROTOTXT = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: %(h)d dim: %(w)d } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 1 bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: %(classes)d } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

_WRITER = r"""
import json, sys
import numpy as np
from caffe2onnx.proto import caffe_upsample_pb2 as pb
spec = json.loads(sys.argv[1])
net = pb.NetParameter(name="tiny")
for name, blobs in spec["layers"].items():
    layer = net.layer.add(name=name)
    for arr in blobs:
        a = np.asarray(arr, np.float32)
        blob = layer.blobs.add()
        blob.shape.dim.extend(a.shape)
        blob.data.extend(a.ravel().tolist())
open(spec["out"], "wb").write(net.SerializeToString())
"""


def tiny_caffe(folder: Path, *, size: tuple[int, int] = (32, 32), classes: int = 10, name: str = "tiny") -> Path:
    """Conv 3x3 -> ReLU -> global average pool -> InnerProduct -> Softmax; returns the .prototxt
    (its .caffemodel beside it)."""
    rng = np.random.default_rng(0)
    h, w = size
    prototxt = folder / f"{name}.prototxt"
    prototxt.write_text(PROTOTXT % {"h": h, "w": w, "classes": classes})
    spec = {
        "out": str(prototxt.with_suffix(".caffemodel")),
        "layers": {
            "conv": [rng.normal(0, 0.5, (8, 3, 3, 3)).tolist(), rng.normal(0, 0.1, (8,)).tolist()],
            "fc": [rng.normal(0, 0.5, (classes, 8)).tolist(), rng.normal(0, 0.1, (classes,)).tolist()],
        },
    }
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    subprocess.run([sys.executable, "-c", _WRITER, json.dumps(spec)], check=True, env=env)
    return prototxt
