#!/usr/bin/env bash
# Runs every test of casebridge: unit and property tests, and the end-to-end tests against a
# real Synapse (one per test, from a venv), a real PostgreSQL, and real Dovecot and Postfix
# (one mail system per test). Installs what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${CASEBRIDGE_CACHE:-$root/.cache}

# Each channel feature alone, and none, builds without a warning (cargo check; seconds when warm).
bash scripts/features.sh

bash scripts/synapse.sh install
# Once here, so that parallel tests never run apt at the same time.
bash scripts/mail.sh install

pgdir=$cache/test-postgres
pgport=${CASEBRIDGE_TEST_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
CASEBRIDGE_TEST_POSTGRES=$(bash scripts/postgres.sh start "$pgdir" "$pgport")
export CASEBRIDGE_TEST_POSTGRES
trap 'bash scripts/postgres.sh stop "$pgdir"' EXIT

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
