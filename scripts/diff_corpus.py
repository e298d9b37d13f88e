#!/usr/bin/env python3
"""Run other projects' schema-diff fixtures through `aidock-provision migrate diff` and judge the
result with psql and pg_dump (issue #30), as scripts/corpus.py does for migrations.

Suites (read from git mirrors, never copied into this repository):
  migra           djrobstep/migra tests/FIXTURES/<case>/{a,b}.sql
  pg-schema-diff  stripe/pg-schema-diff internal/migration_acceptance_tests/*_cases_test.go
                  (oldSchemaDDL / newSchemaDDL of each case)

For each pair (A, B): psql applies A, and B, to fresh databases (the oracle: `pg_dump -s` of
each). Then a project whose only migration is A asks `migrate diff next --to B
--allow-data-loss`. Verdicts:
  correct      the files psql applies (0001 = A as written; each written file with -1, as the
               runner runs it in one transaction) dump as B, and their downs dump
               as A again; or "no difference" where A and B dump the same
  wrong        files written whose up or down psql then fails on or dumps otherwise, or "no
               difference" where A and B differ (silently wrong)
  refused      the tool said no, with a reason (first line kept); "self-test" when the reason is
               its own pair failing its test
  unloadable   psql itself could not apply A or B (left out of the percentages); a role a file
               names but the cluster lacks is made first (and dropped at the end)

  scripts/diff_corpus.py --admin-url postgresql://postgres@127.0.0.1:5432/postgres \\
      --migra DIR --pg-schema-diff DIR [--bin target/release/aidock-provision] [--only SUBSTR]
Writes docs/DIFF_CORPUS.md (the table and every non-correct case). DIFF_CORPUS_SHOW=1 prints
each refusal whole (for working on one case with --only).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

ROLE = "corpus_app"
PASSWORD = "corpus-app-pw-1"


def run(cmd, env=None, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def with_db(url, db):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + db, parts.query, parts.fragment))


def psql(url, sql=None, file=None, role=None, single=False):
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url] + (["-1"] if single else [])
    if role:
        cmd += ["-c", f'SET ROLE "{role}"']
    if file:
        cmd += ["-f", file]
    if sql:
        cmd += ["-c", sql]
    return run(cmd)


def dump(url):
    out = run(["pg_dump", "-s", "--no-owner", "--no-privileges", "-N", "aidock_provision",
               "-T", "public.alembic_version", url])
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    keep, block = [], None
    for line in out.stdout.splitlines():
        if not line.strip() or line.startswith("--") or line.startswith("SET ") \
                or line.startswith("SELECT pg_catalog.set_config") or line.startswith("\\"):
            continue
        # Column order inside CREATE TABLE is left out: PostgreSQL cannot add a column between
        # existing ones (the tool says so when the desired order differs).
        if block is not None:
            if line.startswith(")"):
                keep.extend(sorted(c.rstrip(",") for c in block))
                keep.append(line)
                block = None
            else:
                block.append(line)
            continue
        keep.append(line)
        if line.startswith("CREATE TABLE ") and line.endswith("("):
            block = []
    return "\n".join(keep)


class Cluster:
    def __init__(self, admin):
        self.admin = admin
        self.n = 0

    def fresh(self, tag):
        self.n += 1
        name = f"dc_{os.getpid()}_{self.n}_{tag}"[:60]
        psql(self.admin, sql=f'DROP DATABASE IF EXISTS "{name}"')
        r = psql(self.admin, sql=f'CREATE DATABASE "{name}" OWNER "{ROLE}" TEMPLATE template0')
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return name

    def drop(self, name):
        psql(self.admin, sql=f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def oracle(cluster, sql_text, work, tag):
    """Apply `sql_text` with psql (as the admin, in a database the app role owns); its dump."""
    path = os.path.join(work, f"{tag}.sql")
    open(path, "w").write(sql_text)
    db = cluster.fresh(tag)
    try:
        r = psql(with_db(cluster.admin, db), file=path)
        if r.returncode != 0:
            return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "psql failed"
        return dump(with_db(cluster.admin, db)), None
    finally:
        cluster.drop(db)


MISSING_ROLE = re.compile(r'role "(.*)" does not exist')
# Roles the fixtures assume (app_user, role_1, and hostile names such as `x"; DROP TABLE ...`),
# made on first need as the suites' own setups do, and dropped at the end of the run.
MADE_ROLES = []


def with_roles(cluster, sql_text, work, tag):
    """The oracle, making each role the file names but the cluster lacks (a few at most)."""
    for _ in range(5):
        dumped, err = oracle(cluster, sql_text, work, tag)
        missing = MISSING_ROLE.search(err or "")
        if dumped is not None or not missing or missing.group(1) in MADE_ROLES:
            return dumped, err
        role = missing.group(1)
        r = psql(cluster.admin, sql=f"DO $dc_do$ BEGIN EXECUTE format('CREATE ROLE %I', "
                                    f"$dc_role${role}$dc_role$); END $dc_do$")
        if r.returncode != 0 or "$dc_" in role:
            return dumped, err
        MADE_ROLES.append(role)
    return dumped, err


def drop_made_roles(cluster):
    for role in MADE_ROLES:
        psql(cluster.admin, sql=f"DO $dc_do$ BEGIN EXECUTE format('DROP ROLE IF EXISTS %I', "
                                f"$dc_role${role}$dc_role$); END $dc_do$")


def judge(cluster, binary, a, b, work):
    dump_a, err = with_roles(cluster, a, work, "a")
    if dump_a is None:
        return "unloadable", f"A: {err}"
    dump_b, err = with_roles(cluster, b, work, "b")
    if dump_b is None:
        return "unloadable", f"B: {err}"
    project = os.path.join(work, "project")
    shutil.rmtree(project, ignore_errors=True)
    os.makedirs(os.path.join(project, "sql"))
    open(os.path.join(project, "sql", "0001_a.up.sql"), "w").write(a)
    open(os.path.join(project, "b.sql"), "w").write(b)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": work,
        "AIDOCK_ADMIN_URL": cluster.admin,
        "AIDOCK_PROFILE": "test",
        "AIDOCK__DATABASE__NAME": ROLE,
        "AIDOCK__DATABASE__OWNER": ROLE,
        "AIDOCK__DATABASE__PASSWORD": PASSWORD,
    }
    out = subprocess.run([binary, "--project", project, "migrate", "diff", "next", "--to",
                          os.path.join(project, "b.sql"), "--allow-data-loss"],
                         capture_output=True, text=True, env=env, timeout=600)
    sqldir = os.path.join(project, "sql")
    ups = sorted(f for f in os.listdir(sqldir) if f.endswith(".up.sql") and not f.startswith("0001_"))
    downs = [f.replace(".up.sql", ".down.sql") for f in reversed(ups)]
    if out.returncode != 0:
        text = (out.stderr or out.stdout).strip()
        if os.environ.get("DIFF_CORPUS_SHOW"):
            print(text, file=sys.stderr)
        # The reason and the first differences it names (a table cell: one line).
        first = " / ".join(l.strip() for l in text.splitlines()[:4]).replace("|", "\\|") \
            if text else f"exit {out.returncode}"
        kind = "refused (self-test)" if "failed its test" in text else "refused"
        return kind, first
    if not ups:
        if dump_a == dump_b:
            return "correct", "no difference"
        return "wrong", "said no difference, but A and B differ"
    db = cluster.fresh("c")
    try:
        url = with_db(cluster.admin, db)
        for f in ["0001_a.up.sql"] + ups:
            r = psql(url, file=os.path.join(sqldir, f), single=transactional(sqldir, f))
            if r.returncode != 0:
                return "wrong", f"psql fails on {f}: {r.stderr.strip().splitlines()[-1]}"
        if dump(url) != dump_b:
            return "wrong", "up does not reach B"
        for f in downs:
            if not os.path.exists(os.path.join(sqldir, f)):
                continue
            r = psql(url, file=os.path.join(sqldir, f), single=transactional(sqldir, f))
            if r.returncode != 0:
                return "wrong", f"psql fails on {f}: {r.stderr.strip().splitlines()[-1]}"
        if dump(url) != dump_a:
            return "wrong", "down does not return to A"
        return "correct", ""
    finally:
        cluster.drop(db)


def transactional(sqldir, f):
    """Written files run in one transaction (`psql -1`, as the runner does) unless marked."""
    if f.startswith("0001_"):
        return False
    with open(os.path.join(sqldir, f)) as h:
        return "aidock:no-transaction" not in h.readline()


def migra_cases(root):
    base = os.path.join(root, "tests", "FIXTURES")
    for case in sorted(os.listdir(base)):
        a, b = os.path.join(base, case, "a.sql"), os.path.join(base, case, "b.sql")
        if os.path.exists(a) and os.path.exists(b):
            yield f"migra/{case}", open(a).read(), open(b).read()


GO_STRING = re.compile(r"`([^`]*)`|\"((?:[^\"\\]|\\.)*)\"", re.S)


def go_strings(block):
    return [m.group(1) if m.group(1) is not None else bytes(m.group(2), "utf-8").decode("unicode_escape")
            for m in GO_STRING.finditer(block)]


def ddl_list(text, field):
    """The strings of `field: []string{ ... }` at the start of `text`, or None."""
    m = re.search(field + r":\s*\[\]string\{", text)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(text) and depth:
        c = text[i]
        if c == "`":
            i = text.index("`", i + 1)
        elif c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    return go_strings(text[m.end():i - 1])


def pgsd_cases(root):
    base = os.path.join(root, "internal", "migration_acceptance_tests")
    for f in sorted(os.listdir(base)):
        if not f.endswith("_cases_test.go"):
            continue
        text = open(os.path.join(base, f)).read()
        # Each case starts at `name: "..."`; its DDL lists follow before the next name.
        starts = [m for m in re.finditer(r'\bname:\s*"((?:[^"\\]|\\.)*)"', text)]
        for k, m in enumerate(starts):
            end = starts[k + 1].start() if k + 1 < len(starts) else len(text)
            body = text[m.end():end]
            old, new = ddl_list(body, "oldSchemaDDL"), ddl_list(body, "newSchemaDDL")
            if old is None or new is None:
                continue
            yield (f"pg-schema-diff/{f.replace('_cases_test.go', '')}/{m.group(1)}",
                   ";\n".join(s.strip().rstrip(";") for s in old if s.strip()) + ";\n" if old else "",
                   ";\n".join(s.strip().rstrip(";") for s in new if s.strip()) + ";\n" if new else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin-url", required=True)
    ap.add_argument("--migra")
    ap.add_argument("--pg-schema-diff")
    ap.add_argument("--bin", default="target/release/aidock-provision")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="docs/DIFF_CORPUS.md")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    cluster = Cluster(args.admin_url)
    psql(args.admin_url, sql=f"DO $$ BEGIN CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'; "
                            f"EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    psql(args.admin_url, sql=f'GRANT {ROLE} TO CURRENT_USER')
    # Databases a killed run left behind (they are the app role's, and init would refuse it).
    left = run(["psql", "-X", "-A", "-t", args.admin_url, "-c",
                "SELECT datname FROM pg_database WHERE datname LIKE 'dc\\_%'"]).stdout.split()
    for name in left:
        # Only those of runs that are gone (a run going on beside this one keeps its own).
        pid = name.split("_")[1] if name.count("_") >= 2 else ""
        if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
            continue
        cluster.drop(name)
    # The app role's own database (diff connects the role there); made once.
    exists = run(["psql", "-X", "-A", "-t", args.admin_url, "-c",
                  f"SELECT 1 FROM pg_database WHERE datname = '{ROLE}'"]).stdout.strip()
    if not exists:
        r = psql(args.admin_url, sql=f'CREATE DATABASE "{ROLE}" OWNER "{ROLE}"')
        if r.returncode != 0:
            sys.exit(f"creating the app database: {r.stderr}")
    cases = []
    if args.migra:
        cases += list(migra_cases(args.migra))
    if args.pg_schema_diff:
        cases += list(pgsd_cases(args.pg_schema_diff))
    cases = [c for c in cases if args.only in c[0]]
    results = []
    with tempfile.TemporaryDirectory() as work:
        for i, (name, a, b) in enumerate(cases, 1):
            try:
                verdict, why = judge(cluster, binary, a, b, work)
            except Exception as e:  # noqa: BLE001 - a harness failure is a result too
                verdict, why = "harness error", str(e).splitlines()[0] if str(e) else repr(e)
            results.append((name, verdict, why))
            print(f"[{i}/{len(cases)}] {verdict:20} {name} {why[:140]}", flush=True)
    drop_made_roles(cluster)
    suites = sorted({n.split("/")[0] for n, _, _ in results})
    verdicts = ["correct", "wrong", "refused", "refused (self-test)", "unloadable", "harness error"]
    lines = ["# Schema-diff corpus", "",
             "Produced by `scripts/diff_corpus.py` (issue #30): other projects' schema-diff fixtures "
             "through `migrate diff`, judged by psql and `pg_dump -s --no-owner --no-privileges` "
             "(up must reach B, down must return to A). Percentages are of the loadable pairs.", "",
             "| suite | pairs | " + " | ".join(verdicts) + " | correct % |",
             "|---|---|" + "---|" * len(verdicts) + "---|"]
    for suite in suites:
        rs = [r for r in results if r[0].startswith(suite + "/")]
        counts = [sum(1 for r in rs if r[1] == v) for v in verdicts]
        loadable = len(rs) - counts[verdicts.index("unloadable")]
        pct = 100.0 * counts[0] / loadable if loadable else 0.0
        lines.append(f"| {suite} | {len(rs)} | " + " | ".join(map(str, counts)) + f" | {pct:.1f} |")
    lines += ["", "## Every pair that is not correct", "", "| pair | verdict | why |", "|---|---|---|"]
    for name, verdict, why in results:
        if verdict != "correct":
            lines.append(f"| {name} | {verdict} | {why.replace('|', '/')[:300]} |")
    open(args.out, "w").write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
