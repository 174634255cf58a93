#!/usr/bin/env bash
# Issue 16's run on nvidia-h200-x2, in one device call of about nine minutes:
#   bash benchmarks/studies/farm_h200x2.sh COMMIT
# Carry .whl, filled by `bash benchmarks/studies/fetch_wheels.sh farm` (Dask is not on the device).
# 1. farm_throughput.py: the same candidates (the batch flow's answers and the tests' kernels for softmax and
#    RMSNorm forward and backward) verified and timed by a farm of 1 GPU, then of 2: candidates per minute;
# 2. ddp_step.py under torchrun on both GPUs: the Llama-style training step, backend="llm" against Inductor;
# then one results file, $OUT/<date>-h200x2-multigpu.json ("gpus" and "candidates_per_minute" per farm row).
source "$(dirname "$0")/device_setup.sh" "$1"
python -m pip install -q --no-deps --target /tmp/site .whl/*.whl || exit 2
python -c "import distributed" || exit 2
day=$(date -u +%F)
rc=0
echo "=== $(date -u +%T) farm"
timeout 330 python benchmarks/studies/farm_throughput.py --gpus 1,2 --regions softmax,rmsnorm_fwd,rmsnorm_bwd \
  --out "$OUT/farm.json" || { rc=$?; echo "=== farm: rc=$rc"; }
echo "=== $(date -u +%T) ddp"
timeout 180 torchrun --nproc-per-node 2 benchmarks/studies/ddp_step.py --out "$OUT/ddp.json" \
  || { rc=$?; echo "=== ddp: rc=$rc"; }
python - "$OUT" "$day" <<'PY'
import json, sys
from pathlib import Path
out, day = Path(sys.argv[1]), sys.argv[2]
doc = {"date": day, "rows": []}
for name in ("farm", "ddp"):
    f = out / f"{name}.json"
    if f.is_file():
        part = json.loads(f.read_text())
        doc[name] = part
        doc.setdefault("device", part.get("gpu") or part.get("device"))
        doc.setdefault("torch", part.get("torch"))
        for row in part["rows"]:
            doc["rows"].append({"study": name, **row})
(out / f"{day}-h200x2-multigpu.json").write_text(json.dumps(doc, indent=1))
print(json.dumps([{k: r.get(k) for k in ("study", "gpus", "candidates_per_minute", "backend", "step_ms")}
                  for r in doc["rows"]]))
PY
exit $rc
