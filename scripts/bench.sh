#!/usr/bin/env bash
# Benchmarks for aidock-provision. Every result is a ratio against a baseline measured in the same
# run on the same throwaway cluster (what psql or pg_dump alone takes for the same work).
# Writes docs/BENCHMARKS.md.
#
#   scripts/bench.sh                 # BENCH_RUNS=7 repetitions, BENCH_LOGS=1000000 usage logs
#   BENCH_RUNS=3 BENCH_LOGS=100000 scripts/bench.sh
set -euo pipefail
# A step that fails inside $(...) fails the bench too: a failed run is never a measurement.
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
runs="${BENCH_RUNS:-7}"
logs="${BENCH_LOGS:-1000000}"


cargo build --release --quiet
bin="$root/target/release/aidock-provision"
work="$(mktemp -d /tmp/aidock-bench.XXXXXX)"
chmod 755 "$work"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export AIDOCK__LOCAL__DATA_DIR="$work/pg" AIDOCK__LOCAL__PORT="$port" AIDOCK_PROFILE=dev
export AIDOCK__DATABASE__PASSWORD=bench-pw
unset AIDOCK_ADMIN_URL DATABASE_URL
cleanup() { "$bin" local destroy --yes >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin" local start -q
admin="$("$bin" local url --admin)"
base="${admin%/postgres}"
timer() { date +%s%N; }
elapsed_ms() { echo $(( ($(timer) - $1) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
peak_kb() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1; }

echo "bench: init from nothing ($runs runs each, interleaved)"
"$bin" migrate plan --offline > "$work/plan.sql"
: > "$work/init.ours"; : > "$work/init.floor"
for i in $(seq 1 "$runs"); do
  t=$(timer)
  AIDOCK__DATABASE__NAME="o_$i" AIDOCK__DATABASE__OWNER="o_$i" "$bin" init -q
  elapsed_ms "$t" >> "$work/init.ours"
  t=$(timer)
  psql "$admin" -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE f_$i LOGIN PASSWORD 'bench-pw';
CREATE DATABASE f_$i OWNER f_$i TEMPLATE template0 ENCODING 'UTF8';
REVOKE ALL ON DATABASE f_$i FROM PUBLIC;
\c f_$i
ALTER SCHEMA public OWNER TO f_$i;
SET ROLE f_$i;
\i $work/plan.sql
SQL
  elapsed_ms "$t" >> "$work/init.floor"
done
init_ours=$(median < "$work/init.ours"); init_floor=$(median < "$work/init.floor")
init_mem=$(AIDOCK__DATABASE__NAME=o_mem AIDOCK__DATABASE__OWNER=o_mem peak_kb "$bin" init -q)

echo "bench: init --from-template (a template with the dev data) vs the same floor, and vs init + seed --dev"
AIDOCK__DATABASE__NAME=tmpl AIDOCK__DATABASE__OWNER=tmpl "$bin" template -q --dev --users 25 --usage-logs 5000
: > "$work/clone.ours"; : > "$work/replaced.ours"
for i in $(seq 1 "$runs"); do
  t=$(timer); AIDOCK__DATABASE__NAME="c_$i" AIDOCK__DATABASE__OWNER="c_$i" "$bin" init -q --from-template tmpl_template; elapsed_ms "$t" >> "$work/clone.ours"
  t=$(timer)
  AIDOCK__DATABASE__NAME="r_$i" AIDOCK__DATABASE__OWNER="r_$i" "$bin" init -q
  AIDOCK__DATABASE__NAME="r_$i" AIDOCK__DATABASE__OWNER="r_$i" "$bin" seed -q --dev --users 25 --usage-logs 5000
  elapsed_ms "$t" >> "$work/replaced.ours"
done
clone_ours=$(median < "$work/clone.ours"); replaced_ours=$(median < "$work/replaced.ours")

echo "bench: a clone per test vs psql's own CREATE DATABASE ... TEMPLATE, and 20 clones in a row"
# Interleaved, 3x the runs (a CREATE DATABASE varies with the WAL flush): init --from-template of
# the sealed template (a role, the copy, the template's row read again, handed over) against the
# statement alone; then the same with the seal broken (opened and closed again: each copy is read
# and checked against what the template recorded); then 20 clones + resets in a row (what a
# pytest session of 20 tests spends on databases).
: > "$work/clone2.ours"; : > "$work/clone2.floor"
for i in $(seq 1 $((runs * 3))); do
  t=$(timer); AIDOCK__DATABASE__NAME="k_$i" AIDOCK__DATABASE__OWNER="k_$i" "$bin" init -q --from-template tmpl_template; elapsed_ms "$t" >> "$work/clone2.ours"
  t=$(timer); psql "$admin" -X -q -c "CREATE DATABASE p_$i TEMPLATE tmpl_template"; elapsed_ms "$t" >> "$work/clone2.floor"
done
clone2_ours=$(median < "$work/clone2.ours"); clone2_floor=$(median < "$work/clone2.floor")
psql "$admin" -X -q -c "ALTER DATABASE tmpl_template ALLOW_CONNECTIONS true" -c "ALTER DATABASE tmpl_template ALLOW_CONNECTIONS false"
: > "$work/clone3.ours"; : > "$work/clone3.floor"
for i in $(seq 1 $((runs * 3))); do
  t=$(timer); AIDOCK__DATABASE__NAME="u_$i" AIDOCK__DATABASE__OWNER="u_$i" "$bin" init -q --from-template tmpl_template; elapsed_ms "$t" >> "$work/clone3.ours"
  t=$(timer); psql "$admin" -X -q -c "CREATE DATABASE w_$i TEMPLATE tmpl_template"; elapsed_ms "$t" >> "$work/clone3.floor"
done
clone3_ours=$(median < "$work/clone3.ours"); clone3_floor=$(median < "$work/clone3.floor")
# Sealed again for what follows (a copy read, found unchanged).
AIDOCK__DATABASE__NAME=tmpl AIDOCK__DATABASE__OWNER=tmpl "$bin" template -q --dev --users 25 --usage-logs 5000
# Interleaved pair by pair (a CREATE DATABASE's time drifts over a minute by 50%), each side summed.
twenty_ours=0; twenty_floor=0
for i in $(seq 1 20); do
  t=$(timer)
  AIDOCK__DATABASE__NAME="s_$i" AIDOCK__DATABASE__OWNER="s_$i" "$bin" init -q --from-template tmpl_template
  AIDOCK__DATABASE__NAME="s_$i" AIDOCK__DATABASE__OWNER="s_$i" "$bin" reset -q --yes
  twenty_ours=$((twenty_ours + $(elapsed_ms "$t")))
  t=$(timer)
  psql "$admin" -X -q -c "CREATE DATABASE q_$i TEMPLATE tmpl_template"
  psql "$admin" -X -q -c "DROP DATABASE q_$i"
  twenty_floor=$((twenty_floor + $(elapsed_ms "$t")))
done

echo "bench: a 50-test pytest session, a seeded database per test: the plugin against pytest-postgresql"
# Both in one venv (PyPI's pytest, psycopg and pytest-postgresql; this checkout's plugin), the same
# 50 tests (read the seeded users, write a row, commit), the same seeded data (the plugin's
# template flags; pytest-postgresql loads a pg_dump --inserts of it into its template once per
# session, as it does), interleaved; whole sessions timed, medians.
pytest_row=""
if python3 -m venv "$work/py" >/dev/null 2>&1 \
   && "$work/py/bin/pip" install -q pytest "psycopg[binary]" pytest-postgresql >/dev/null 2>&1 \
   && "$work/py/bin/pip" install -q --no-deps "$root/python" >/dev/null 2>&1; then
  AIDOCK__DATABASE__NAME=pysrc AIDOCK__DATABASE__OWNER=pysrc "$bin" init -q
  AIDOCK__DATABASE__NAME=pysrc AIDOCK__DATABASE__OWNER=pysrc "$bin" seed -q --dev --users 10 --usage-logs 500
  pg_dump --no-owner --no-acl --inserts --exclude-schema=aidock_provision "$base/pysrc" \
    | grep -v '^\\restrict\|^\\unrestrict\|transaction_timeout' > "$work/pyseed.sql"
  mkdir -p "$work/pyours/tests" "$work/pypp/tests"
  for side in pyours pypp; do
    conn=aidock_conn; [ "$side" = pypp ] && conn=postgresql
    cat > "$work/$side/tests/test_bench.py" <<PY
import pytest


@pytest.mark.parametrize("i", range(50))
def test_own_database($conn, i):
    with $conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM users")
        assert cur.fetchone()[0] == 13
        cur.execute("INSERT INTO departments (name) VALUES (%s)", (f"bench-{i}",))
    $conn.commit()
PY
  done
  echo 'pytest_plugins = ["pytest_aidock"]' > "$work/pyours/tests/conftest.py"
  pw="$(python3 -c 'import sys, urllib.parse as u; print(u.unquote(u.urlsplit(sys.argv[1]).password))' "$admin")"
  cat > "$work/pypp/tests/conftest.py" <<PY
from pathlib import Path

from pytest_postgresql import factories

postgresql_noproc = factories.postgresql_noproc(
    host="127.0.0.1", port=$port, user="postgres", password="$pw", dbname="pp_bench",
    load=[Path("$work/pyseed.sql")],
)
postgresql = factories.postgresql("postgresql_noproc")
PY
  session() {
    (cd "$work/$1" && AIDOCK_ADMIN_URL="$admin" AIDOCK_PROJECT_DIR="$root" AIDOCK_PROVISION_BIN="$bin" \
      AIDOCK_TEMPLATE=py_bench_template "$work/py/bin/python" -m pytest -q -p no:cacheprovider tests >"$work/$1.log" 2>&1) \
      || { echo "bench: the $1 pytest session failed:"; cat "$work/$1.log"; exit 1; }
  }
  session pyours   # builds the plugin's template once (later sessions find it current)
  : > "$work/py.ours"; : > "$work/py.floor"
  for _ in $(seq 1 "$runs"); do
    t=$(timer); session pyours; elapsed_ms "$t" >> "$work/py.ours"
    t=$(timer); session pypp; elapsed_ms "$t" >> "$work/py.floor"
  done
  py_ours=$(median < "$work/py.ours"); py_floor=$(median < "$work/py.floor")
  pp_version="$("$work/py/bin/python" -c 'import importlib.metadata as m; print(m.version("pytest-postgresql"))')"
  pytest_row="| a 50-test pytest session, a seeded database per test (10 fake users, 500 usage logs): \`pytest_aidock\` (\`pool\`: clones made ahead, dropped off the tests' path; the template built once, found current) | $py_ours ms | $py_floor ms: pytest-postgresql $pp_version's \`postgresql\` fixture, a clone per test of a template it loads once per session with the same data | $(ratio "$py_ours" "$py_floor") | <= 1.0 |"
else
  pytest_row="| a 50-test pytest session against pytest-postgresql | not measured: the bench's venv could not be made (pip install pytest psycopg pytest-postgresql) | | | <= 1.0 |"
fi

echo "bench: repeated (no-op) init"
: > "$work/noop.ours"; : > "$work/noop.floor"
for _ in $(seq 1 "$runs"); do
  t=$(timer); AIDOCK__DATABASE__NAME=o_1 AIDOCK__DATABASE__OWNER=o_1 "$bin" init -q; elapsed_ms "$t" >> "$work/noop.ours"
  t=$(timer); psql "$admin" -X -q -c 'SELECT 1' >/dev/null; elapsed_ms "$t" >> "$work/noop.floor"
done
noop_ours=$(median < "$work/noop.ours"); noop_floor=$(median < "$work/noop.floor")

echo "bench: migrate verify vs psql -1 applying the same migrations"
# The floor is the replay itself: psql -1 applying the same up scripts to an empty database.
# One file, each script ended by its own `;` line (a script need not end with one).
concat() { for f in "$@"; do cat "$f"; printf '\n;\n'; done; }
concat "$root"/sql/*.up.sql > "$work/all-up.sql"
: > "$work/verify.ours"; : > "$work/verify.floor"
for i in $(seq 1 "$runs"); do
  t=$(timer); AIDOCK__DATABASE__NAME=o_1 AIDOCK__DATABASE__OWNER=o_1 "$bin" migrate verify -q; elapsed_ms "$t" >> "$work/verify.ours"
  psql "$admin" -X -q -c "CREATE DATABASE v_$i"
  t=$(timer); psql "$base/v_$i" -X -q -1 -v ON_ERROR_STOP=1 -f "$work/all-up.sql" >/dev/null; elapsed_ms "$t" >> "$work/verify.floor"
  # What the scratch database costs before anything is replayed in it: an empty database made
  # from template0 and dropped, by psql.
  t=$(timer); psql "$admin" -X -q -c "CREATE DATABASE vx_$i" -c "DROP DATABASE vx_$i"; elapsed_ms "$t" >> "$work/verify.scratch"
done
verify_ours=$(median < "$work/verify.ours"); verify_floor=$(median < "$work/verify.floor")
verify_scratch=$(median < "$work/verify.scratch")

# Optionally a large real-world history: BENCH_CORPUS_DIR holds NNNN_name.up.sql files (for
# instance lemmy's, as scripts/corpus.py --keep leaves them); applied and verified as superuser.
corpus_row=""
if [ -n "${BENCH_CORPUS_DIR:-}" ]; then
  echo "bench: migrate verify on $BENCH_CORPUS_DIR"
  files=$(ls "$BENCH_CORPUS_DIR"/*.up.sql | wc -l)
  concat "$BENCH_CORPUS_DIR"/*.up.sql > "$work/corpus-up.sql"
  psql "$admin" -X -q -c "CREATE DATABASE corpus_live"
  DATABASE_URL="$base/corpus_live" "$bin" --migrations-dir "$BENCH_CORPUS_DIR" migrate up -q
  : > "$work/cverify.ours"; : > "$work/cverify.floor"
  for i in $(seq 1 "$runs"); do
    t=$(timer)
    DATABASE_URL="$base/corpus_live" "$bin" --admin-url "$admin" --migrations-dir "$BENCH_CORPUS_DIR" migrate verify -q
    elapsed_ms "$t" >> "$work/cverify.ours"
    psql "$admin" -X -q -c "CREATE DATABASE cv_$i"
    t=$(timer); PGOPTIONS='-c client_min_messages=warning' psql "$base/cv_$i" -X -q -1 -v ON_ERROR_STOP=1 -f "$work/corpus-up.sql" >/dev/null; elapsed_ms "$t" >> "$work/cverify.floor"
  done
  cverify_ours=$(median < "$work/cverify.ours"); cverify_floor=$(median < "$work/cverify.floor")
  corpus_row="| \`migrate verify\` on $(basename "$BENCH_CORPUS_DIR") ($files real migrations) | $cverify_ours ms | $cverify_floor ms: \`psql -1\` applying the same $files scripts to an empty database | $(ratio "$cverify_ours" "$cverify_floor") | <= 2 |"
fi

echo "bench: migrate up behind a long report under app traffic (pgbench), vs psql -1"
# 4 pgbench clients read users and write usage_logs for 14 s; at 1 s a report holds ACCESS SHARE
# on users for 8 s; at 2 s the deploy runs ALTER TABLE users ADD COLUMN (ACCESS EXCLUSIVE). The
# slowest app transaction and the p99 over the run, and whether any failed; the migration's time.
pgbench_bin="$(dirname "$(readlink -f "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)")")/pgbench"
cat > "$work/app.sql" <<'SQL'
\set n random(1, 50)
SELECT id, username FROM users WHERE NOT is_superuser ORDER BY username LIMIT 1 OFFSET :n;
INSERT INTO usage_logs (user_id, department_id, llm_config_id, tokens_prompt, tokens_completion)
  SELECT u.id, u.department_id, c.id, 10, 20 FROM users u, llm_configurations c
  WHERE u.department_id IS NOT NULL AND c.enabled ORDER BY u.username, c.model_name LIMIT 1;
SQL
mkdir -p "$work/traffic_sql"
cp sql/0001_initial_tables.up.sql sql/0001_initial_tables.down.sql "$work/traffic_sql/" 2>/dev/null || cp sql/0001_* "$work/traffic_sql/"
printf 'ALTER TABLE users ADD COLUMN last_login_at timestamptz;\n' > "$work/traffic_sql/0002_last_login.up.sql"
printf 'ALTER TABLE users DROP COLUMN last_login_at;\n' > "$work/traffic_sql/0002_last_login.down.sql"
mkdir -p "$work/traffic_sql2"; cp "$work"/traffic_sql/* "$work/traffic_sql2/"
# A second migration after the quick ALTER: a slow statement on another table (a 3 s backfill).
printf 'SELECT pg_sleep(3); -- a backfill that takes no lock the app needs\n' > "$work/traffic_sql2/0003_backfill.up.sql"
printf 'SELECT 1;\n' > "$work/traffic_sql2/0003_backfill.down.sql"
traffic() { # $1 = ours | psql | ours2 (two migrations, no report); prints "max_ms p99_ms failed migration_ms"
  local db="traffic_$1" dir="$work/traffic_sql"
  [ "$1" = ours2 ] && dir="$work/traffic_sql2"
  AIDOCK__DATABASE__NAME="$db" AIDOCK__DATABASE__OWNER="$db" "$bin" --migrations-dir "$dir" init -q --no-migrate
  AIDOCK__DATABASE__NAME="$db" AIDOCK__DATABASE__OWNER="$db" "$bin" --migrations-dir "$dir" migrate up -q --to 1
  AIDOCK__DATABASE__NAME="$db" AIDOCK__DATABASE__OWNER="$db" "$bin" --migrations-dir "$dir" seed -q --dev --users 50 --usage-logs 0
  local url; url="postgresql://$db:bench-pw@127.0.0.1:$port/$db"
  rm -f "$work/tr_$1".*
  "$pgbench_bin" -n -c 4 -j 2 -T 14 -f "$work/app.sql" -l --log-prefix="$work/tr_$1" "$url" > "$work/tr_$1.out" 2>&1 &
  local bench_pid=$!
  sleep 1
  local report_sql="BEGIN; SELECT count(*) FROM users; SELECT pg_sleep(8); COMMIT"
  [ "$1" = ours2 ] && report_sql="SELECT 1"
  psql "$url" -X -q -c "$report_sql" > /dev/null &
  local report_pid=$!
  sleep 1
  local t; t=$(timer)
  if [ "$1" != psql ]; then
    AIDOCK__DATABASE__NAME="$db" AIDOCK__DATABASE__OWNER="$db" AIDOCK__MIGRATE__LOCK_TIMEOUT=500ms \
      "$bin" --migrations-dir "$dir" migrate up -q
  else
    psql "$url" -X -q -1 -v ON_ERROR_STOP=1 -f "$work/traffic_sql/0002_last_login.up.sql"
  fi
  local mig_ms; mig_ms=$(elapsed_ms "$t")
  wait "$report_pid" || { echo "bench: the report session failed" >&2; return 1; }
  # pgbench exits non-zero when a client aborted; its summary must be there and be read.
  wait "$bench_pid" || { echo "bench: pgbench failed:" >&2; cat "$work/tr_$1.out" >&2; return 1; }
  grep -q 'number of transactions actually processed' "$work/tr_$1.out" \
    || { echo "bench: pgbench printed no summary:" >&2; cat "$work/tr_$1.out" >&2; return 1; }
  local failed; failed=$(awk '/number of failed transactions/ { print $(NF - 1); exit }' "$work/tr_$1.out")
  [ -n "$failed" ] || { echo "bench: pgbench's summary has no failed-transactions line (pgbench 15+ is needed)" >&2; return 1; }
  cat "$work/tr_$1".* | awk '{ print $3 / 1000 }' | sort -n | awk -v f="$failed" -v m="$mig_ms" \
    '{ v[NR] = $1 } END { printf "%d %d %s %d", v[NR], v[int(NR * 0.99)], f, m }'
}
# Assigned first: a here-string's own substitution failing would not stop the bench.
tr_ours="$(traffic ours)"; tr_psql="$(traffic psql)"; tr_two="$(traffic ours2)"
read -r tr_ours_max tr_ours_p99 tr_ours_failed tr_ours_mig <<< "$tr_ours"
read -r tr_psql_max tr_psql_p99 tr_psql_failed tr_psql_mig <<< "$tr_psql"
read -r tr_two_max tr_two_p99 tr_two_failed tr_two_mig <<< "$tr_two"

echo "bench: seed reference data"
AIDOCK__DATABASE__NAME=o_1 AIDOCK__DATABASE__OWNER=o_1 "$bin" seed -q
pg_dump --data-only --inserts -t roles -t departments -t llm_configurations -t department_quotas \
  "$base/o_1" > "$work/reference.sql"
: > "$work/seed.ours"; : > "$work/seed.floor"
for i in $(seq 2 "$runs"); do
  t=$(timer); AIDOCK__DATABASE__NAME="o_$i" AIDOCK__DATABASE__OWNER="o_$i" "$bin" seed -q; elapsed_ms "$t" >> "$work/seed.ours"
  t=$(timer); psql "$base/f_$i" -X -q -v ON_ERROR_STOP=1 -f "$work/reference.sql" >/dev/null; elapsed_ms "$t" >> "$work/seed.floor"
done
seed_ours=$(median < "$work/seed.ours"); seed_floor=$(median < "$work/seed.floor")

echo "bench: seed --dev --users 100000 (the fake users share one hash) vs psql \\copy of the same users"
AIDOCK__DATABASE__NAME=u100k AIDOCK__DATABASE__OWNER=u100k "$bin" init -q
AIDOCK__DATABASE__NAME=u100k AIDOCK__DATABASE__OWNER=u100k "$bin" seed -q
psql "$admin" -X -q -c "CREATE DATABASE u100k_floor TEMPLATE u100k OWNER u100k"
t=$(timer)
AIDOCK__DATABASE__NAME=u100k AIDOCK__DATABASE__OWNER=u100k "$bin" seed -q --dev --users 100000 --usage-logs 0
users_ms=$(elapsed_ms "$t")
ucols='username, email, hashed_password, role_id, department_id, is_superuser, is_active'
psql "$base/u100k" -X -q -c "\\copy (SELECT $ucols FROM users) TO '$work/users.tsv'"
t=$(timer)
psql "$base/u100k_floor" -X -q -v ON_ERROR_STOP=1 -c "\\copy users ($ucols) FROM '$work/users.tsv'"
users_floor=$(elapsed_ms "$t")

echo "bench: seed --dev --usage-logs $logs vs psql \\copy of the same rows"
export AIDOCK__DATABASE__NAME=logs AIDOCK__DATABASE__OWNER=logs
"$bin" init -q
"$bin" seed -q --dev --users 0 --usage-logs 0
psql "$admin" -X -q -c "CREATE DATABASE logs_floor TEMPLATE logs OWNER logs"
psql "$admin" -X -q -c "CREATE DATABASE logs_floor2 TEMPLATE logs OWNER logs"
t=$(timer)
logs_mem=$(peak_kb "$bin" seed -q --dev --users 0 --usage-logs "$logs")
logs_ours=$(elapsed_ms "$t")
cols='id, user_id, department_id, llm_config_id, "timestamp", tokens_prompt, tokens_completion, cost_estimated, request_details, response_details'
psql "$base/logs" -X -q -c "\\copy (SELECT $cols FROM usage_logs) TO '$work/logs.tsv'"
t=$(timer)
psql "$base/logs_floor" -X -q -v ON_ERROR_STOP=1 -c "\\copy usage_logs ($cols) FROM '$work/logs.tsv'"
logs_floor=$(elapsed_ms "$t")
# The fair floor for the same work: pg_restore's order done by hand in one psql transaction
# (the secondary indexes and foreign keys dropped, the rows copied, both made again), which is
# what seed --dev does into an empty table.
defs="$(psql "$base/logs_floor2" -X -A -t -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'DROP INDEX ' || i.indexrelid::regclass || ';' FROM pg_index i
  WHERE i.indrelid = 'usage_logs'::regclass AND NOT i.indisprimary
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
UNION ALL
SELECT 'ALTER TABLE usage_logs DROP CONSTRAINT ' || quote_ident(conname) || ';' FROM pg_constraint
  WHERE conrelid = 'usage_logs'::regclass AND contype = 'f';
SQL
)"
remake="$(psql "$base/logs_floor2" -X -A -t -v ON_ERROR_STOP=1 <<'SQL'
SELECT pg_get_indexdef(i.indexrelid) || ';' FROM pg_index i
  WHERE i.indrelid = 'usage_logs'::regclass AND NOT i.indisprimary
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
UNION ALL
SELECT 'ALTER TABLE usage_logs ADD CONSTRAINT ' || quote_ident(conname) || ' ' || pg_get_constraintdef(oid) || ';'
  FROM pg_constraint WHERE conrelid = 'usage_logs'::regclass AND contype = 'f';
SQL
)"
t=$(timer)
psql "$base/logs_floor2" -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
BEGIN;
$defs
\copy usage_logs ($cols) FROM '$work/logs.tsv'
$remake
COMMIT;
SQL
logs_floor2=$(elapsed_ms "$t")

topup=$((logs / 10))
echo "bench: seed --dev top-up of $topup logs onto $logs vs psql \\copy of the same rows onto the same table"
t=$(timer)
"$bin" seed -q --dev --users 0 --usage-logs "$((logs + topup))"
topup_ours=$(elapsed_ms "$t")
psql "$base/logs" -X -q -c "\\copy (SELECT $cols FROM usage_logs ORDER BY id DESC LIMIT $topup) TO '$work/topup.tsv'"
t=$(timer)
psql "$base/logs_floor" -X -q -v ON_ERROR_STOP=1 -c "\\copy usage_logs ($cols) FROM '$work/topup.tsv'"
topup_floor=$(elapsed_ms "$t")
unset AIDOCK__DATABASE__NAME AIDOCK__DATABASE__OWNER

cpu="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
pg_version="$(psql "$admin" -X -A -t -c 'SHOW server_version')"
cat > docs/BENCHMARKS.md <<EOF
# Benchmarks

Produced by \`scripts/bench.sh\` (BENCH_RUNS=$runs, BENCH_LOGS=$logs,) on
$(date -u +%Y-%m-%d). Each row compares aidock-provision with a baseline measured in the same run on
the same throwaway cluster (fsync on); times are medians of $runs runs unless noted. A ratio below
1.00 means faster than the baseline.

Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/ { print $2 }') GiB memory, PostgreSQL $pg_version,
$(rustc --version).

| what | aidock-provision | baseline | ratio | target |
|---|---|---|---|---|
| \`init\` from nothing: role, database, grants, schema 0001, ledgers | $init_ours ms | $init_floor ms: one \`psql\` session running the same statements (\`migrate plan --offline\`) | $(ratio "$init_ours" "$init_floor") | <= 1.3 |
| \`init --from-template\` of a template holding the dev data (25 fake users, 5000 usage logs), against SPEC's floor (not the same work: a \`psql\` session running all the DDL of the first row) | $clone_ours ms | $init_floor ms | $(ratio "$clone_ours" "$init_floor") | <= 0.8 |
| the same database by \`init\` + \`seed --dev --users 25 --usage-logs 5000\` (what the clone replaces) | $replaced_ours ms | $clone_ours ms: \`init --from-template\` | $(ratio "$replaced_ours" "$clone_ours") | |
| a clone per test: \`init --from-template\` of a sealed template (role, copy, the template's row checked unchanged, handed over; median of $((runs * 3))) | $clone2_ours ms | $clone2_floor ms: \`psql -c "CREATE DATABASE ... TEMPLATE"\` of the same template | $(ratio "$clone2_ours" "$clone2_floor") | <= 1.1 |
| the same with the template's seal broken (opened and closed again since it was read: each copy read and checked against what it recorded) | $clone3_ours ms | $clone3_floor ms | $(ratio "$clone3_ours" "$clone3_floor") | |
| 20 clones, each dropped after (a pytest session's databases: \`init --from-template\` + \`reset\`; summed, pair by pair against psql's) | $twenty_ours ms | $twenty_floor ms: 20 x \`psql\` CREATE DATABASE ... TEMPLATE + DROP DATABASE | $(ratio "$twenty_ours" "$twenty_floor") | |
$pytest_row
| repeated (no-op) \`init\` | $noop_ours ms | $noop_floor ms: \`psql -c 'SELECT 1'\` (process + connection) | $(ratio "$noop_ours" "$noop_floor") | < 100 ms |
| \`migrate verify\` on the 0001 schema (scratch database, replay, two catalog reads, drop) | $verify_ours ms | $verify_floor ms: \`psql -1\` applying the same up scripts to an empty database | $(ratio "$verify_ours" "$verify_floor") | <= 2 |
| of which not replay: \`psql\` creating an empty database from template0 and dropping it (what the scratch database costs before anything runs in it) | $verify_scratch ms | $verify_floor ms: the replay above | $(ratio "$verify_scratch" "$verify_floor") | |${corpus_row:+
$corpus_row}
| \`migrate up\` (\`ALTER TABLE users ADD COLUMN\`) behind an 8 s report on \`users\`, 4 pgbench clients on \`users\` + \`usage_logs\`: slowest app transaction (p99; failed) | $tr_ours_max ms ($tr_ours_p99 ms; $tr_ours_failed failed); the migration took $tr_ours_mig ms | $tr_psql_max ms ($tr_psql_p99 ms; $tr_psql_failed failed) with \`psql -1\` (took $tr_psql_mig ms) | $(ratio "$tr_ours_max" "$tr_psql_max") | slowest <= 1500 ms |
| the same ALTER followed, in the same run, by a 3 s statement that locks nothing the app needs (a backfill; no report): slowest app transaction (p99; failed) | $tr_two_max ms ($tr_two_p99 ms; $tr_two_failed failed); the run took $tr_two_mig ms | | | the cost of one transaction per run |
| \`seed\` reference data (4 roles, 6 departments, 8 configurations, 48 quotas) | $seed_ours ms | $seed_floor ms: \`psql -f\` of the same rows as INSERTs (\`pg_dump --inserts\`) | $(ratio "$seed_ours" "$seed_floor") | |
| \`seed --dev --users 0 --usage-logs $logs\` into an empty table (one run, all or nothing) | $logs_ours ms | $logs_floor2 ms: the same work in one \`psql\` transaction, \`pg_restore\`'s order (secondary indexes and foreign keys dropped, \`\\copy\` of the same rows, pre-made, both made again) | $(ratio "$logs_ours" "$logs_floor2") | |
| the same, against a plain \`psql \\copy\` into the indexed table (SPEC's floor: not the same work, the indexes are kept up to date row by row) | $logs_ours ms | $logs_floor ms | $(ratio "$logs_ours" "$logs_floor") | <= 0.4 |
| top-up to \`--usage-logs $((logs + topup))\` (indexes kept) | $topup_ours ms | $topup_floor ms: \`psql \\copy\` of the same $topup rows onto the same $logs | $(ratio "$topup_ours" "$topup_floor") | |
| \`seed --dev --users 100000 --usage-logs 0\` (one run) | $users_ms ms | $users_floor ms: \`psql \\copy\` of the same 100,000 users, pre-made | $(ratio "$users_ms" "$users_floor") | <= 1.0 |

Peak memory (maximum resident set size, \`/usr/bin/time\`): \`init\` ${init_mem} KB;
\`seed --dev --usage-logs $logs\` ${logs_mem} KB.

Notes:
- The \`init\` baseline sends its password in clear text (the server hashes it); aidock-provision
  computes the SCRAM verifier itself and also checks the admin's rights, takes the provisioning
  lock, and reads the catalog before each change.
- Rows whose baseline does not do the same work say so; README quotes only the others.
- Usage logs load over one COPY connection per core (\`seed.copy_connections\`) into unlogged
  staging tables, which the seed's one transaction moves into \`usage_logs\` with one INSERT (so
  the run is all or nothing, quotas included). Into an empty table (or one smaller than the
  load) the transaction first drops the secondary indexes and foreign keys and builds them again
  after the rows are in (\`pg_restore\`'s order, src/seed/bulk.rs); the baseline is a single
  \`\\copy\` session into the table with its indexes, which is what a person would run. A top-up
  onto a larger table keeps the indexes.
- The fake users share one password, hence one hash (the documented accounts keep their own), so
  \`--users 100000\` is the user insert, not 100,000 argon2id runs.
EOF
echo "wrote docs/BENCHMARKS.md"
cat docs/BENCHMARKS.md
