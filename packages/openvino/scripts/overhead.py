"""Harness overhead of the OpenVINO rows: `bench`'s timed call vs a bare loop over Runtime.own_call().

`modelport depth overhead` lists only its built-in keys; this runs the same measurement
(modelport.bench.overhead.measure_overhead) for openvino-fp32 / openvino-int8 and prints it.
Run in the openvino env with MODELPORT_ARTIFACTS / MODELPORT_CONFIG set as for `bench`.
"""

from __future__ import annotations

import json
import os
import sys

from modelport.bench.overhead import measure_overhead
from modelport.common.context import StepContext


def main(keys: list[str]) -> None:
    ctx = StepContext(config_path=os.environ.get("MODELPORT_CONFIG", "modelport.toml"),
                      artifacts=os.environ.get("MODELPORT_ARTIFACTS", "artifacts"))
    for key in keys or ["openvino-fp32", "openvino-int8"]:
        d = measure_overhead(ctx, key)
        print(key, json.dumps({k: d[k] for k in ("harness_mean_ms", "bare_mean_ms", "ratio", "ratio_rounds", "meets_goal")}))


if __name__ == "__main__":
    main(sys.argv[1:])
