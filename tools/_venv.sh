# Sourced by tools/*.sh: create or reuse the project's virtual environment and
# install streamgex into it with what it needs. STREAMGEX_VENV overrides the path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STREAMGEX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment $VENV" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[cpu,test]"
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
