#!/usr/bin/env bash
# Run README.md's quick start exactly as written, in a fresh clone inside a mode-700 directory
# (as a container's /root is), then walk every other README block and --help example
# (scripts/readme_walk.py), then tear down with `scripts/reset.sh --all` (with CARGO_TARGET_DIR
# set, as CI caches and shared targets do) and check that nothing is left, including the cluster's
# directory outside the checkout. CI runs it as root, and as an ordinary user.
#   QUICKSTART_TARGET_DIR=dir   reuse a cargo target directory between runs
#   QUICKSTART_USER=name        as root: afterwards run it again as that ordinary user (created
#                               if missing, with a mode-700 home), on the same toolchain
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# The first ```sh block under "## Quick start", as a newcomer would paste it.
extract() {
  awk '/^## Quick start/ { in_section = 1; next }
       in_section && /^```sh$/ { in_block = 1; next }
       in_block && /^```$/ { exit }
       in_block { print }' "$1"
}

# In a clone at $1: the quick start and the README walk; then (unless $2 is "keep")
# reset.sh --all and the check.
run_in_clone() {
  local clone="$1"
  cd "$clone"
  extract README.md > ../quickstart.sh
  echo "quickstart ($(id -un)): running"; sed 's/^/  /' ../quickstart.sh
  bash -euo pipefail ../quickstart.sh
  # Then every README block and --help example, from the root, from src/ and from a folder
  # outside the project (scripts/readme_walk.py).
  PATH="$CARGO_TARGET_DIR/release:$PATH" python3 scripts/readme_walk.py
  if [ "${2:-}" = "keep" ]; then
    echo "quickstart ($(id -un)): its cluster keeps running while the next leg runs beside it"
    return 0
  fi
  teardown "$clone"
}

# reset.sh --all in the clone at $1, then check that nothing is left.
teardown() {
  cd "$1"
  local record=".aidock/pg.location" elsewhere=""
  [ -f "$record" ] && elsewhere="$(cat "$record")"
  # README's teardown, through cargo (CARGO_TARGET_DIR is set: the binary is not in ./target).
  scripts/reset.sh --all --yes
  if [ -e .aidock/pg ] || [ -e "$record" ] || { [ -n "$elsewhere" ] && [ -e "$elsewhere" ]; }; then
    echo "quickstart ($(id -un)): teardown left something behind" >&2
    exit 1
  fi
  echo "quickstart ($(id -un)): ok${elsewhere:+ (the cluster lived in $elsewhere)}"
}

if [ "${1:-}" = "--in-clone" ]; then
  run_in_clone "$2"
  exit 0
fi

home="$(mktemp -d /tmp/aidock-quickstart.XXXXXX)"
chmod 700 "$home"
cleanup() { rm -rf "$home"; }
trap cleanup EXIT
git clone -q "$root" "$home/aidock-provision"
export CARGO_TARGET_DIR="${QUICKSTART_TARGET_DIR:-$root/target/quickstart}"

user="${QUICKSTART_USER:-}"
if [ -n "$user" ] && [ "$(id -u)" != 0 ]; then
  # Asked for the ordinary user's leg, which only root can run: say so (and fail in CI, where it
  # must not pass untested).
  echo "quickstart: QUICKSTART_USER=$user needs root to create and run as that user; this run is not root" >&2
  if [ -n "${CI:-}" ]; then exit 1; fi
fi
if [ -z "$user" ] || [ "$(id -u)" != 0 ]; then
  (run_in_clone "$home/aidock-provision")
  exit 0
fi

# As root, then as an ordinary user while root's cluster still runs on the default port (the
# user's takes the next free one, and its URLs must never reach root's), then root's teardown.
# Both share one cargo home and target directory under a path the user may use, so the user's
# build reuses the compiled dependencies.
shared="$(mktemp -d /tmp/aidock-quickstart-shared.XXXXXX)"
chmod 755 "$shared"
root_mode="$(stat -c %a /root)"
created_user=""
root_torn_down=""
cleanup() {
  chmod "$root_mode" /root
  # Root's cluster, kept running for the user's leg: stopped and removed on every way out.
  if [ -z "$root_torn_down" ] && [ -d "$home/aidock-provision" ]; then
    (cd "$home/aidock-provision" && scripts/reset.sh --all --yes >/dev/null 2>&1) || true
  fi
  rm -rf "$home" "$shared"
  if [ -n "$created_user" ]; then
    pkill -u "$user" 2>/dev/null || true
    userdel --remove "$user" 2>/dev/null || true
  elif [ -n "${user_home:-}" ]; then
    rm -rf "$user_home/aidock-provision" "$user_home/quickstart-runner.sh" "$user_home/quickstart.sh"
  fi
  true
}
mkdir -p "$shared/cargo"
cp -a "${CARGO_HOME:-$HOME/.cargo}/registry" "$shared/cargo/" 2>/dev/null || true
export CARGO_HOME="$shared/cargo" CARGO_TARGET_DIR="$shared/target"
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
(run_in_clone "$home/aidock-provision" keep)

if ! id "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
  created_user=1
fi
user_home="$(getent passwd "$user" | cut -d: -f6)"
mkdir -p "$user_home"
chmod 700 "$user_home"
git clone -q "$root" "$user_home/aidock-provision"
cp "$0" "$user_home/quickstart-runner.sh"
chown -R "$user:" "$user_home" "$shared"
# The toolchain lives under /root (mode 700 in containers): let the user pass through it while
# this runs (restored on exit); it lists nothing there.
chmod o+x /root
runuser -u "$user" -- env -i HOME="$user_home" PATH="$(dirname "$(command -v cargo)"):/usr/local/bin:/usr/bin:/bin" \
  CARGO_HOME="$CARGO_HOME" CARGO_TARGET_DIR="$CARGO_TARGET_DIR" RUSTUP_HOME="$RUSTUP_HOME" \
  bash "$user_home/quickstart-runner.sh" --in-clone "$user_home/aidock-provision"
(teardown "$home/aidock-provision")
root_torn_down=1
