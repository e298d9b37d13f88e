#!/usr/bin/env bash
# Run README.md's quick start exactly as written, in a fresh clone inside a mode-700 directory
# (as a container's /root is), then `local destroy` and check that nothing is left, including the
# cluster's directory outside the checkout. CI runs it (as root).
#   QUICKSTART_TARGET_DIR=dir   reuse a cargo target directory between runs
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
home="$(mktemp -d /tmp/aidock-quickstart.XXXXXX)"
chmod 700 "$home"
trap 'rm -rf "$home"' EXIT
git clone -q "$root" "$home/aidock-provision"
cd "$home/aidock-provision"
export CARGO_TARGET_DIR="${QUICKSTART_TARGET_DIR:-$root/target/quickstart}"
# The first ```sh block under "## Quick start", as a newcomer would paste it.
awk '/^## Quick start/ { in_section = 1; next }
     in_section && /^```sh$/ { in_block = 1; next }
     in_block && /^```$/ { exit }
     in_block { print }' README.md > "$home/quickstart.sh"
echo "quickstart: running"; sed 's/^/  /' "$home/quickstart.sh"
bash -euo pipefail "$home/quickstart.sh"
record=".aidock/pg.location"
elsewhere=""
[ -f "$record" ] && elsewhere="$(cat "$record")"
cargo run -q --release -- local destroy --yes
if [ -e .aidock/pg ] || [ -e "$record" ] || { [ -n "$elsewhere" ] && [ -e "$elsewhere" ]; }; then
  echo "quickstart: local destroy left something behind" >&2
  exit 1
fi
echo "quickstart: ok${elsewhere:+ (the cluster lived in $elsewhere)}"
