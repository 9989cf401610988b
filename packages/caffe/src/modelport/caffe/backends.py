"""The Caffe source row (entry point group ``modelport.backends``): plain data, nothing here imports OpenCV."""

from modelport.common.backends import Backend

BACKENDS = [
    Backend(
        key="caffe",
        display="Caffe FP32 (source, OpenCV dnn)",
        env="tf-onnx",
        precision="fp32",
        rank=2,
        runtime="modelport.caffe.runtime:CaffeRuntime",
        source=True,
        default_row=False,  # only when the source model is a Caffe one
    ),
]
