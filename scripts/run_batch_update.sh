#!/usr/bin/env bash
# Cron wrapper: `run_batch_update.sh refresh` (daily embedding refresh) or `... retrain` (weekly).
# Loads .env (DATABASE_URL, TWOTOWER_HOME, ...) from the repository root if present.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] && set -a && . ./.env && set +a
TT="${TWOTOWER_BIN:-.venv/bin/twotower}"
case "${1:-refresh}" in
  refresh) exec "$TT" batch-update ;;
  retrain) exec "$TT" retrain --config "${TWOTOWER_RETRAIN_CONFIG:-config/best.yaml}" ;;
  *) echo "usage: $0 refresh|retrain" >&2; exit 2 ;;
esac
