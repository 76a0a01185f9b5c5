#!/usr/bin/env bash
# Each channel feature alone, and none, must build without a warning: an office builds only the
# channels it uses (README, "Build"). `cargo check` of the gateway (library and binary) per
# combination, so only casebridge-bridges and casebridge-gateway are checked again each time.
set -euo pipefail
cd "$(dirname "$0")/.."
for features in "" email sms telegram; do
  out=$(cargo check --quiet -p casebridge-gateway --no-default-features --features "$features" 2>&1) || {
    printf '%s\n' "$out" >&2
    echo "features.sh: the gateway does not build with features [$features]" >&2
    exit 1
  }
  if [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    echo "features.sh: the gateway warns with features [$features]" >&2
    exit 1
  fi
done
echo "features.sh: the gateway builds cleanly with each channel alone and with none"
