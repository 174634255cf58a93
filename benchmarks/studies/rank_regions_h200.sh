#!/usr/bin/env bash
# The models suite's ranking (rank_regions.py) on the device machine, in phases that fit 10-minute calls.
#
#   bash benchmarks/studies/rank_regions_h200.sh COMMIT SECONDS:PHASE[:CASES] [...]
#
# RANK_JOBS (4) cases or regions compile side by side; each times its step or region alone (work/gpu.lock).
# e.g. 560:record:bert_prefill,bert_train,... then 420:time 60:table 200:export; after the answers (no GPU:
# `batch_flow.py answers --work .gl/rank --name models_flow` with .gl/rank unpacked here), 560:import.
# The work folder travels as one archive: a call restores .gl/rank.tgz (carried from the last call's $OUT)
# and leaves the new one in $OUT after every phase, so a call cut by its limit still returns what was done.
# (The device returns a bounded number of files: hundreds of region files must go as one archive.)
# Between sessions the archive is committed (benchmarks/results/<date>-h200-models-flow-state.tgz): a new
# checkout copies the newest to .gl/rank.tgz and unpacks it into .gl/rank before `batch_flow.py answers`.
# A call the device cuts returns nothing: CALL_SECONDS (600) is the call's limit (less where the session's
# device time left is less: say so), and every phase is cut to end 45 s before it, leaving time for the
# archives; a phase with under 30 s left is skipped.
deadline=$(($(date +%s) + ${CALL_SECONDS:-600} - 45))
source "$(dirname "$0")/device_setup.sh" "$1"
shift
work=.gl/rank
mkdir -p "$work"
[ -f .gl/rank.tgz ] && tar xzf .gl/rank.tgz -C "$work"
# Inductor's and Triton's on-disk caches (FX graphs, autotuning picks, binaries) travel too, in an archive of
# their own (.gl/inductor.tgz, carried beside rank.tgz): a later call's compiles of the same regions and graphs
# (the verifier's references, the in-graph gate's graphs under max-autotune) start warm.
export TORCHINDUCTOR_CACHE_DIR=$PWD/.gl/inductor TRITON_CACHE_DIR=$PWD/.gl/inductor/triton
mkdir -p .gl/inductor
[ -f .gl/inductor.tgz ] && tar xzf .gl/inductor.tgz -C .gl/inductor
rc=0
for spec in "$@"; do
  IFS=: read -r seconds phase cases <<< "$spec"
  left=$((deadline - $(date +%s)))
  if [ "$left" -lt 30 ]; then echo "=== $spec: skipped, ${left} s left before the call's limit"; rc=124; continue; fi
  [ "$seconds" -gt "$left" ] && { echo "=== $spec: cut to ${left} s (CALL_SECONDS)"; seconds=$left; }
  extra=()
  [ -n "${cases:-}" ] && extra=(--cases "$cases")
  [ "$phase" = time ] && extra+=(--budget $((seconds - 20)))  # ends with what it timed, before the call's limit
  # RANK_MODE=max-autotune records under max-autotune: the export's regions are then tuned against it
  [ "$phase" = record ] && extra+=(--inductor-mode "${RANK_MODE:-default}" --timeout $((seconds - 20)))
  echo "=== $(date -u +%T) $spec"
  if [ "$phase" = import ]; then  # batch_flow.py's step over the same folder (its own --out copy is off)
    timeout "$seconds" python benchmarks/studies/batch_flow.py import --work "$work" --name models_flow --out "" \
      || { rc=$?; echo "=== $spec: rc=$rc"; }
  else
    timeout "$seconds" python benchmarks/studies/rank_regions.py --work "$work" --phase "$phase" --jobs "${RANK_JOBS:-4}" \
      --out "$OUT/ranked" "${extra[@]}" || { rc=$?; echo "=== $spec: rc=$rc"; }
  fi
  tar czf "$OUT/rank.tgz" -C "$work" --exclude=./cache/kernels .
  cp "$work/rank.json" benchmarks/results/models_flow* "$OUT/" 2>/dev/null  # the import's table, if any
done
left=$((deadline + 45 - $(date +%s) - 15))  # never at the cost of what is already in $OUT
if [ "$left" -gt 5 ] && timeout "$left" tar czf "$OUT/inductor.tgz" -C .gl/inductor .; then
  if [ "$(stat -c %s "$OUT/inductor.tgz")" -gt $((40 << 20)) ]; then  # the carry holds 64 MiB in all
    echo "=== Inductor's caches are $(du -h "$OUT/inductor.tgz" | cut -f1) packed: not returned (the next call starts cold)"
    rm "$OUT/inductor.tgz"
  fi
else
  echo "=== Inductor's caches not packed: no time left before the call's limit"
  rm -f "$OUT/inductor.tgz"
fi
du -sh "$work" "$OUT"/*
exit $rc
