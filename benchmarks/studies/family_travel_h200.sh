#!/usr/bin/env bash
# The family study on the device machine, in runs that fit one 10-minute call.
#
#   bash benchmarks/studies/family_travel_h200.sh COMMIT SECONDS:PHASE:CASES:ROWS [...]
#
# e.g. 300:tune:cross_entropy:- 240:extend:cross_entropy:1024,2048 (ROWS "-" for the default sizes).
# PHASE "gate" profiles recorded regions' in-graph gates instead (gate_overhead.py): CASES is their key16s,
# comma-separated, and each writes $OUT/gate_KEY16.json.
# Each run gets its own time limit, so a slow one cannot take the call with it. The machine does not stay
# warm between calls, so the kernel cache and the results travel: a call restores .gl/family_state.tgz
# (carried from the last call's $OUT) and leaves the new state in $OUT, whatever its runs did.
# Across sessions: benchmarks/results/2026-12-02-h200-family-state-2.tgz (the newest) is that state with the private key
# dropped (its public half stays trusted under keys/): copy it to .gl/family_state.tgz and carry that.
source "$(dirname "$0")/device_setup.sh" "$1"
shift
mkdir -p .gl
[ -f .gl/family_state.tgz ] && tar xzf .gl/family_state.tgz -C .gl
rc=0
for spec in "$@"; do
  IFS=: read -r seconds phase cases rows <<< "$spec"
  extra=()
  [ "$rows" != "-" ] && extra=(--rows "$rows")
  echo "=== $(date -u +%T) $spec"
  if [ "$phase" = gate ]; then
    for key in ${cases//,/ }; do
      timeout "$seconds" python benchmarks/studies/gate_overhead.py --cache .gl/fam --region "$key" \
        --out "$OUT/gate_$key.json" || { rc=$?; echo "=== gate $key: rc=$rc"; }
    done
    continue
  fi
  timeout "$seconds" python benchmarks/studies/family_travel.py --cache .gl/fam --out .gl/family_travel.json \
    --phase "$phase" --cases "$cases" "${extra[@]}" || { rc=$?; echo "=== $spec: rc=$rc"; }
  cp .gl/family_travel.json "$OUT/" 2>/dev/null  # what is done so far comes back even if the call is cut
  mkdir -p "$OUT/logs" && cp .gl/logs/*.log "$OUT/logs/" 2>/dev/null  # and the children's progress lines
done
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv > "$OUT/nvidia-smi.csv" 2>&1
tar czf "$OUT/family_state.tgz" -C .gl fam family_travel.json
cp .gl/family_travel.json "$OUT/"
du -sh .gl/fam "$OUT"/*
exit $rc
