# Sourced by the studies' device scripts: `source benchmarks/studies/device_setup.sh COMMIT` from anywhere.
# Names the commit the results are of, moves to the repository root, installs the carried wheels the device
# lacks (cryptography, to sign records) into /tmp/site, and installs this checkout (editable, no
# dependencies): `backend="llm"` is found through the package's entry point, as a user's pip install makes it.
set -u
export BENCH_COMMIT=$1
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python -m pip install -q --no-deps --target /tmp/site .whl/cryptography-* .whl/cffi-* .whl/pycparser-* || exit 2
export PYTHONPATH=/tmp/site
python -m pip install -q --no-deps --no-build-isolation -e . || exit 2
python -c "import torch._dynamo as d; assert 'llm' in d.list_backends(), d.list_backends()" || exit 2
