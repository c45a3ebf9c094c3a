#!/usr/bin/env bash
# gpu_check.sh — on a GPU machine without TensorFlow: build the pybind11 kernel core and the JAX
# extension (the XLA FFI handlers, "CUDA" ones included) with CUDA, run the GPU tests and the GPU
# benchmarks (the kernels on CuPy arrays, and focal_op.jax against the same composite under jax.jit).
#   bash scripts/gpu_check.sh [OUT_DIR]      (CUDA_ARCHS=90 to build for one architecture)
set -euo pipefail
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
stage=$PWD/build-gpu/stage
cmake -S . -B build-gpu -DFOCAL_OP_WITH_TF=OFF -DFOCAL_OP_WITH_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-native}" -DPython_EXECUTABLE="$(command -v python3)" \
  -DCMAKE_INSTALL_PREFIX="$stage" > "$out/cmake.log"
cmake --build build-gpu -j "$(nproc)" >> "$out/cmake.log"
cmake --install build-gpu >> "$out/cmake.log"
cp python/focal_op/*.py "$stage/focal_op/"
cp -r python/focal_op/jax "$stage/focal_op/"
export PYTHONPATH=$stage
python3 -c "from focal_op import _focal_core as c; print('CUDA devices:', c.cuda_device_count())"
python3 -c "import jax; print('JAX devices:', jax.devices())"
python3 -m pytest -q -rs tests/test_numpy_oracle.py tests/test_cuda_kernels.py tests/test_jax.py 2>&1 | tee "$out/pytest_gpu.txt"
python3 bench/bench_gpu.py --json "$out/bench_gpu_float32.json" 2>&1 | tee "$out/bench_gpu_float32.txt"
python3 bench/bench_gpu.py --dtype bfloat16 --json "$out/bench_gpu_bfloat16.json" 2>&1 | tee "$out/bench_gpu_bfloat16.txt"
python3 bench/bench_jax.py 2>&1 | tee "$out/bench_jax_gpu.txt"
