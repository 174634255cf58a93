#!/usr/bin/env bash
# The H200 run, one device call at a time: a shard of the cases per visible GPU, each shard a
# separate process (so every case's modes share one process and one GPU) with its own results
# file, resumed from benchmarks/results/wip/ when a previous call left it there.
#
#   bash benchmarks/h200.sh OUT_DIR [GIT_SHA]        # e.g. bash benchmarks/h200.sh $OUT 1a2b3c4
#
# Between calls, copy OUT_DIR/*.json to benchmarks/results/wip/ (untracked files travel with the
# tree). Keep the same GPU count across calls: the shard files are named after it. Compile threads
# are split between the shards (cores / GPUs) so cold compile times match a one-GPU machine's share.
set -u
out=${1:?usage: bash benchmarks/h200.sh OUT_DIR [GIT_SHA]}
sha=${2:-unknown}
budget=${BENCH_TIME_BUDGET:-420}
cd "$(dirname "$0")/.." || exit 2
dry=${BENCH_DRY:-}  # BENCH_DRY=1: print the shard commands only
[ -z "$dry" ] && { python -m pip install --no-deps --no-build-isolation -e . -q || exit 2; }
mkdir -p "$out"
cp benchmarks/results/wip/*.json "$out"/ 2>/dev/null
gpus=${BENCH_GPUS:-$(python -c "import torch; print(torch.cuda.device_count())")}
[ "$gpus" -ge 1 ] || { echo "benchmarks/h200.sh: torch sees no GPU (for the CPU smoke test: run.py --device cpu --tiny)" >&2; exit 2; }

case "$gpus" in
  1) shards=("regions,llama_prefill,llama_train,qwen2_prefill,qwen2_train,gpt2_prefill,gpt2_train,bert_prefill,bert_train,mixtral_prefill,mixtral_train") ;;
  2|3) shards=("regions,gpt2_prefill,gpt2_train,bert_prefill,bert_train"
               "llama_prefill,llama_train,qwen2_prefill,qwen2_train,mixtral_prefill,mixtral_train") ;;
  4|5|6|7) shards=("regions,bert_prefill,bert_train" "llama_prefill,llama_train,gpt2_prefill"
                   "qwen2_prefill,qwen2_train,gpt2_train" "mixtral_prefill,mixtral_train") ;;
  *) shards=("regions" "llama_prefill,gpt2_prefill,bert_prefill" "llama_train" "qwen2_prefill,bert_train"
             "qwen2_train" "mixtral_prefill" "mixtral_train" "gpt2_train") ;;
esac
n=${#shards[@]}
threads=$(( $(nproc) / n )); [ "$threads" -lt 1 ] && threads=1

for i in "${!shards[@]}"; do
  [ -n "$dry" ] && { echo "GPU $i: ${shards[$i]}"; continue; }
  # A tuned cache to benchmark (BENCH_LLM_CACHE, else LLM_INDUCTOR_CACHE_DIR) is copied per shard, so the
  # shards never share a database; without one, llm runs on an empty cache plus the bundled pack.
  src=${BENCH_LLM_CACHE:-${LLM_INDUCTOR_CACHE_DIR:-}}
  [ -n "$src" ] && [ -d "$src" ] && [ ! -d "$out/llm_cache_$i" ] && cp -r "$src" "$out/llm_cache_$i"
  CUDA_VISIBLE_DEVICES=$i TORCHINDUCTOR_COMPILE_THREADS=$threads LLM_INDUCTOR_CACHE_DIR="$out/llm_cache_$i" \
    python benchmarks/run.py --suite all --case "${shards[$i]}" --out "$out/h200-${n}x-$i.json" --resume \
      --time-budget "$budget" --git-commit "$sha" > "$out/h200-${n}x-$i.log" 2>&1 &
done
[ -n "$dry" ] && exit 0
wait
for f in "$out"/h200-"${n}"x-*.log; do echo "== $f"; tail -n 4 "$f"; done
