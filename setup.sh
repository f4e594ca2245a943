#!/usr/bin/env bash
# Set up papertape from nothing and run the main job: a backtest of the bundled sample.
# Creates .venv, installs PyTorch 2.13.0 (the CPU wheel; any other spelling pulls a
# multi-GB CUDA build), then the project with its test tools, then runs the backtest.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "papertape installed in .venv; running the sample backtest (synthetic BTCUSDT, 3 days)" >&2
.venv/bin/papertape backtest --ledger runs/sample.db
