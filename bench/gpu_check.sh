#!/usr/bin/env bash
# The GPU check: on a machine with CUDA torch and nothing of this project, install the other dependencies from
# wheels carried in .whl/, run the gpu tests, then the GPU benchmark, and print its one table.
#
#   bash bench/gpu_check.sh --download   # here, with network: fetch the wheels into .whl/ (cp312, manylinux x86-64)
#   bash bench/gpu_check.sh              # there, from the repo root: install, test, benchmark
#
# The installed torch is never replaced: torch and nvidia-* wheels in .whl/ are skipped, and the rest go to
# /tmp/site with --no-deps (the CUDA image already has numpy, scipy, scikit-learn, safetensors, pillow, tqdm,
# huggingface-hub, pytest; diffusers and importlib-metadata are what it lacks).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(diffusers==0.42.1 importlib-metadata==9.1.0)

if [[ "${1:-}" == "--download" ]]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  exit 0
fi

python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
carried=()
for wheel in .whl/*.whl; do
  [[ -e "$wheel" ]] || continue
  case "$(basename "$wheel")" in torch-*|nvidia_*|triton-*) echo "skipping $wheel (never replace torch)";; *) carried+=("$wheel");; esac
done
if (( ${#carried[@]} )); then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${carried[@]}"
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" GENREG_HOME="${GENREG_HOME:-/tmp/genreg-home}" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'the carried wheels replaced the CUDA torch'"

status=0
python3 -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider -o addopts="" || status=$?
python3 bench/bench_gpu.py --device cuda --json "${OUT:-/tmp}/bench_gpu.json" "$@"
exit $status
