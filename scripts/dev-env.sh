#!/usr/bin/env bash
# Write .env with development secrets once, so `scrm up` and `scrm chat` agree on them.
# Real deployments set these variables in their environment instead.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] && exit 0
rand() { python3 -c "import secrets; print(secrets.token_hex(12))"; }
cat > .env <<ENV
# Development secrets, written by scripts/dev-env.sh. Not for production.
WECHAT_TOKEN=dev$(rand)
WECHAT_APP_ID=wx-dev-account
SCRM_ADMIN_TOKEN=$(rand)
SCRM_JSON_SECRET=$(rand)
ENV
echo "wrote .env with development secrets" >&2
