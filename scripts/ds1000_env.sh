#!/usr/bin/env bash
# Build the Python environment DS-1000's tests were written for, from PyPI, and print its interpreter:
# the value for `verify.python` (DS-1000 candidates and gold code run there, in the sandbox).
#
#   scripts/ds1000_env.sh [ENV_DIR]     # default: ${CODELUTRA_CACHE:-~/.cache/codelutra}/ds1000-env
#   PYTHON=python3.11 scripts/ds1000_env.sh
#
# The versions are the ones ../shared/data/ds1000/README.md lists as known to pass (Python 3.11),
# plus PyYAML, which one problem's test code imports.
# PyTorch and TensorFlow are not installed: their problems are reported and skipped at load time
# (add them with ENV_DIR/bin/pip install torch tensorflow if you want those too).
set -euo pipefail

env_dir="${1:-${CODELUTRA_CACHE:-$HOME/.cache/codelutra}/ds1000-env}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || { echo "ds1000_env: no $python; set PYTHON=... (3.11 is the tested version)" >&2; exit 2; }
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$version" = 3.11 ] || echo "ds1000_env: warning: Python $version; the pinned versions are known to pass on 3.11" >&2

"$python" -m venv "$env_dir"
"$env_dir/bin/python" -m pip install --quiet --upgrade pip
"$env_dir/bin/python" -m pip install --quiet \
    numpy==1.26.4 pandas==1.5.3 scipy==1.12.0 scikit-learn==1.4.0 matplotlib==3.8.4 \
    seaborn==0.13.2 statsmodels==0.14.1 xgboost==2.0.3 pyyaml
"$env_dir/bin/python" -c 'import numpy, pandas, scipy, sklearn, matplotlib, seaborn, statsmodels, xgboost, yaml'
echo "$env_dir/bin/python"
