#!/usr/bin/env bash
# The GPU check, as one script: the tests that need CUDA, then the clip backend with the real
# architectures (random weights, the same compute as trained ones) per stage and in a real-time
# replay, figures into one JSON file.
#   bash benchmarks/gpu_check.sh [--device cuda|cpu] [--out out/gpu_check] [--frames 30]
# --device cpu runs the same steps on CPU (gsplat's CUDA test then skips) to check the script itself.
# Needs the README's venv (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda out=out/gpu_check frames=30
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --frames) frames="$2"; shift 2 ;;
    *) echo "usage: $0 [--device cuda|cpu] [--out DIR] [--frames N (keyframes)]" >&2; exit 2 ;;
  esac
done
py=.venv/bin/python
mkdir -p "$out"
"$py" - "$device" <<'PY'
import sys, torch
dev = sys.argv[1]
if dev.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("gpu_check: --device cuda but torch sees no CUDA device (use --device cpu to check the script)")
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
echo "== tests that use CUDA where present (rasterisers, clip backend, autocast) =="
tests_rc=0
"$py" -m pytest -q -p no:cacheprovider test/rendering test/semantics \
  --junitxml "$out/tests.xml" 2>&1 | tee "$out/tests.log" || tests_rc=$?
echo "== clip backend, real architectures, geometry prompts =="
"$py" benchmarks/bench_semantics.py --arch real --device "$device" --frames "$frames" --realtime \
  --work "$out/semantics" 2>&1 | tee "$out/semantics.log"
"$py" - "$out" "$device" "$tests_rc" <<'PY'
import json, sys, pathlib, xml.etree.ElementTree as ET
import torch
out, device, rc = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
suite = ET.parse(out / "tests.xml").getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
row = {"device": device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
       "tests": {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}, "tests_rc": rc,
       "semantics": json.loads(next((out / "semantics").glob("semantics_real_*_geometry.json")).read_text())}
rt = row["semantics"].get("realtime", {})
row["keeps_up_with_15hz"] = bool(rt) and rt.get("semantics_dropped", 1) == 0 and rt.get("lag_s_p95", 99) < 2.0
(out / "gpu_check.json").write_text(json.dumps(row, indent=1))
print(json.dumps(row, indent=1))
print(f"written to {out / 'gpu_check.json'}")
sys.exit(1 if rc else 0)
PY
