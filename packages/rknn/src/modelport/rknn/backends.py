"""The RKNN backends (entry point group ``modelport.backends``): plain data, nothing here imports rknn-toolkit2.

RKNN rows are written by `rknn all` (simulator, board), not by `bench`: no runtime here.
"""

from modelport.common.backends import Backend

BACKENDS = [
    Backend(
        key="rknn-int8",
        display="RKNN INT8 (simulator)",
        env="rknn",
        precision="int8",
        rank=40,
        analysis="modelport.rknn.layers:run",
    ),
    Backend(key="rknn-fp16", display="RKNN FP16 (simulator)", env="rknn", precision="fp16", rank=41, default_row=False),
    Backend(
        key="rknn-int8-hybrid",
        display="RKNN INT8 hybrid (simulator)",
        env="rknn",
        precision="int8+fp16",
        rank=42,
        default_row=False,
    ),
    Backend(key="rknn-int8-board", display="RKNN INT8 (board via adb)", env="rknn", precision="int8", rank=43, needs="board"),
    Backend(key="rknn-int8-lite", display="RKNN INT8 (board, RKNNLite)", env="rknn", precision="int8", rank=44, needs="board"),
]
