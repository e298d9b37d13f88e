//! `migrate baseline`'s data checks: for each step of a reconcile that existing rows could
//! stop (a NOT NULL, a unique index or constraint, a check, a foreign key, a stored value re-made
//! as generated), a read-only query that names those rows, run on the app role's own login
//! (db::trust); and the report's groups from what they found.

use super::baseline::{Blocked, Report, Roles};
use crate::db::ident::{Ident, Name};
use crate::db::{self, quote_literal};
use crate::schema::catalog::Catalog;
use crate::schema::ddl::{self, Action, Check, split_member};

/// What a step's [`Check`] found.
enum Checked {
    /// No step, or no row against it.
    Clear,
    /// These rows stop the step (or would change their value).
    Rows(String, Vec<String>),
    /// The check could not run; why.
    Failed(String),
}

/// The report's groups, from the plan and what each step's check found: read-only queries on
/// the app role's own login (db::trust: the app's relations are never read as the admin), with
/// row-level security off (so a policy that would hide rows makes the check fail instead), each
/// in a read-only transaction of its own. A check that cannot run is "not checked", never "safe".
pub(super) async fn classify(
    roles: &Roles<'_>,
    plan: &ddl::Plan,
    found: &Catalog,
    report: &mut Report,
) -> anyhow::Result<()> {
    let client = roles.app.connect().await?;
    let mut objects: Vec<(String, Vec<&ddl::Step>)> = Vec::new();
    for step in &plan.steps {
        match objects.iter_mut().find(|(o, _)| *o == step.object) {
            Some((_, steps)) => steps.push(step),
            None => objects.push((step.object.clone(), vec![step])),
        }
    }
    for (object, steps) in objects {
        let mut blocked = false;
        let mut unchecked = None;
        let mut lossy: Vec<String> = Vec::new();
        for step in &steps {
            let checked = match &step.check {
                Some(check) => run_check(&client, found, check).await,
                None => Checked::Clear,
            };
            let generated = matches!(step.check, Some(Check::GeneratedMatches { .. }));
            match checked {
                Checked::Rows(problem, rows) => {
                    blocked = true;
                    report.blocked.push(Blocked {
                        step: object.clone(),
                        problem,
                        rows,
                    });
                }
                Checked::Failed(why) => {
                    unchecked = Some(why);
                    lossy.extend(step.lossy.clone());
                }
                // A re-made generated column whose every stored value is what the expression
                // gives loses nothing.
                Checked::Clear if generated => {}
                Checked::Clear => lossy.extend(step.lossy.clone()),
            }
        }
        report.lossy.extend(lossy.iter().cloned());
        if blocked || !lossy.is_empty() {
            continue;
        }
        let first = |s: &&ddl::Step| s.sql.lines().next().unwrap_or_default().to_string();
        let generated = steps.iter().find_map(|s| match &s.check {
            Some(Check::GeneratedMatches { expr, .. }) => Some(expr.clone()),
            _ => None,
        });
        let made = steps.iter().find(|s| s.action == Action::Create);
        let line = if steps.iter().all(|s| s.removes) {
            report
                .dropped
                .push(format!("{object}: {}", first(&steps[0])));
            continue;
        } else if let Some(expr) = generated {
            format!(
                "{object}: made again as GENERATED ALWAYS AS ({expr}) STORED (every stored value already equals it)"
            )
        } else if let Some(made) = made
            && steps.iter().any(|s| s.action == Action::Drop)
        {
            format!("{object}: made again: {}", first(made))
        } else {
            let main = steps
                .iter()
                .find(|s| s.action != Action::Drop)
                .unwrap_or(&steps[0]);
            format!("{object}: {}", first(main))
        };
        match unchecked {
            Some(why) => report
                .not_checked
                .push(format!("{line} (not checked: {why})")),
            None => report.safe.push(line),
        }
    }
    Ok(())
}

/// The tables the reconcile rewrites or locks, as `migrate lint` sees its steps' SQL: one line
/// per table, with its rows and size (read on the app's own login) and what the steps do to it.
/// The reconcile runs in one transaction, so every such lock is held until it commits.
pub(super) async fn locks(
    roles: &Roles<'_>,
    plan: &ddl::Plan,
    report: &mut Report,
) -> anyhow::Result<()> {
    let client = roles.app.connect().await?;
    // table -> (rule, how many steps)
    let mut tables: Vec<(String, Vec<(String, usize)>)> = Vec::new();
    for step in &plan.steps {
        let script = crate::migrate::source::Script::new("reconcile".into(), &step.sql);
        let Some(finding) = crate::migrate::lint::lint(&script)
            .into_iter()
            .find(|f| f.rule != crate::migrate::lint::SYNTAX_ERROR)
        else {
            continue;
        };
        let table = table_of(&step.sql).unwrap_or_else(|| step.object.clone());
        if !tables.iter().any(|(t, _)| *t == table) {
            tables.push((table.clone(), Vec::new()));
        }
        let found = &mut tables
            .iter_mut()
            .find(|(t, _)| *t == table)
            .expect("pushed above")
            .1;
        match found.iter_mut().find(|(r, _)| *r == finding.rule) {
            Some((_, n)) => *n += 1,
            None => found.push((finding.rule, 1)),
        }
    }
    for (table, rules) in tables {
        let size = table_size(&client, &table).await;
        let what: Vec<String> = rules
            .iter()
            .map(|(rule, n)| format!("{n} step(s) {} ({rule})", lock_effect(rule)))
            .collect();
        report
            .locks
            .push(format!("{table}{size}: {}", what.join("; ")));
    }
    Ok(())
}

/// ` (~N rows, size)` of a table: the planner's estimate, or (never analyzed) the statistics'
/// count of live rows.
async fn table_size(client: &tokio_postgres::Client, table: &str) -> String {
    let row = db::sql::Sql::opt(
        client,
        "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE s.n_live_tup END, \
                pg_catalog.pg_size_pretty(pg_catalog.pg_table_size(c.oid)) \
         FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid \
         WHERE c.oid = pg_catalog.to_regclass($1)",
        &[(&table, tokio_postgres::types::Type::TEXT)],
    )
    .await
    .ok()
    .flatten();
    match row {
        Some(row) => {
            let rows: Option<i64> = row.get(0);
            let pretty: String = row.get(1);
            match rows {
                Some(n) => format!(" (~{n} rows, {pretty})"),
                None => format!(" ({pretty})"),
            }
        }
        None => String::new(),
    }
}

/// What a lint rule's statement does to its table, in a few words.
fn lock_effect(rule: &str) -> &'static str {
    match rule {
        "changing-column-type" => "rewrite it under ACCESS EXCLUSIVE (reads and writes wait)",
        "adding-field-with-default" | "adding-serial-primary-key-field" => {
            "rewrite it under ACCESS EXCLUSIVE"
        }
        "constraint-missing-not-valid" | "adding-foreign-key-constraint" => {
            "scan it while writes wait"
        }
        "adding-required-field" | "adding-not-nullable-field" | "adding-primary-key-constraint" => {
            "scan it under ACCESS EXCLUSIVE"
        }
        "require-concurrent-index-creation" | "disallowed-unique-constraint" => {
            "build an index while writes wait"
        }
        _ => "lock it",
    }
}

/// The table a DDL statement works on: `ALTER TABLE [ONLY] [IF EXISTS] name ...`, or
/// `CREATE [UNIQUE] INDEX ... ON [ONLY] name ...`.
fn table_of(sql: &str) -> Option<String> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let after = |from: usize| {
        let mut i = from;
        while i < words.len() && matches!(upper[i].as_str(), "ONLY" | "IF" | "EXISTS") {
            i += 1;
        }
        words
            .get(i)
            .map(|w| w.trim_end_matches([';', '(']).to_string())
    };
    if upper.first().map(String::as_str) == Some("ALTER")
        && upper.get(1).map(String::as_str) == Some("TABLE")
    {
        return after(2);
    }
    if upper.first().map(String::as_str) == Some("CREATE") && upper.iter().any(|w| w == "INDEX") {
        let on = upper.iter().position(|w| w == "ON")?;
        return after(on + 1);
    }
    None
}

/// Run one check in a read-only transaction of its own.
async fn run_check(client: &tokio_postgres::Client, found: &Catalog, check: &Check) -> Checked {
    let Some((sql, problem)) = check_query(found, check) else {
        return Checked::Failed("the tool cannot write a query for it".into());
    };
    // search_path = public: the names and expressions are the catalog's, printed with that path
    // (bare in public, qualified elsewhere).
    let begin = "BEGIN READ ONLY; SET LOCAL search_path = public; SET LOCAL row_security = off; SET LOCAL statement_timeout = '60s'";
    let result = match client.batch_execute(begin).await {
        Ok(()) => client.simple_query(&sql).await,
        Err(e) => Err(e),
    };
    let _ = client.batch_execute("ROLLBACK").await;
    match result {
        Ok(messages) => {
            let rows: Vec<String> = messages
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or("NULL").to_string())
                    }
                    _ => None,
                })
                .collect();
            if rows.is_empty() {
                Checked::Clear
            } else {
                Checked::Rows(problem, rows)
            }
        }
        Err(e) => Checked::Failed(
            db::describe_error(&e)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
    }
}

/// The read-only query for a check (up to five rows, each named by its primary key or
/// `ctid`), and what the rows it finds mean.
fn check_query(found: &Catalog, check: &Check) -> Option<(String, String)> {
    match check {
        Check::NotNull { table, column } => {
            let id = row_id(found, table);
            Some((
                format!(
                    "SELECT {id}::text FROM {table} t WHERE t.{column} IS NULL ORDER BY 1 LIMIT 5"
                ),
                format!(
                    "{} IS NULL in these rows, and the migrations make it NOT NULL",
                    column.raw()
                ),
            ))
        }
        Check::Constraint { table, def, rows } => constraint_query(found, table, def, rows),
        Check::UniqueIndex { table, def } => unique_index_query(table, def),
        Check::GeneratedMatches {
            table,
            column,
            expr,
            rows,
        } => {
            let id = row_id(found, table);
            Some((
                format!(
                    "SELECT {id} || {label} || coalesce(t.{column}::text, 'NULL') FROM {rows} WHERE t.{column} IS DISTINCT FROM ({expr}) ORDER BY 1 LIMIT 5",
                    label = quote_literal(&format!(", {}=", column.raw()))
                ),
                format!(
                    "these rows store a {} that differs from what the generated expression {expr} gives, so re-making it as a generated column would change them",
                    column.raw()
                ),
            ))
        }
    }
}

/// How to name a row of `table` (aliased `t`) in messages: its one-column primary key, else
/// `ctid`.
fn row_id(found: &Catalog, table: &Name) -> String {
    let key = table.to_string();
    found
        .objects
        .iter()
        .filter(|((k, n), _)| k == "constraint" && split_member(n).0 == key)
        .find_map(|(_, def)| {
            let col = Ident::parse(def.strip_prefix("PRIMARY KEY (")?.strip_suffix(')')?)?;
            Some(format!(
                "{} || t.{col}",
                quote_literal(&format!("{}=", col.raw()))
            ))
        })
        .unwrap_or_else(|| "'ctid=' || t.ctid".to_string())
}

fn constraint_query(
    found: &Catalog,
    table: &Name,
    def: &str,
    rows: &str,
) -> Option<(String, String)> {
    let id = row_id(found, table);
    if let Some(cols) = def
        .strip_prefix("UNIQUE (")
        .or_else(|| def.strip_prefix("PRIMARY KEY ("))
        .and_then(|r| r.strip_suffix(')'))
    {
        return Some((
            format!(
                "SELECT concat_ws(', ', {cols}) || ' (' || count(*) || ' rows)' FROM {rows} GROUP BY {cols} HAVING count(*) > 1 ORDER BY 1 LIMIT 5"
            ),
            format!("duplicate values of ({cols}), and the migrations make them unique ({def})"),
        ));
    }
    if let Some(expr) = def.strip_prefix("CHECK ") {
        let expr = expr.strip_suffix(" NOT VALID").unwrap_or(expr);
        return Some((
            format!("SELECT {id}::text FROM {rows} WHERE NOT {expr} ORDER BY 1 LIMIT 5"),
            format!("these rows fail {def}"),
        ));
    }
    let rest = def.strip_prefix("FOREIGN KEY (")?;
    let (col, rest) = rest.split_once(") REFERENCES ")?;
    let (target, rest) = rest.split_once('(')?;
    let (ref_col, _) = rest.split_once(')')?;
    let (col, ref_col) = (Ident::parse(col)?, Ident::parse(ref_col)?);
    let target = Name::parse(target)?;
    Some((
        format!(
            "SELECT {id} || {label} || t.{col}::text FROM {rows} WHERE t.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {target} r WHERE r.{ref_col} = t.{col}) ORDER BY 1 LIMIT 5",
            label = quote_literal(&format!(", {}=", col.raw()))
        ),
        format!("these rows point at no {target} row, and the migrations add {def}"),
    ))
}

fn unique_index_query(table: &Name, def: &str) -> Option<(String, String)> {
    let rest = def.strip_prefix("CREATE UNIQUE INDEX ")?;
    if rest.contains(" WHERE ") {
        return None;
    }
    let (_, rest) = rest.split_once(" USING ")?;
    let cols = rest.split_once('(')?.1.strip_suffix(')')?;
    if cols.contains('(') {
        return None;
    }
    Some((
        format!(
            "SELECT concat_ws(', ', {cols}) || ' (' || count(*) || ' rows)' FROM {table} t GROUP BY {cols} HAVING count(*) > 1 ORDER BY 1 LIMIT 5"
        ),
        format!("duplicate values of ({cols}), and the migrations add a unique index on them"),
    ))
}
