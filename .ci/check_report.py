"""Assert the main job's report has the rows and agreement floors the pipeline promises."""

import json
import sys
from pathlib import Path

report = json.load(open(sys.argv[1]))
rows = {r["key"]: r for r in report["results"]}
floors = report["floors"]  # the [accuracy] floors the pipeline verified against
if not report["verify"]:
    sys.exit("report check failed: verification was off ([convert] verify = false)")
reference = report["reference"] or "tflite"  # the source model's own row (tflite or onnx-source)
# What this machine must have measured: every backend of each env this checkout has, from the descriptors the
# report carries. A source row other than this source's, and rows that need hardware missing here, are not expected.
catalogue = report["backends"]
expected = {
    k: b["floors"]
    for k, b in catalogue.items()
    if Path("envs", b["env"]).is_dir() and (k == reference if b["source"] else b["default_row"]) and not b["needs"]
}
problems = []
for key, kind in expected.items():
    r = rows.get(key)
    if r is None:
        problems.append(f"{key}: missing from the report")
        continue
    a = r["agreement"] or {}
    if (report.get("source") or {}).get("all_rows_int8_floors"):
        kind = "int8"  # a quantized source: float rows are one quantization away from it
    if r["status"] != "ok" or not a:
        problems.append(f"{key}: status {r['status']} {r['reason']}")
    elif kind == "float" and (a["top1"] < floors["fp_top1_min"] or a["cosine_min"] < floors["fp_cosine_min"]):
        problems.append(f"{key}: float agreement below floor {a}")
    elif kind == "int8" and (
        a["top1"] < floors["int8_top1_min"]
        or a["cosine_mean"] < floors["int8_cosine_mean_min"]
        or a["cosine_min"] < floors["int8_cosine_min"]
    ):
        problems.append(f"{key}: int8 agreement below floor {a}")
for key in [k for k, b in catalogue.items() if b["needs"] == "gpu" and Path("envs", b["env"]).is_dir()]:
    r = rows.get(key)
    if r is None or (r["status"] == "skipped" and not r["reason"]):
        problems.append(f"{key}: must be measured or skipped with a reason")
for key, r in sorted(rows.items()):
    lat = r["latency_ms"] or {}
    a = r["agreement"] or {}
    print(
        f"{key:15} {r['status']:8} median {lat.get('median', float('nan')):7.2f} ms  "
        f"top1 {a.get('top1', float('nan')):.2f}  cos min {a.get('cosine_min', float('nan')):.4f}  {r['reason'] or ''}"
    )
if problems:
    sys.exit("report check failed:\n  " + "\n  ".join(problems))
print("report check: ok")
