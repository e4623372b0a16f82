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
# The Redis backend's tests start a local Redis Cluster (scripts/redis-cluster.sh).
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    SUDO=$([[ $(id -u) == 0 ]] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server
fi

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

echo "== deployment files: hadolint (Dockerfile), systemd-analyze verify (contrib/)"
bash scripts/check-contrib.sh

echo "== Rust unit and integration tests (debug: overflow checks and debug assertions on)"
cargo test --locked --lib --tests

echo "== Rust unit and integration tests (release: what ships)"
cargo test --release --locked

echo "== compat tests against the Rust server (its default: two worker threads per core)"
FASTMANAGER_SERVER=rust "$PYTHON" -m pytest compat-tests -q -p no:cacheprovider

# Again with the server on one event loop (--threads 1), over a subset: the
# full suite takes ~4 minutes, so this pass keeps every test file that talks
# to a `fastmanager serve` process, under the oldest and newest client
# (the thread count is the server's business, not the client version's; the
# first pass covers every version), ~1.5 minutes. Left out: test_stress.py
# (it runs --threads 1, 2 and 8 itself), the conformance runs (CPython's own
# manager tests, the longest part, already run against the default),
# test_package*.py (the Python package's embedded server, which takes no
# thread count), the bench smoke test, the interpreter inventory and
# test_durable.py (its servers are its own, on a data dir), and
# test_redis_*.py (their gateways are their own).
echo "== compat tests against the Rust server with --threads 1 (a subset, see above)"
FASTMANAGER_SERVER=rust FASTMANAGER_THREADS=1 FASTMANAGER_PYTHONS="3.6 3.13" \
    "$PYTHON" -m pytest compat-tests -q -p no:cacheprovider \
    --ignore=compat-tests/test_stress.py \
    --ignore=compat-tests/test_conformance.py \
    --ignore=compat-tests/test_package.py \
    --ignore=compat-tests/test_package_hosting.py \
    --ignore=compat-tests/test_bench_smoke.py \
    --ignore=compat-tests/test_interpreters.py \
    --ignore=compat-tests/test_durable.py \
    --ignore-glob='compat-tests/test_redis_*.py'

if [[ "${1:-}" == "--both" ]]; then
    echo "== compat tests against CPython's server (reference)"
    FASTMANAGER_SERVER=cpython "$PYTHON" -m pytest compat-tests -q -p no:cacheprovider
fi
