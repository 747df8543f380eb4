#!/usr/bin/env bash
# Redis for the Feast online store, from the Debian package's redis-server, on
# $CANDLECAST_REDIS_PORT (127.0.0.1 only). The online store is a cache rebuilt by
# `feast materialize` and the trader's writes: snapshots are off.
#   services/redis.sh start|stop|status
. "$(dirname "$0")/lib.sh"
command -v redis-server >/dev/null || { say "redis-server not found (apt-get install redis-server)"; exit 3; }
PID="$CANDLECAST_SERVICES_DIR/redis.pid"
cli() { redis-cli -h 127.0.0.1 -p "$CANDLECAST_REDIS_PORT" "$@"; }
case "${1:-start}" in
start)
    if ! pid_alive "$PID"; then
        redis-server --bind 127.0.0.1 --port "$CANDLECAST_REDIS_PORT" --daemonize yes \
            --pidfile "$PID" --dir "$CANDLECAST_SERVICES_DIR" --save "" --appendonly no \
            --logfile "$CANDLECAST_SERVICES_DIR/redis.log"
        wait_for 30 "Redis" cli ping
    fi
    say "Redis on 127.0.0.1:$CANDLECAST_REDIS_PORT"
    ;;
stop)
    if pid_alive "$PID"; then cli shutdown nosave >/dev/null 2>&1 || kill "$(cat "$PID")"; fi
    ;;
status) cli ping ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
