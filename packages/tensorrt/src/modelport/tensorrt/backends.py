"""The TensorRT backends (entry point group ``modelport.backends``): plain data, nothing here imports TensorRT."""

from modelport.common.backends import Backend

_M = "modelport.tensorrt"
BACKENDS = [
    Backend(
        key="tensorrt-fp32",
        display="TensorRT FP32",
        env="tensorrt",
        precision="fp32",
        rank=20,
        runtime=f"{_M}.runtime:TensorrtFp32Runtime",
        target=f"{_M}.convert:FP32",
        needs="gpu",
    ),
    Backend(
        key="tensorrt-fp16",
        display="TensorRT FP16",
        env="tensorrt",
        precision="fp16",
        rank=21,
        runtime=f"{_M}.runtime:TensorrtFp16Runtime",
        target=f"{_M}.convert:FP16",
        needs="gpu",
    ),
    Backend(
        key="tensorrt-int8",
        display="TensorRT INT8",
        env="tensorrt",
        precision="int8",
        rank=22,
        runtime=f"{_M}.runtime:TensorrtInt8Runtime",
        target=f"{_M}.recover:TARGET",
        fp32_twin="tensorrt-fp32",
        needs="gpu",
        analysis=f"{_M}.analyze:TARGET",
    ),
]
