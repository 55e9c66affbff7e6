#!/usr/bin/env bash
# Installs the OS tools cairn runs for real (restic, the PostgreSQL client) when missing.
set -euo pipefail
missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
