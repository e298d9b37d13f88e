#!/usr/bin/env bash
# Local teardown: drop the AI Dock database and role with the built binary (built when needed).
#   scripts/reset.sh [--yes] [other aidock-provision flags]
#   scripts/reset.sh --all [--yes]    also destroy the project-local cluster
# AIDOCK_PROVISION_BIN=path uses that binary instead of building one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${AIDOCK_PROVISION_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="$root/target/release/aidock-provision"
fi

all=false
args=()
for arg in "$@"; do
  case "$arg" in
    --all) all=true ;;
    *) args+=("$arg") ;;
  esac
done

"$bin" reset "${args[@]+"${args[@]}"}"
if "$all"; then
  "$bin" local destroy "${args[@]+"${args[@]}"}"
fi
