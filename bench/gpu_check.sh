#!/usr/bin/env bash
# The GPU check (see bench/gpu_check.py): bash bench/gpu_check.sh [--dry] [--sentences N] [--train-rows N]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PYTHON" bench/gpu_check.py "$@"
