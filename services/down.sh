#!/usr/bin/env bash
# Stop what up.sh started (data stays in $CANDLECAST_SERVICES_DIR; delete it to start afresh).
set -uo pipefail
here="$(dirname "$0")"
"$here/mlflow.sh" stop
"$here/redis.sh" stop
"$here/postgres.sh" stop
