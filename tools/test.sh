#!/usr/bin/env bash
# Run the test suite in the project's virtual environment (created on first use).
# Extra arguments go to pytest, e.g. tools/test.sh -k ingest
source "$(dirname "$0")/_venv.sh"
exec python -m pytest "$@"
