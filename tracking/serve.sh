#!/usr/bin/env bash
# Start an MLflow tracking server for keras-initlab (Ctrl-C stops it).
#
#   bash tracking/serve.sh                       # 127.0.0.1:5000, SQLite store in tracking/
#   PORT=5001 bash tracking/serve.sh
#   BACKEND=postgresql://user:pw@db/mlflow ARTIFACTS=s3://bucket/initlab bash tracking/serve.sh
#
# Then point the comparisons at it:
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 && initlab compare scripts/configs/nielsen.yaml
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
HOST="${HOST:-127.0.0.1}"                               # bind address: loopback unless you say otherwise
PORT="${PORT:-5000}"
BACKEND="${BACKEND:-sqlite:///$here/server.db}"         # any SQLAlchemy URI
ARTIFACTS="${ARTIFACTS:-$here/server-artifacts}"        # where the server stores artifacts it serves
exec mlflow server --backend-store-uri "$BACKEND" --artifacts-destination "$ARTIFACTS" \
    --serve-artifacts --host "$HOST" --port "$PORT" --workers "${WORKERS:-1}"
