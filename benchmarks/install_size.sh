#!/usr/bin/env bash
# Size and time of a fresh install of the kit, by the README's two routes:
#   default: `pip install -e ".[dev]"` (pip picks PyPI's CUDA build of torch on Linux)
#   cpu:     PyTorch's CPU build first, then the same command
# Each route gets a new virtual environment and no pip cache; prints seconds, MB and the torch build.
#   bash benchmarks/install_size.sh [default|cpu ...] [--cpu-index URL]   (--cpu-index "": pip's own indexes)
# The README's figures came from this on 2 cores; there the CPU wheels came from a local wheel folder
# (TORCH_CPU="torch==2.13.0+cpu torchvision==0.28.0" ... --cpu-index ""), as download.pytorch.org was
# unreachable there.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-$(mktemp -d)}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
TORCH_CPU="${TORCH_CPU:-torch torchvision}"
routes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-index) CPU_INDEX="$2"; shift 2 ;;
    *) routes+=("$1"); shift ;;
  esac
done
[ ${#routes[@]} -eq 0 ] && routes=(default cpu)
git clone -q "$REPO" "$WORK/repo"
for route in "${routes[@]}"; do
  venv="$WORK/venv-$route"
  python -m venv "$venv"
  start=$(date +%s)
  if [ "$route" = cpu ]; then
    index=()
    [ -n "$CPU_INDEX" ] && index=(--extra-index-url "$CPU_INDEX")
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --no-cache-dir $TORCH_CPU "${index[@]}"
  fi
  "$venv/bin/pip" install -q --no-cache-dir -e "$WORK/repo[dev]"
  end=$(date +%s)
  torch=$("$venv/bin/python" -c 'import torch; print(torch.__version__)')
  nvidia=$(du -smc "$venv"/lib/python3*/site-packages/nvidia* 2>/dev/null | tail -1 | cut -f1 || true)
  triton=$(du -smc "$venv"/lib/python3*/site-packages/triton 2>/dev/null | tail -1 | cut -f1 || true)
  echo "$route: $((end - start)) s, $(du -sm "$venv" | cut -f1) MB installed (NVIDIA libraries ${nvidia:-0} MB, triton ${triton:-0} MB), torch $torch"
done
