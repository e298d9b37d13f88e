#!/usr/bin/env python3
"""Apply real public projects' migrations with psql and with `aidock-provision migrate up`, and
check that both leave the same schema (`pg_dump -s` identical) or that aidock-provision refuses
with a clear message before running anything; then check that `migrate verify` finds the result
clean.

The projects are not part of this repository (their code is theirs): pass the directory that holds
their git repositories (work trees or bare/mirror git dirs, each as OWNER+NAME/repo or OWNER+NAME),
e.g. the directory `git clone` put them in. Projects that are missing are skipped and listed.

    cargo build --release
    scripts/corpus.py --repos /work/.mirror            # all projects
    scripts/corpus.py --repos /work/.mirror --only lemmy --keep

Each project gets two fresh databases on a throwaway local cluster (started with the binary's own
`local start`, on a port of its own). Files are applied in the project's order, both ways as the
cluster's superuser (so privileges are not what differs):

- psql: `psql -X -v ON_ERROR_STOP=1 -f FILE` per file, as the project's own runner would send it.
  The corpus for a project ends at the first file psql itself cannot apply (noted in the report).
- aidock-provision: the same files copied as NNNN_slug.up.sql, one `migrate up --to N` run.

Exit status 0 when every project is identical or refused with a message; 1 otherwise.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# name, repository (OWNER+NAME), revision, regex for the up files (path in the repo), ordering
# key, and SQL the project's own runner provides before its first migration.
PROJECTS = [
    ("lemmy", "LemmyNet+lemmy", "HEAD", r"^migrations/[^/]+/up\.sql$", "path", ""),
    ("concourse", "concourse+concourse", "HEAD",
     r"^atc/db/migration/migrations/\d+_[^/]*\.up\.sql$", "number", ""),
    # golang-migrate's table, which harbor's 2.0 migration alters.
    ("harbor", "goharbor+harbor", "HEAD", r"^make/migrations/postgresql/\d+_[^/]*\.up\.sql$", "number",
     "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)"),
    ("authelia", "authelia+authelia", "HEAD",
     r"^internal/storage/migrations/postgres/V\d+\.[^/]*\.up\.sql$", "number", ""),
    ("serverpod", "serverpod+serverpod", "HEAD",
     r"^tests/serverpod_auth_test/serverpod_auth_test_server/migrations/\d[^/]*/migration\.sql$", "path", ""),
    # A pg_dump schema file; later revisions need PostgreSQL 18 (uuidv7()).
    ("pagila", "devrimgunduz+pagila", "23f7fe7", r"^pagila-schema\.sql$", "path", ""),
    # A multi-tenant SaaS (golang-migrate up/down files): row-level security with policies on
    # every table, FORCE-less RLS, per-service databases.
    ("saas-core-project", "ivorscott+saas-core", "HEAD",
     r"^internal/project/res/migrations/\d+_[^/]*\.up\.sql$", "number", ""),
    ("saas-core-subscription", "ivorscott+saas-core", "HEAD",
     r"^internal/subscription/res/migrations/\d+_[^/]*\.up\.sql$", "number", ""),
    ("saas-core-user", "ivorscott+saas-core", "HEAD",
     r"^internal/user/res/migrations/\d+_[^/]*\.up\.sql$", "number", ""),
    # pgAdmin's schema-diff fixtures: pg_dump files with partitions, enums, domains, views, rules.
    ("pgadmin", "pgadmin-org+pgadmin4", "HEAD",
     r"^web/pgadmin/tools/schema_diff/tests/pg/default/source\.sql$", "path", ""),
]

# Statements that make cluster-wide objects (roles) inside a project's migrations: two databases
# on one cluster cannot both run them, so they are taken out of the files (for psql and for us
# alike) and run once for the cluster instead.
CLUSTER_WIDE = {
    "saas-core": (re.compile(r"^CREATE USER user_a WITH PASSWORD 'postgres';$", re.M),
                  "DO $$ BEGIN CREATE ROLE user_a LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"),
}

PORT = 54391


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def git_dir(repos: Path, repo: str) -> Path | None:
    for candidate in (repos / repo / "repo", repos / repo, repos / repo.split("+", 1)[1]):
        if candidate.is_dir() and run(["git", "-C", str(candidate), "rev-parse", "HEAD"]).returncode == 0:
            return candidate
    return None


def order_key(kind: str, path: str):
    if kind == "number":
        digits = re.search(r"(\d+)", path.rsplit("/", 1)[-1])
        return (int(digits.group(1)) if digits else 0, path)
    return (0, path)


def slug(path: str) -> str:
    s = re.sub(r"[^a-z0-9_]+", "_", path.lower()).strip("_")
    return s[-90:].lstrip("_") or "file"


def dump(url: str) -> str:
    out = run(["pg_dump", "-s", "--no-owner", "--no-privileges",
               "-N", "aidock_provision", "-T", "public.aidock_schema_history",
               "-T", "public.alembic_version", url])
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return "\n".join(
        line for line in out.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", required=True, type=Path, help="directory holding the projects' git repositories")
    ap.add_argument("--bin", default="target/release/aidock-provision", help="the binary under test")
    ap.add_argument("--only", action="append", help="run only this project (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster and work files for inspection")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aidock-corpus-"))
    os.chmod(work, 0o755)  # the postgres system user must reach the cluster when we are root
    env = dict(os.environ, AIDOCK__LOCAL__DATA_DIR=str(work / "pg"), AIDOCK__LOCAL__PORT=str(PORT))
    env.pop("AIDOCK_ADMIN_URL", None)
    env.pop("DATABASE_URL", None)
    started = run([args.bin, "local", "start"], env=env)
    if started.returncode != 0:
        print(started.stderr, file=sys.stderr)
        return 1
    admin = run([args.bin, "local", "url", "--admin"], env=env).stdout.strip()

    def db_url(name: str) -> str:
        return admin.rsplit("/", 1)[0] + "/" + name

    rows, failed = [], False
    try:
        for name, repo, rev, pattern, kind, setup in PROJECTS:
            if args.only and name not in args.only:
                continue
            gd = git_dir(args.repos, repo)
            if gd is None:
                rows.append((name, repo, "-", "-", "skipped: repository not found", ""))
                continue
            commit = run(["git", "-C", str(gd), "rev-parse", "--short", rev]).stdout.strip()
            listing = run(["git", "-C", str(gd), "ls-tree", "-r", "--name-only", rev]).stdout.splitlines()
            files = sorted((p for p in listing if re.match(pattern, p)), key=lambda p: order_key(kind, p))
            mig = work / f"{name}-sql"
            mig.mkdir()
            for i, path in enumerate(files, 1):
                text = run(["git", "-C", str(gd), "show", f"{rev}:{path}"]).stdout
                for prefix, (pattern, once) in CLUSTER_WIDE.items():
                    if name.startswith(prefix):
                        text = pattern.sub("-- (made once for the cluster by scripts/corpus.py)", text)
                        run(["psql", "-X", "-q", admin, "-c", once])
                (mig / f"{i:04}_{slug(path)}.up.sql").write_text(text)

            psql_db, tool_db = f"corpus_{name}_psql", f"corpus_{name}_tool"

            def fresh(db):
                run(["psql", "-X", "-q", admin, "-c", f'DROP DATABASE IF EXISTS "{db}"'])
                run(["psql", "-X", "-q", admin, "-c", f'CREATE DATABASE "{db}"'])
                if setup:
                    run(["psql", "-X", "-q", db_url(db), "-c", setup])

            fresh(psql_db)
            fresh(tool_db)
            scripts = sorted(mig.iterdir())

            def psql_apply(upto):
                for i, f in enumerate(scripts[:upto]):
                    out = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(f), db_url(psql_db)])
                    if out.returncode != 0:
                        return i, out.stderr.strip()
                return upto, ""

            applied, error = psql_apply(len(scripts))
            psql_note = "all"
            if error:
                psql_note = f"stops at file {applied + 1} ({scripts[applied].name}): {error.splitlines()[0][:200]}"
                # psql ran the failing file's statements up to the error: start again without it.
                fresh(psql_db)
                psql_apply(applied)
            if applied == 0:
                rows.append((name, f"{repo}@{commit}", len(files), 0, "nothing psql could apply", psql_note))
                continue

            tool = run([args.bin, "--migrations-dir", str(mig), "--database-url", db_url(tool_db), "-q",
                        "migrate", "up", "--to", str(applied)], env=env)
            if tool.returncode != 0:
                message = tool.stderr.strip().replace("\n", " ")
                refused = ("cannot run as written" in message
                           or "no aidock-provision migration made" in message)
                failed |= not refused
                verdict = ("refused: " if refused else "FAILED: ") + message[:400]
                rows.append((name, f"{repo}@{commit}", len(files), applied, verdict, psql_note))
                continue
            a, b = dump(db_url(psql_db)), dump(db_url(tool_db))
            # Then verify replays the same migrations into a scratch database and compares.
            verified = run([args.bin, "--migrations-dir", str(mig), "--database-url", db_url(tool_db),
                            "--admin-url", admin, "migrate", "verify"], env=env)
            verify_note = ("verify clean" if verified.returncode == 0
                           else "VERIFY REPORTS DRIFT: " + (verified.stdout + verified.stderr).strip()[:300])
            failed |= verified.returncode != 0
            diff_note = diff_from_nothing(args.bin, env, admin, db_url, name, psql_db, work, a)
            failed |= "FAILED" in diff_note
            verify_note = f"{verify_note}; {diff_note}"
            if a == b:
                verdict = f"identical `pg_dump -s`; {verify_note}"
            else:
                failed = True
                (work / f"{name}.psql.sql").write_text(a)
                (work / f"{name}.tool.sql").write_text(b)
                verdict = f"DIFFERENT (see {work}/{name}.*.sql); {verify_note}"
            rows.append((name, f"{repo}@{commit}", len(files), applied, verdict, psql_note))
    finally:
        if not args.keep:
            run([args.bin, "local", "destroy", "--yes"], env=env)
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: {work} (stop with: AIDOCK__LOCAL__DATA_DIR={work}/pg {args.bin} local destroy --yes)")

    print("| project | repository@commit | files | applied by psql | aidock-provision `migrate up` | psql |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    total = sum(r[3] for r in rows if isinstance(r[3], int))
    print(f"\n{total} files applied by psql across {len(rows)} projects")
    return 1 if failed else 0


def diff_from_nothing(bin_, env, admin, db_url, name, psql_db, work, want):
    """`migrate diff` with an empty migrations directory and psql's result (pg_dump -s, as is)
    as the desired schema; then `migrate up` must give the same dump."""
    desired = work / f"{name}.desired.sql"
    raw = run(["pg_dump", "-s", db_url(psql_db)])
    if raw.returncode != 0:
        return "diff not run: " + raw.stderr.strip()[:200]
    desired.write_text(raw.stdout)
    probe = f"corpus_{name}_restore"
    run(["psql", "-X", "-q", admin, "-c", f'DROP DATABASE IF EXISTS "{probe}"'])
    run(["psql", "-X", "-q", admin, "-c", f'CREATE DATABASE "{probe}"'])
    restored = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(desired), db_url(probe)])
    if restored.returncode != 0:
        return "diff not run: psql cannot restore pg_dump's own output either (" + \
            restored.stderr.strip().splitlines()[0][:160] + ")"
    empty = work / f"{name}-generated"
    empty.mkdir()
    db = f"corpus_{name}_diff"
    run(["psql", "-X", "-q", admin, "-c", f'DROP DATABASE IF EXISTS "{db}"'])
    run(["psql", "-X", "-q", admin, "-c", f'CREATE DATABASE "{db}"'])
    common = [bin_, "--migrations-dir", str(empty), "--database-url", db_url(db), "--admin-url", admin, "-q"]
    out = run(common + ["migrate", "diff", "everything", "--to", str(desired), "--allow-data-loss"], env=env)
    if out.returncode != 0:
        err = " ".join(l for l in out.stderr.splitlines() if not l.startswith("note:"))
        return "migrate diff FAILED: " + err[:300]
    files = len(list(empty.glob("*.up.sql")))
    out = run(common + ["migrate", "up"], env=env)
    if out.returncode != 0:
        return "generated migration FAILED on up: " + out.stderr.strip().replace("\n", " ")[:300]
    # Schema public's owner is init's business, not a migration's: set it as on the psql side.
    owner = run(["psql", "-X", "-At", db_url(psql_db), "-c",
                 "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"]).stdout.strip()
    if owner:
        run(["psql", "-X", "-q", db_url(db), "-c", f'ALTER SCHEMA public OWNER TO "{owner}"'])
    got = dump(db_url(db))
    if got != want:
        (work / f"{name}.diff.sql").write_text(got)
        return f"migrate diff from nothing: DIFFERENT dump (see {work}/{name}.diff.sql)"
    # The generated migration, made from a pg_dump schema, verifies clean too.
    verified = run(common + ["migrate", "verify"], env=env)
    if verified.returncode != 0:
        return "`migrate diff` from nothing: identical, but verify FAILED: " + \
            (verified.stdout + verified.stderr).strip().replace("\n", " ")[:300]
    return f"`migrate diff` from nothing ({files} file(s)): identical, verify clean"


if __name__ == "__main__":
    sys.exit(main())
