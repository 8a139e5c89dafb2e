#!/usr/bin/env bash
# Run the test suite in the project's virtual environment (created on first use), on two
# pytest-xdist workers (the tests of the demo run share one: tests/conftest.py).
# Extra arguments go to pytest, e.g. tools/test.sh -k ingest, or -n 0 for one process.
source "$(dirname "$0")/_venv.sh"
exec python -m pytest -n 2 --dist loadgroup "$@"
