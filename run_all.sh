#!/usr/bin/env bash
# Stage runner for every profile. Examples:
#   ./run_all.sh --profile default            # phantom data, CPU; outputs/default
#   ./run_all.sh --profile smoke --out /tmp/s # a few cases, minutes
#   ./run_all.sh --profile paper --resect-root /data/RESECT --seg-root /data/RESECT_segmentation
#   ./run_all.sh --profile default --verify   # re-check outputs/default/checksums.sha256
# Python: $IUSDIFF_PYTHON, else the repository's .venv (make setup), else python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${IUSDIFF_PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"; else py="python3"; fi
fi
export PYTHONPATH="$here/code${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" "$here/code/run_all.py" "$@"
