#!/usr/bin/env bash
# Workload (a) and the Rust load generator on a 16-core x86-64 machine with
# a stock python3.12 and no package registry, in under 5 minutes:
#
#   bash benches/device/run-16core.sh DIR OUTDIR
#
# run from the repository root; DIR holds prebuilt release binaries
# (fastmanager, floor_server, floor_threaded, loadgen). OUTDIR receives
# results.json, results.md and run.log.
#
# What it measures (2 repeats of 1.5 s windows per figure, systems taking
# turns; 1.5 s gives fastmanager about 10,000 round trips at N = 1 and
# well over 40,000 from N = 8 on, where issue 14 used 40,000 per figure):
# - (a) shared queue, N = 1, 8, 32, 64, 128: fastmanager (its default
#   threads), fastmanager --threads 1, both floors, CPython's server;
# - (a) a private queue per client, N = 32, 64, 128: fastmanager and both
#   floors;
# - the Rust load generator at 4, 16, 64, 256 connections: fastmanager
#   (default threads) and fastmanager --threads 1.
#
# Environment:
#   SMALL=1            tiny sizes (about a minute on 2 cores), to test this
#                      script
#   FM_THREADS_FLAG=0  the fastmanager binary has no --threads: leave out
#                      fastmanager --threads 1 (default: ask the binary)
#   PYTHON             the interpreter (default python3.12, else python3)
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: bash benches/device/run-16core.sh DIR OUTDIR" >&2
    exit 2
fi
bins=$1
out=$2
mkdir -p "$out"
log=$out/run.log

# The first interpreter that runs (a pyenv shim may exist and not run).
python=${PYTHON:-}
if [ -z "$python" ]; then
    for candidate in python3.12 python3; do
        if "$candidate" -c 'import multiprocessing' >/dev/null 2>&1; then
            python=$candidate
            break
        fi
    done
fi
if [ -z "$python" ]; then
    echo "run-16core: no python3.12 or python3 that runs" >&2
    exit 2
fi
for exe in fastmanager floor_server floor_threaded loadgen; do
    if [ ! -x "$bins/$exe" ]; then
        echo "run-16core: no executable $bins/$exe" >&2
        exit 2
    fi
done

threads_flag=${FM_THREADS_FLAG:-}
if [ -z "$threads_flag" ]; then
    if "$bins/fastmanager" serve --help 2>&1 | grep -q -- '--threads'; then
        threads_flag=1
    else
        threads_flag=0
    fi
fi

if [ "${SMALL:-0}" = 1 ]; then
    rt=1,2,4 private=2,4 conns=1,4 duration=0.3 repeats=1
else
    rt=1,8,32,64,128 private=32,64,128 conns=4,16,64,256 duration=1.5 repeats=3
fi

fms=fastmanager
if [ "$threads_flag" = 1 ]; then
    fms=fastmanager,fastmanager-t1
fi

{
    echo "== run-16core.sh $(date -Is)"
    echo "bins: $bins; python: $python ($("$python" --version 2>&1))"
    echo "nproc: $(nproc); $(grep -m1 'model name' /proc/cpuinfo || true)"
    echo "fastmanager --threads variant: $threads_flag; SMALL=${SMALL:-0}"
} | tee "$log"

# The last resort against overrunning the 5 minutes: the estimate is
# about 3 (see above), so this only fires when something hangs.
status=0
timeout 400 "$python" benches/run.py --no-install --no-chart --bins "$bins" \
    --systems "$fms,floor,floor-threaded,cpython" \
    --workloads roundtrip,loadgen --rt-private \
    --rt-clients "$rt" --rt-private-clients "$private" \
    --loadgen-connections "$conns" \
    --systems-for "roundtrip_private=fastmanager,floor,floor-threaded" \
    --systems-for "loadgen=$fms" \
    --duration "$duration" --repeats "$repeats" --timeout 60 \
    --out "$out" 2>&1 | tee -a "$log" || status=$?
# The Rust load generator on one shared queue (every connection on
# get_task), where the objects' lock is the hot spot, beside private ones.
if [ "${SMALL:-0}" != 1 ]; then
    port=47123
    for threads in default 1; do
        args=(serve --address 127.0.0.1:$port --authkey lg --register get_task=Queue)
        [ "$threads" != default ] && args+=(--threads "$threads")
        "$bins/fastmanager" "${args[@]}" 2>/dev/null &
        server=$!
        sleep 0.5
        for c in 16 64 256; do
            for queue in shared private; do
                qa=(); [ "$queue" = shared ] && qa=(--queue get_task)
                printf 'loadgen threads=%s connections=%s queue=%s: ' "$threads" "$c" "$queue" | tee -a "$log"
                timeout 20 "$bins/loadgen" --address 127.0.0.1:$port --authkey lg --connections "$c" --seconds 2 --op put-get "${qa[@]}" 2>&1 | tee -a "$log" || true
            done
        done
        kill "$server"; wait "$server" 2>/dev/null || true
    done
fi
echo "== done: exit $status, $(date -Is)" | tee -a "$log"
exit "$status"
