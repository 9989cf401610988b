"""modelport.runtime: one Runtime interface over every toolchain, shared by convert, bench, rknn and openvino."""
