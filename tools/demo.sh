#!/usr/bin/env bash
# Run the pipeline on the built-in simulated data (in ./streamgex-demo unless
# a folder is given), installing what it needs on first use.
source "$(dirname "$0")/_venv.sh"
exec streamgex demo --workdir "${1:-streamgex-demo}"
