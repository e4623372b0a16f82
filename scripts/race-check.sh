#!/usr/bin/env bash
# Runs the concurrency tests of the shared core (src/server/race_tests.rs)
# under Miri, whose data-race detector checks every access the threads
# make, and whose scheduler tries other interleavings with each seed.
# Needs a nightly toolchain with the miri and rust-src components
# (`rustup +nightly component add miri rust-src`), so it is not part of CI.
#
#   scripts/race-check.sh            # seeds 0..4
#   SEEDS=0..16 scripts/race-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${SEEDS:-0..4}"
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "race-check: cargo +nightly miri is missing (rustup +nightly component add miri rust-src)" >&2
    exit 2
fi
# The tests wait on mio's epoll and eventfd, which Miri emulates; the
# clock Miri gives under isolation is enough for their timeouts.
MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-many-seeds=$seeds" \
    cargo +nightly miri test --lib server::race_tests
