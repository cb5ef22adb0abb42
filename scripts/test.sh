#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite. pytest's own exit code is kept: 5 (no tests
# collected) fails like any other failure. GPU/TensorRT tests skip with their reason on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -ra "$@"
