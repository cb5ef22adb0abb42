#!/usr/bin/env bash
# Everything the GPU machine has to run for the GPU path, in one command, from the repository root:
#   bash bench/run_gpu_checks.sh        (carry .whl, filled by ../shared/device/fetch-pycuda.sh)
# Prints the pytest report (-rA) and the benchmark table; writes them and the JSON under $OUT (or ./gpu-out).
# The models' packages (rapidocr 3.10, rapidocr-onnxruntime 1.4.4) must be importable there, as in CI:
# tests/test_engine_sidecar.py and tests/test_doctor.py plan engines from the real model files.
set -uo pipefail
case "${1:-}" in
  -h|--help) echo "usage: bash bench/run_gpu_checks.sh   (on the GPU machine, from the repository root; OUT=DIR for the outputs)"; exit 0 ;;
  "") ;;
  *) echo "usage: bash bench/run_gpu_checks.sh   (no arguments)" >&2; exit 2 ;;
esac
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
# nvcc for building pycuda, for build_kernels in the tests' fixtures and for kernels_aot.py's SourceModule
# comparison; the daemon's own loading runs with PATH=/usr/bin:/bin in tests/test_gpu_kernels_aot.py.
export PATH=/usr/local/cuda/bin:$PATH
bash build-pycuda.sh || { echo "pycuda build failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
nvidia-smi -L; nvcc --version | tail -1; python3 --version
python3 -m pytest -rA -p no:cacheprovider \
  tests/test_gpu_letterbox_math.py tests/test_gpu_kernels_files.py tests/test_gpu_kernels_aot.py \
  tests/test_gpu_preprocess.py tests/test_gpu_overlap.py tests/test_gpu_tensorrt.py tests/test_gpu_detector_standin.py \
  tests/test_tensorrt_generation.py \
  tests/test_engine_sidecar.py tests/test_doctor.py 2>&1 | tee "$OUT/gpu_pytest.txt"
pytest_rc=${PIPESTATUS[0]}
python3 bench/gpu_bench.py --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.txt"
bench_rc=${PIPESTATUS[0]}
python3 bench/kernels_aot.py --json "$OUT/kernels_aot.json" 2>&1 | tee "$OUT/kernels_aot.txt"
aot_rc=${PIPESTATUS[0]}
python3 bench/detector_streams.py --json "$OUT/detector_streams.json" 2>&1 | tee "$OUT/detector_streams.txt"
streams_rc=${PIPESTATUS[0]}
python3 -c 'import argparse, daemon.doctor as d; p = argparse.ArgumentParser(); d.add_arguments(p); d.main(p.parse_args([]))' 2>&1 | tee "$OUT/doctor.txt"
echo "pytest exit $pytest_rc, bench exit $bench_rc, kernels_aot exit $aot_rc, detector_streams exit $streams_rc"
exit $(( pytest_rc || bench_rc || aot_rc || streams_rc ))
