#!/usr/bin/env bash
# Perturbed vs plain inference time on a GPU at the paper's image size (224 px) for its three backbones,
# batch 32 (the paper's training batch; it does not state the inference batch) and batch 1 (per-image latency),
# fp32 (the kit's default for paper 000) and bf16 autocast, both paths at the same precision.
#   OUT=folder bash bench/perturb_gpu.sh     -> folder/bench_perturb.jsonl (one JSON line per setting)
set -euo pipefail
out="${OUT:-.}/bench_perturb.jsonl"
: > "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
for model in resnet50 mobilenet_v2 densenet169; do
  for amp in "" "--amp"; do
    python3 bench/perturb.py --model "$model" --size 224 --batch 32 --n 1024 --repeats 5 $amp --json "$out"
    python3 bench/perturb.py --model "$model" --size 224 --batch 1 --n 64 --repeats 3 $amp --json "$out"
  done
done
