#!/usr/bin/env bash
# The whole thing locally: installs Synapse, Dovecot and Postfix if missing, starts them and the
# gateway (SQLite), registers workers, and shows a client's e-mail going into a case room and the
# office's replies coming out as mail.
# Pass --keep-running to keep it up for Element.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/synapse.sh install
bash scripts/mail.sh install
exec cargo run -q -p casebridge-tests --bin casebridge-demo -- "$@"
