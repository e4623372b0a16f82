#!/usr/bin/env bash
# Runs every fuzz target in turn, one job at a time at the lowest priority
# (a shared machine), SECONDS_EACH seconds each (default 600). Seeds come
# from `python3 fuzz/make_seeds.py` (run it once first). Corpora and
# crash artifacts go under $FUZZ_DIR (default /tmp/fastmanager-fuzz), not
# into the repository; seeds/ of each target there is used when present.
#
#   fuzz/run-all.sh                 # every target, 10 minutes each
#   fuzz/run-all.sh pickle_decode   # one target
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${SECONDS_EACH:-600}
FUZZ_DIR=${FUZZ_DIR:-/tmp/fastmanager-fuzz}
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(frame_reader handshake pickle_decode dispatch)
for t in "${targets[@]}"; do
    mkdir -p "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/artifacts/$t"
    seeds=()
    [[ -d "$FUZZ_DIR/seeds/$t" ]] && seeds=("$FUZZ_DIR/seeds/$t")
    echo "== $t for ${SECONDS_EACH}s"
    nice -n 19 cargo +nightly fuzz run "$t" "$FUZZ_DIR/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$FUZZ_DIR/artifacts/$t/" 2>&1 | grep -v '^#' | tail -n 40
    echo "== $t done: $(ls "$FUZZ_DIR/artifacts/$t" | wc -l) artifacts"
done
