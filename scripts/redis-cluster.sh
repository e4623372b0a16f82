#!/usr/bin/env bash
# A local Redis Cluster for the redis backend (issue 18): 6 redis-server
# processes on 127.0.0.1:7101-7106 (3 masters, 3 replicas; masters alone
# cannot fail over), made into a cluster with redis-cli, then (with
# --gateways) two fastmanager gateways on 127.0.0.1:50001 and :50002.
#
#   scripts/redis-cluster.sh start [--gateways]   # state in $REDIS_CLUSTER_DIR
#   scripts/redis-cluster.sh stop
#   scripts/redis-cluster.sh restart              # a fresh, empty cluster on the
#                                                 # same ports (after a test killed
#                                                 # a master: failovers changed
#                                                 # which nodes are masters)
#
# REDIS_CLUSTER_PORT (default 7101) moves the six ports (PORT..PORT+5), so
# two test runs on one machine do not meet.
#
# Teardown kills only the PIDs this script recorded.
set -euo pipefail
DIR=${REDIS_CLUSTER_DIR:-/tmp/fastmanager-redis-cluster}
BASE=${REDIS_CLUSTER_PORT:-7101}
PORTS=($(seq "$BASE" $((BASE + 5))))
BIN=${FASTMANAGER_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/fastmanager}

stop() {
    local pids=()
    for pidfile in "$DIR"/*.pid; do
        [[ -f "$pidfile" ]] || continue
        pids+=("$(cat "$pidfile")")
        kill "${pids[-1]}" 2>/dev/null || true
        rm -f "$pidfile"
    done
    # Until they have exited (at most 10 s): a cluster started next on the
    # same ports (the next test module's) must find them free.
    for _ in $(seq 100); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && return 0
        sleep 0.1
    done
}

start() {
    command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install -y redis-server)" >&2; exit 1; }
    stop
    rm -rf "$DIR"; mkdir -p "$DIR"
    for p in "${PORTS[@]}"; do
        mkdir -p "$DIR/$p"
        redis-server --bind 127.0.0.1 --port "$p" --cluster-enabled yes \
            --cluster-config-file "$DIR/$p/nodes.conf" --cluster-node-timeout 1000 \
            --appendonly yes --dir "$DIR/$p" --save '' \
            --daemonize yes --pidfile "$DIR/redis-$p.pid" --logfile "$DIR/$p/log"
    done
    for p in "${PORTS[@]}"; do
        for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${PORTS[@]}") --cluster-replicas 1 --cluster-yes >"$DIR/create.log"
    for _ in $(seq 100); do
        ok=1
        for p in "${PORTS[@]}"; do
            redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0
        done
        [[ $ok == 1 ]] && break
        sleep 0.1
    done
    [[ $ok == 1 ]] || { echo "cluster did not reach cluster_state:ok" >&2; exit 1; }
    # A replica that has not finished its first sync cannot be promoted
    # (it counts as too far behind): wait until every replica's link is up.
    for _ in $(seq 100); do
        ok=1
        for p in "${PORTS[@]}"; do
            info=$(redis-cli -p "$p" info replication)
            grep -q 'role:master' <<<"$info" || grep -q 'master_link_status:up' <<<"$info" || ok=0
        done
        [[ $ok == 1 ]] && break
        sleep 0.1
    done
    [[ $ok == 1 ]] || { echo "replicas did not finish their first sync" >&2; exit 1; }
    echo "cluster up: 127.0.0.1:${PORTS[0]}-${PORTS[5]}"
    if [[ "${1:-}" == "--gateways" ]]; then
        for gp in 50001 50002; do
            "$BIN" serve --address "127.0.0.1:$gp" --authkey "${FASTMANAGER_AUTHKEY:-secret}" \
                --backend "redis://127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]}" \
                --register tasks=Queue --register results=Queue --register shared=dict >"$DIR/gw$gp.log" 2>&1 &
            echo $! >"$DIR/gw$gp.pid"
        done
        echo "gateways started on 127.0.0.1:50001 and :50002 (logs in $DIR)"
    fi
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    # start stops what this script started first; gateways are not
    # restarted (they would lose their clients anyway).
    restart) start ;;
    *) echo "usage: $0 start [--gateways] | stop | restart" >&2; exit 2 ;;
esac
