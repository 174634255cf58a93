#!/usr/bin/env bash
# The wheels the device machine lacks, into .whl/ (git-ignored; carried with `carry: [".whl", ...]`):
#   bash benchmarks/studies/fetch_wheels.sh [farm]
# Always: cryptography with cffi and pycparser (signed records; device_setup.sh installs them). With "farm":
# Dask distributed and its pure-Python or manylinux dependencies (farm_h200x2.sh installs every wheel there).
# For the device's Python (3.12, x86_64 manylinux), whatever this machine runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
get() {
  python -m pip download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_34_x86_64 -d .whl "$@"
}
get cryptography cffi pycparser
if [ "${1:-}" = farm ]; then
  get dask distributed tornado zict tblib partd locket toolz cloudpickle msgpack sortedcontainers psutil click \
    pyyaml fsspec urllib3 importlib_metadata zipp
fi
ls -la .whl
du -sh .whl
