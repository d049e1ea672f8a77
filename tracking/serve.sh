#!/usr/bin/env bash
# Start an MLflow tracking server for keras-initlab (Ctrl-C stops it). Extra arguments go to `mlflow server`.
#
#   bash tracking/serve.sh                       # 127.0.0.1:5000, SQLite store in tracking/, no login
#   PORT=5001 bash tracking/serve.sh
#   BACKEND=postgresql://user:pw@db/mlflow ARTIFACTS=s3://bucket/initlab bash tracking/serve.sh
#
# Shared by a team (see tracking/README.md): MLflow's basic-auth app, an admin password you choose,
# and the host names the server answers to:
#   MLFLOW_AUTH_ADMIN_PASSWORD='...' HOST=0.0.0.0 ALLOWED_HOSTS=mlflow.example.org:5000 bash tracking/serve.sh
#
# Then point the comparisons at it:
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 && initlab compare scripts/configs/nielsen.yaml
#   (with a login: also MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
HOST="${HOST:-127.0.0.1}"                               # bind address: loopback unless you say otherwise
PORT="${PORT:-5000}"
BACKEND="${BACKEND:-sqlite:///$here/server.db}"         # any SQLAlchemy URI
ARTIFACTS="${ARTIFACTS:-$here/server-artifacts}"        # where the server stores artifacts it serves
AUTH_DB="${AUTH_DB:-sqlite:///$here/auth.db}"           # users and permissions of the basic-auth app
ALLOWED_HOSTS="${ALLOWED_HOSTS:-}"                      # Host headers to answer (default: MLflow's, localhost)
CORS_ORIGINS="${CORS_ORIGINS:-}"                        # browser origins allowed to call the API

args=(--backend-store-uri "$BACKEND" --artifacts-destination "$ARTIFACTS" --serve-artifacts
      --host "$HOST" --port "$PORT" --workers "${WORKERS:-1}")
[ -n "$ALLOWED_HOSTS" ] && args+=(--allowed-hosts "$ALLOWED_HOSTS")
[ -n "$CORS_ORIGINS" ] && args+=(--cors-allowed-origins "$CORS_ORIGINS")

for arg in "$@"; do
    case "$arg" in
        -h|--host|--host=*) echo "serve.sh: set HOST=..., not $arg: the login check reads HOST" >&2; exit 2 ;;
    esac
done
case "$HOST" in
    127.*|localhost|::1) loopback=1 ;;
    *) loopback=0 ;;
esac
if [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]; then
    # MLflow's basic-auth app: every request needs a user's password; the admin account is created
    # on the first start with MLFLOW_AUTH_ADMIN_PASSWORD (there is no default password).
    # The app's settings (no secret in them) go to a file beside the store: MLflow reads them from there.
    config="${AUTH_CONFIG:-$here/basic_auth.ini}"
    printf '[mlflow]\ndefault_permission = %s\ndatabase_uri = %s\nadmin_username = %s\n' \
        "${DEFAULT_PERMISSION:-READ}" "$AUTH_DB" "${MLFLOW_AUTH_ADMIN_USERNAME:-admin}" > "$config"
    export MLFLOW_AUTH_CONFIG_PATH="$config"
    # The login forms' CSRF key: random per start unless you fix one (needed with several servers).
    export MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}"
    args+=(--app-name basic-auth)
elif [ "$loopback" = 0 ] && [ "${INSECURE:-0}" != 1 ]; then
    echo "serve.sh: HOST=$HOST makes the server reachable from other machines, so it needs a login:" >&2
    echo "  set MLFLOW_AUTH_ADMIN_PASSWORD (see tracking/README.md), or INSECURE=1 on a network you trust." >&2
    exit 2
fi
exec mlflow server "${args[@]}" "$@"
