#!/usr/bin/env bash
# Installs the OS tools cairn runs for real (restic, the PostgreSQL client) and the browser the
# UI tests drive (Debian's chromium: Playwright's own download does not work here) and the
# kubectl that talks to the Kubernetes fake (Debian's kubernetes-client) when missing.
set -euo pipefail
missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
# point-in-time recovery runs a scratch server (initdb, pg_ctl): Debian's server binaries
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
# offsite copies: the tests serve an append-only restic REST server with rclone
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
# alert rules: promtool (Debian's prometheus package) checks and unit-tests deploy/prometheus/
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# database engines beside PostgreSQL (docs/engines.md): their dump tools, and their servers for
# the tests where the machine runs none
command -v mariadb-dump >/dev/null 2>&1 || missing+=(mariadb-client)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The Kubernetes API fake runs mover containers as their pods' users (tests/fakes/kube), who
# must reach the interpreter and the checkout: pyenv keeps Python under /root (0700), so the
# folders above both get the search bit for others (traversal, not listing).
if [ "$(id -u)" -eq 0 ]; then
  root_dir=$(cd "$(dirname "$0")/.." && pwd)
  for start in "$(readlink -f "$root_dir/.venv/bin/python" 2>/dev/null || true)" "$root_dir/x"; do
    [ -n "$start" ] || continue
    dir=$(dirname "$start")
    while [ "$dir" != "/" ]; do
      chmod o+x "$dir"
      dir=$(dirname "$dir")
    done
  done
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
