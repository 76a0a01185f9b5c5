#!/usr/bin/env bash
# Installs and runs a throwaway Synapse homeserver for the local stack and the end-to-end tests.
#
#   scripts/synapse.sh install                  venv with matrix-synapse (idempotent)
#   scripts/synapse.sh start DIR PORT [REG...]  write DIR/homeserver.yaml, start, wait until ready
#   scripts/synapse.sh stop DIR                 SIGTERM and wait
#   scripts/synapse.sh register DIR USER PASS   create a user with the shared secret
#
# Everything lives in DIR; server_name is "localhost". Rate limits are lifted (tests send bursts).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${CASEBRIDGE_CACHE:-$root/.cache}
venv=${CASEBRIDGE_SYNAPSE_VENV:-$cache/synapse-venv}
secret=casebridge-local-registration-secret

install() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
    return 0
  fi
  echo "synapse.sh: installing matrix-synapse into $venv" >&2
  mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's own python3 needs its venv module from a package.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'matrix-synapse>=1.100' >&2
}

write_config() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir/media"
  local rc='{per_second: 100000, burst_count: 100000}'
  {
    cat <<YAML
server_name: "localhost"
public_baseurl: "http://127.0.0.1:$port/"
pid_file: "$dir/homeserver.pid"
listeners:
  - port: $port
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "$dir/homeserver.db"
log_config: "$dir/log.yaml"
media_store_path: "$dir/media"
signing_key_path: "$dir/signing.key"
registration_shared_secret: "$secret"
macaroon_secret_key: "casebridge-local-macaroon"
form_secret: "casebridge-local-form"
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
presence:
  enabled: false
enable_registration: false
url_preview_enabled: false
rc_message: $rc
rc_registration: $rc
rc_login: {address: $rc, account: $rc, failed_attempts: $rc}
rc_joins: {local: $rc, remote: $rc}
rc_joins_per_room: $rc
rc_invites: {per_room: $rc, per_user: $rc, per_issuer: $rc}
rc_room_creation: $rc
rc_profile: $rc
rc_admin_redaction: $rc
rc_3pid_validation: $rc
rc_presence: {per_user: $rc}
rc_delayed_event_mgmt: $rc
rc_reports: $rc
rc_send_message: $rc
YAML
    echo "app_service_config_files:"
    if [ $# -eq 0 ]; then echo "  []"; fi
    for reg in "$@"; do echo "  - \"$(cd "$(dirname "$reg")" && pwd)/$(basename "$reg")\""; done
  } >"$dir/homeserver.yaml"
  cat >"$dir/log.yaml" <<YAML
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: "$dir/homeserver.log"
root:
  level: ${SYNAPSE_LOG_LEVEL:-WARNING}
  handlers: [file]
disable_existing_loggers: false
YAML
}

start() {
  local dir=$1 port=$2; shift 2
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  write_config "$dir" "$port" "$@"
  if [ ! -f "$dir/signing.key" ]; then
    "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" --generate-keys \
      </dev/null >>"$dir/stdout.log" 2>&1
  fi
  # setsid: the homeserver must not die with the shell that started it.
  setsid "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" \
    </dev/null >>"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/homeserver.pid.start"
  for _ in $(seq 1 600); do
    if "$venv/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/_matrix/client/versions', timeout=2)" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$(cat "$dir/homeserver.pid.start")" 2>/dev/null; then
      echo "synapse.sh: Synapse exited during start; its log:" >&2
      tail -n 40 "$dir/stdout.log" "$dir/homeserver.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "synapse.sh: Synapse did not answer on port $port within 60 s" >&2
  return 1
}

stop() {
  local dir=$1 pid
  pid=$(cat "$dir/homeserver.pid.start" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

register() {
  local dir=$1 user=$2 pass=$3
  install
  "$venv/bin/register_new_matrix_user" -c "$dir/homeserver.yaml" -u "$user" -p "$pass" \
    --no-admin "$(sed -n 's/^public_baseurl: "\(.*\)"/\1/p' "$dir/homeserver.yaml")" >/dev/null
}

cmd=${1:-}; shift || true
case "$cmd" in
  install) install ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  register) register "$@" ;;
  *) echo "usage: $0 install|start DIR PORT [REGISTRATION...]|stop DIR|register DIR USER PASS" >&2; exit 2 ;;
esac
