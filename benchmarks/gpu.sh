#!/usr/bin/env bash
# The embedding / index-build and query-latency benchmarks on a CUDA machine: the same tables
# as on the CPU, with --device cuda. Needs the CUDA build of torch in the venv (README: GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK:-/tmp/supportbot-bench-gpu}
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA device visible to torch")'
rm -rf "$WORK"
"$PY" benchmarks/build_throughput.py --device cuda --bracket --work-dir "$WORK" "$@"
"$PY" benchmarks/query_latency.py --device cuda --data-dir "$WORK/data"
