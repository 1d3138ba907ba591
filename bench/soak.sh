#!/usr/bin/env bash
# Soak: a mixed workload (fine-tunes, distillation pipelines, sharded bulk inference over the Reddit
# corpus, evaluations, a schedule firing every minute) under random faults (a worker SIGKILLed or
# SIGSTOPped past its lease, Redis killed and restarted, the queue flushed, the database restarted,
# the artifact disk filled), then a drain and the checks: every job ended, failures name a fault,
# nothing ran past its fence, every bulk id exactly once, metric rows unique, every schedule slot
# fired once. Prints the fault counts and each check's violations; exits 1 on any. See bench/soak.py.
#   bash bench/soak.sh [--minutes 30] [--seed 1] [--database postgres|sqlite] [--workers 3]
#                      [--every 20] [--in-flight 4] [--corpus-lines 3000]
# As root (the artifact disk is a 256 MB tmpfs; without one, the disk-full fault is left out).
set -euo pipefail
cd "$(dirname "$0")/.."
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
exec "${PYTHON:-.venv/bin/python}" bench/soak.py "$@"
