#!/usr/bin/env bash
# The whole thing locally: installs Synapse if missing, starts it and the gateway (SQLite),
# registers workers, and shows a client message going into a case room and a reply coming out.
# Pass --keep-running to keep it up for Element.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/synapse.sh install
exec cargo run -q -p casebridge-tests --bin casebridge-demo -- "$@"
