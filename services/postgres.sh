#!/usr/bin/env bash
# PostgreSQL for MLflow and Optuna from the Debian package's binaries: a private cluster in
# $CANDLECAST_SERVICES_DIR/postgres on $CANDLECAST_PG_PORT (127.0.0.1 only, trust auth for local
# connections: a development server; use passwords and TLS anywhere shared).
#   services/postgres.sh start|stop|status
. "$(dirname "$0")/lib.sh"
BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
[ -x "$BIN/pg_ctl" ] || { say "PostgreSQL binaries not found (apt-get install postgresql)"; exit 3; }
DATA="$CANDLECAST_SERVICES_DIR/postgres"
LOG="$CANDLECAST_SERVICES_DIR/postgres.log"
as_pg() {  # the server refuses to run as root: root runs it as the postgres user
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "${1:-start}" in
start)
    if [ ! -s "$DATA/PG_VERSION" ]; then
        mkdir -p "$DATA"; touch "$LOG"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$DATA" "$LOG"
        as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 >/dev/null
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 120 start \
            -o "-h $CANDLECAST_PG_HOST -p $CANDLECAST_PG_PORT -k $DATA" >/dev/null
    fi
    psql() { as_pg "$BIN/psql" -h "$DATA" -p "$CANDLECAST_PG_PORT" -U postgres -qtA "$@"; }
    [ "$(psql -c "SELECT 1 FROM pg_roles WHERE rolname='$CANDLECAST_PG_USER'")" = 1 ] ||
        psql -c "CREATE ROLE \"$CANDLECAST_PG_USER\" LOGIN"
    for db in mlflow optuna; do
        [ "$(psql -c "SELECT 1 FROM pg_database WHERE datname='$db'")" = 1 ] ||
            psql -c "CREATE DATABASE $db OWNER \"$CANDLECAST_PG_USER\""
    done
    say "PostgreSQL on $CANDLECAST_PG_HOST:$CANDLECAST_PG_PORT (databases mlflow, optuna)"
    ;;
stop)
    [ -s "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    ;;
status)
    as_pg "$BIN/pg_ctl" -D "$DATA" status
    ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
