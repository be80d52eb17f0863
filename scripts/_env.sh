# Shared set-up for scripts/demo and scripts/test: a venv in .venv with aimsguard and
# its test and bench extras installed; re-installed only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
# Each step says what it does first (on stderr): the first run takes a minute or more.
say() { echo "aimsguard setup: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  say "creating the virtualenv .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.aimsguard-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "upgrading pip in .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  say "installing aimsguard and its test and bench dependencies into .venv (pyproject.toml changed or first run; about a minute)"
  .venv/bin/python -m pip install --quiet -e '.[test,bench]'
  echo "$want" > "$stamp"
  say "done"
fi
