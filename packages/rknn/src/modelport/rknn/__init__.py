"""modelport.rknn: Rockchip RKNN toolchain (rknn-toolkit2). Never a top-level `rknn` module."""
