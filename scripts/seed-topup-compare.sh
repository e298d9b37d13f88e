#!/usr/bin/env bash
# seed --dev top-up, two binaries (e.g. this build and an earlier release): each loads
# 1,000,000 usage logs into its own database, then tops up 100,000, then re-runs (no-op); two rounds.
# Prints milliseconds. Needs the PostgreSQL server binaries (local cluster).
set -euo pipefail
new=${1:?usage: scripts/seed-topup-compare.sh NEW_BINARY OLD_BINARY}; old=${2:?usage: scripts/seed-topup-compare.sh NEW_BINARY OLD_BINARY}
new=$(realpath "$new"); old=$(realpath "$old")
# outside any project: both binaries use their own built-in migrations and default settings
cd "$(mktemp -d)"
work=$(mktemp -d); chmod 755 "$work"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AIDOCK__LOCAL__DATA_DIR="$work/pg" AIDOCK__LOCAL__PORT="$port" AIDOCK_PROFILE=dev AIDOCK__DATABASE__PASSWORD=bench-pw
unset AIDOCK_ADMIN_URL DATABASE_URL
cleanup() { "$new" local destroy --yes >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$new" local start -q
timer() { date +%s%N; }; elapsed_ms() { echo $(( ($(timer) - $1) / 1000000 )); }
for round in 1 2; do
for b in old new; do
  bin=${!b}
  export AIDOCK__DATABASE__NAME=t_${b}_$round AIDOCK__DATABASE__OWNER=t_${b}_$round
  "$bin" init -q; "$bin" seed -q --dev --users 0 --usage-logs 1000000
done
for b in old new; do
  bin=${!b}
  export AIDOCK__DATABASE__NAME=t_${b}_$round AIDOCK__DATABASE__OWNER=t_${b}_$round
  t=$(timer); "$bin" seed -q --dev --users 0 --usage-logs 1100000; echo "round $round $b topup $(elapsed_ms $t)"
done
for b in old new; do
  bin=${!b}
  export AIDOCK__DATABASE__NAME=t_${b}_$round AIDOCK__DATABASE__OWNER=t_${b}_$round
  t=$(timer); "$bin" seed -q --dev --users 0 --usage-logs 1100000; echo "round $round $b noop $(elapsed_ms $t)"
done
done
