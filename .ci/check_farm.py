"""Check the farm simulation's merged report: every device has its own rows, nothing overwritten."""

import json
import sys
from typing import Any

report = json.load(open(sys.argv[1]))
rows: dict[str, dict[str, dict[str, Any]]] = {}
for r in report["results"]:
    rows.setdefault(r["device_key"], {})[r["key"]] = r
cpu = ["tflite", "onnx", "onnx-int8"]
expected = {"farm-sim-a": cpu + ["ncnn", "ncnn-int8"], "farm-sim-b": cpu, "farm-sim-c": cpu + ["ncnn", "ncnn-int8"]}
problems = []
if sorted(rows) != sorted(expected):
    problems.append(f"devices {sorted(rows)} != {sorted(expected)}")
for device, keys in expected.items():
    got = rows.get(device, {})
    if sorted(got) != sorted(keys):
        problems.append(f"{device}: rows {sorted(got)} != {sorted(keys)}")
    for k, r in got.items():
        if r["status"] != "ok" or not r["latency_ms"]:
            problems.append(f"{device} {k}: {r['status']} {r['reason']}")
        elif r["relative_speed"] is None:
            problems.append(f"{device} {k}: no speed ratio against its own device's reference")
threads = {d: rows.get(d, {}).get("tflite", {}).get("settings", {}).get("threads") for d in expected}
if threads.get("farm-sim-c") != 1 or threads.get("farm-sim-a") == 1:
    problems.append(f"thread settings not kept per device: {threads}")
if len(report["results"]) != sum(map(len, expected.values())):
    problems.append(f"{len(report['results'])} rows, expected {sum(map(len, expected.values()))}")
for device in expected:
    line = ", ".join(f"{k} {r['latency_ms']['median']:.2f} ms" for k, r in rows.get(device, {}).items() if r["latency_ms"])
    print(f"{device}: {line}")
if problems:
    sys.exit("farm check failed:\n  " + "\n  ".join(problems))
print("farm check: ok (3 devices, every row kept)")
