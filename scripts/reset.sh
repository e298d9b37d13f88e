#!/usr/bin/env bash
# Local teardown: drop the AI Dock database and role (and with --all the project's template and
# the project-local cluster).
#   scripts/reset.sh [--yes] [other aidock-provision flags]
#   scripts/reset.sh --all [--yes]    also drop the template and destroy the project-local cluster
# Which binary: AIDOCK_PROVISION_BIN if set, else `aidock-provision` on PATH, else one already
# built in this checkout's target directory (any build will do: reset reads the project's own
# config/ and sql/ at run time), else it is built first, saying so.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${AIDOCK_PROVISION_BIN:-}"
if [ -z "$bin" ] && command -v aidock-provision >/dev/null 2>&1; then
  bin="$(command -v aidock-provision)"
fi
if [ -z "$bin" ]; then
  # Through cargo, so a CARGO_TARGET_DIR elsewhere (CI caches, shared targets) is found.
  target="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  for candidate in "${target:-target}/release/aidock-provision" "${target:-target}/debug/aidock-provision"; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
fi
if [ -z "$bin" ]; then
  echo "reset.sh: building aidock-provision first (cargo build --release; a few minutes the first time)" >&2
  cargo build --release
  bin="${target:-target}/release/aidock-provision"
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
  "$bin" template --drop "${args[@]+"${args[@]}"}"
  "$bin" local destroy "${args[@]+"${args[@]}"}"
fi
