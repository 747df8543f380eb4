# Shared by the service scripts: settings from services.env (values already set win), logging.
set -euo pipefail
SERVICES_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="$(dirname "$SERVICES_HOME")"
set -a
# shellcheck source=services.env
. "$SERVICES_HOME/services.env"
set +a
VENV_BIN="${VENV_BIN:-$PROJECT_ROOT/.venv/bin}"
mkdir -p "$CANDLECAST_SERVICES_DIR"
chmod 755 "$CANDLECAST_SERVICES_DIR"

say() { echo "[candlecast services] $*" >&2; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then say "$what did not come up"; return 1; fi
        sleep 0.5
    done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
