"""Assert the main job's report has the rows and agreement floors the pipeline promises.

python .ci/check_report.py RESULTS_JSON [--envs tf-onnx,ncnn]   (default: every env of the env table)
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env_table() -> tuple[list[str], set[str], set[str]]:
    """The envs, and the keys their steps let fail (a failed row with its reason is then what is expected):
    the classifier's (may_fail) and the default detector's (detect_may_fail)."""
    sys.path.insert(0, str(ROOT / "packages" / "common" / "src"))  # CI's bare python3.11: modelport.common.envs is stdlib-only
    from modelport.common import envs

    try:
        table = envs.load(ROOT)
    except envs.TableError as e:
        sys.exit(f"report check: {e}")
    let_fail = [{k for e in table.envs.values() for k in e.steps.get(step, [])} for step in envs.MAY_FAIL]
    return list(table.envs), let_fail[0], let_fail[1]


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("results", type=Path)
parser.add_argument("--envs", type=lambda v: v.split(","), help="the envs whose rows must be there (comma-separated)")
opts = parser.parse_args()
known, may_fail, detect_may_fail = env_table()
ran = set(opts.envs or known)
if ran - set(known):
    sys.exit(f"report check: --envs {','.join(sorted(ran - set(known)))}: not in the env table ({', '.join(known)})")
report = json.load(open(opts.results))
# A detector's rows (the default detector's folder merged in) are judged by their boxes, apart from the classifier's.
detector_models = {r["model"] for r in report["results"] if (r["agreement"] or {}).get("detect")}
rows = {r["key"]: r for r in report["results"] if r["model"] not in detector_models}
floors = report["floors"]  # the [accuracy] floors the pipeline verified against
if not report["verify"]:
    sys.exit("report check failed: verification was off ([convert] verify = false)")
reference = report["reference"] or "tflite"  # the source model's own row (tflite or onnx-source)
# What this machine must have measured: every backend of each env that ran, from the descriptors the
# report carries. A source row other than this source's, and rows that need hardware missing here, are not expected.
catalogue = report["backends"]
expected = {
    k: b["floors"]
    for k, b in catalogue.items()
    if b["env"] in ran and (k == reference if b["source"] else b["default_row"]) and not b["needs"]
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
    if r["status"] == "failed" and key in may_fail and r["reason"]:
        continue  # let fail by its env's steps, and it says why
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
    layers = r.get("layer_profile")
    if r["status"] == "ok" and not (layers and (len(layers["slowest"]) >= 3 or layers["reason"])):
        problems.append(f"{key}: neither its three slowest layers nor why its toolchain has none ([bench] layer_profile)")
for key in [k for k, b in catalogue.items() if b["needs"] == "gpu" and b["env"] in ran]:
    r = rows.get(key)
    if r is None or (r["status"] == "skipped" and not r["reason"]):
        problems.append(f"{key}: must be measured or skipped with a reason")
for r in report["results"]:
    if r["model"] not in detector_models:
        continue
    d = (r["agreement"] or {}).get("detect") or {}
    if r["status"] == "failed" and r["key"] in detect_may_fail and r["reason"]:
        print(f"{r['model']} {r['key']:15} failed (may fail) {r['reason']}")
        continue
    if r["status"] != "ok" or not d:
        problems.append(f"{r['model']} {r['key']}: status {r['status']} {r['reason']}")
    elif r["precision"] != "int8" and (
        d["f1"] < floors["detect_fp_f1_min"]
        or (d["map"] is not None and d["map"] < d["source_map"] - floors["detect_fp_map_drop_max"])
    ):
        problems.append(f"{r['model']} {r['key']}: detector float agreement below floor {d}")
    elif r["precision"] == "int8" and (
        d["f1"] < floors["detect_int8_f1_min"]
        or (d["map"] is not None and d["map"] < d["source_map"] * floors["detect_int8_map_ratio_min"])
    ):
        problems.append(f"{r['model']} {r['key']}: detector int8 agreement below floor {d}")
    print(f"{r['model']} {r['key']:15} {r['status']:8} F1 vs source {d.get('f1', float('nan')):.3f}  mAP {d.get('map')}")
for r in report["results"]:  # a row whose median and its own concurrency-1 p50 disagree must say so
    lat, c1 = r["latency_ms"] or {}, next((t["p50"] for t in r.get("throughput") or [] if t["concurrency"] == 1), None)
    if lat and c1 and max(lat["median"], c1) >= 1.3 * min(lat["median"], c1) and not r.get("unsteady"):
        problems.append(f"{r['model']} {r['key']}: median {lat['median']:.2f} ms vs {c1:.2f} ms at concurrency 1, not flagged")
    if r.get("unsteady"):
        print(f"note: {r['model']} {r['key']} UNSTEADY: {r['unsteady']}")
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
