"""modelport.bench: one Runtime interface over every toolchain, the benchmark runner, the report."""
