#!/usr/bin/env bash
# The MLflow tracking server: runs, params, metrics and the model registry in PostgreSQL
# (database mlflow), artifacts under $CANDLECAST_MLFLOW_ARTIFACTS served through the server
# (clients upload and download over HTTP: nothing needs the server's disk). For object storage
# set CANDLECAST_MLFLOW_ARTIFACTS=s3://bucket/prefix (and the usual AWS_* variables).
#   services/mlflow.sh start|stop|status
. "$(dirname "$0")/lib.sh"
PID="$CANDLECAST_SERVICES_DIR/mlflow.pid"
STORE="postgresql+psycopg://$CANDLECAST_PG_USER@$CANDLECAST_PG_HOST:$CANDLECAST_PG_PORT/mlflow"
health() { python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "$CANDLECAST_MLFLOW_URI/health"; }
case "${1:-start}" in
start)
    if ! pid_alive "$PID"; then
        mkdir -p "${CANDLECAST_MLFLOW_ARTIFACTS#file://}" 2>/dev/null || true
        MLFLOW_DISABLE_TELEMETRY=true nohup "$VENV_BIN/mlflow" server \
            --backend-store-uri "$STORE" --artifacts-destination "$CANDLECAST_MLFLOW_ARTIFACTS" \
            --serve-artifacts --host 127.0.0.1 --port "$CANDLECAST_MLFLOW_PORT" --workers 1 \
            >"$CANDLECAST_SERVICES_DIR/mlflow.log" 2>&1 &
        echo $! >"$PID"
        wait_for 300 "the MLflow server (see $CANDLECAST_SERVICES_DIR/mlflow.log)" health
    fi
    say "MLflow tracking server on $CANDLECAST_MLFLOW_URI (store: PostgreSQL database mlflow)"
    ;;
stop)
    if pid_alive "$PID"; then
        pkill -TERM -P "$(cat "$PID")" 2>/dev/null || true   # its gunicorn/uvicorn workers
        kill "$(cat "$PID")" 2>/dev/null || true
        for _ in $(seq 60); do pid_alive "$PID" || break; sleep 0.5; done
    fi
    rm -f "$PID"
    ;;
status) health && echo "up" ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
