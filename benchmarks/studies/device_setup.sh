# Sourced by the studies' device scripts: `source benchmarks/studies/device_setup.sh COMMIT` from anywhere.
# Names the commit the results are of, moves to the repository root, and installs the carried wheels the
# device lacks (cryptography, to sign records) into /tmp/site.
set -u
export BENCH_COMMIT=$1
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python -m pip install -q --no-deps --target /tmp/site .whl/cryptography-* .whl/cffi-* .whl/pycparser-* || exit 2
export PYTHONPATH=/tmp/site
