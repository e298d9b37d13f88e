#!/usr/bin/env bash
# Local teardown: drop the AI Dock database and role with the built binary (built when needed).
#   scripts/reset.sh [--yes] [other aidock-provision flags]
#   scripts/reset.sh --all [--yes]    also destroy the project-local cluster
# AIDOCK_PROVISION_BIN=path uses that binary instead of building one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# Through cargo itself, so a CARGO_TARGET_DIR elsewhere (CI caches, shared targets) is found.
if [ -n "${AIDOCK_PROVISION_BIN:-}" ]; then
  run() { "$AIDOCK_PROVISION_BIN" "$@"; }
else
  cargo build --release --quiet
  run() { cargo run --release --quiet -- "$@"; }
fi

all=false
args=()
for arg in "$@"; do
  case "$arg" in
    --all) all=true ;;
    *) args+=("$arg") ;;
  esac
done

run reset "${args[@]+"${args[@]}"}"
if "$all"; then
  run local destroy "${args[@]+"${args[@]}"}"
fi
