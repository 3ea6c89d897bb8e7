#!/usr/bin/env bash
# generate-secrets.sh FILE: write FILE (mode 600) with new random secrets for a local stack,
# unless it exists already (secrets must stay stable across restarts: sessions, signatures).
set -euo pipefail
file=$1
if [ -s "$file" ]; then
  echo "==> Secrets: keeping $file"
  exit 0
fi
umask 077
{
  echo "# Generated $(date -u +%Y-%m-%dT%H:%M:%SZ) for this machine only. Never commit it."
  echo "DJANGO_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
  echo "PUSHPIN_SIG_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
} >"$file"
echo "==> Secrets: generated $file"
