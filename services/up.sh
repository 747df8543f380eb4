#!/usr/bin/env bash
# Start the shared services of profiles/services.yaml: PostgreSQL, Redis, the MLflow server.
set -euo pipefail
here="$(dirname "$0")"
"$here/postgres.sh" start
"$here/redis.sh" start
"$here/mlflow.sh" start
