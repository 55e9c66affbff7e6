#!/usr/bin/env bash
# Validates docker-compose.yml the way Compose reads it (`config`: schema, interpolation,
# references), without a Docker engine. Uses the compose plugin (`docker compose`) when there is
# one, else Debian's docker-compose (1.29, installed when missing; it validates against the
# compose spec too, and refuses unknown keys).
set -euo pipefail
cd "$(dirname "$0")/.."
export CAIRN_MASTER_KEY="${CAIRN_MASTER_KEY:-check-only-not-a-key}"
if docker compose version >/dev/null 2>&1; then
  docker compose config --quiet
  echo "docker-compose.yml: valid (docker compose config)"
  exit 0
fi
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker-compose (Debian) to validate docker-compose.yml"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq docker-compose >/dev/null
fi
docker-compose config --quiet
echo "docker-compose.yml: valid ($(docker-compose version --short) config)"
