#!/usr/bin/env bash
# How the worker count moves workload (a) on a many-core machine: the
# threaded floor beside fastmanager at --threads 16, 32 and 64 (more
# workers than cores trades context switches for less waiting behind
# another connection of the same worker), at N = 32, 64, 128 stock clients
# on one shared queue, and N = 64 with a private queue each.
#
#   bash benches/device/threads-sweep.sh DIR OUTDIR
#
# DIR holds the release binaries, as for run-16core.sh. About 2 minutes.
set -euo pipefail
bins=$1
out=$2
mkdir -p "$out"
python=python3.12
"$python" -c 'import multiprocessing' >/dev/null 2>&1 || python=python3
for threads in ${THREADS:-16 32 64}; do
    timeout 100 "$python" benches/run.py --no-install --no-chart --bins "$bins" \
        --systems fastmanager,floor-threaded --fm-threads "$threads" \
        --workloads roundtrip --rt-private --rt-clients 32,64,128 --rt-private-clients 64 \
        --duration 1.5 --repeats 2 --timeout 40 \
        --out "$out/threads-$threads" > "$out/threads-$threads.log" 2>&1 || echo "threads $threads: exit $?"
    grep -E "ops/s|p50" "$out/threads-$threads/results.md" | sed "s/^/threads=$threads /"
done
