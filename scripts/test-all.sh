#!/usr/bin/env bash
# Runs every test: Rust unit tests, then the compat suite (stock CPython
# clients of every installed interpreter against the built server).
# Installs what it needs itself, so it works on a fresh machine.
#
#   scripts/test-all.sh            # against the Rust server
#   scripts/test-all.sh --both     # and again against CPython's own server
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
echo "== installing test dependencies"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r compat-tests/requirements.txt

echo "== building (release): the server and the Rust client's examples"
cargo build --release --locked --bins --examples

echo "== building the Python package (pip wheel ., abi3) and installing it into every CPython >= 3.8"
rm -rf target/wheels
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w target/wheels .
WHEEL=$(ls target/wheels/fastmanager-*.whl)
for py in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.*/bin/python3; do
    [[ -x "$py" ]] || continue
    if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 8))'; then
        "$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
    fi
done

echo "== Rust unit and integration tests (debug: overflow checks and debug assertions on)"
cargo test --locked --lib --tests

echo "== Rust unit and integration tests (release: what ships)"
cargo test --release --locked

echo "== compat tests against the Rust server"
FASTMANAGER_SERVER=rust "$PYTHON" -m pytest compat-tests -q -p no:cacheprovider

if [[ "${1:-}" == "--both" ]]; then
    echo "== compat tests against CPython's server (reference)"
    FASTMANAGER_SERVER=cpython "$PYTHON" -m pytest compat-tests -q -p no:cacheprovider
fi
