//! The backend's SQLAlchemy models as a desired schema (issue #42): the DDL `create_all` would
//! run, produced by the backend's own Python (`models.py`, through a mock engine: no database,
//! no driver), then built in a scratch database like any desired schema. `migrate diff
//! --to-models` writes the pair from it; `migrate verify --models` reports where the models and
//! the migrations disagree, each with the model declaration that would agree ([`hint`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::diff::Desired;
use crate::error;
use crate::schema::diff::{Drift, DriftKind};

/// The script the backend's Python runs.
const SCRIPT: &str = include_str!("models.py");

/// Which models, and which Python imports them.
#[derive(Debug, Clone)]
pub struct Models {
    /// `MODULE:ATTR`, e.g. `app.models:Base` (a declarative base, or a `MetaData`).
    pub spec: String,
    /// The backend's Python (`--python`, else `$VIRTUAL_ENV/bin/python`, else `python3`).
    pub python: PathBuf,
    /// Where the modules import from (the current directory, as for `alembic`).
    pub dir: PathBuf,
}

/// The models' DDL as a desired schema (one file, named after the models).
///
/// # Errors
/// Python not found, SQLAlchemy missing in it, the module not importable (its traceback's last
/// lines), ATTR missing or neither a base nor a `MetaData` (each exit 2, saying what to do).
pub fn desired(models: &Models) -> anyhow::Result<Desired> {
    let spec = &models.spec;
    if !spec.contains(':') {
        return Err(error::usage(format!(
            "`{spec}` is not MODULE:ATTR; name the module and the declarative base (or MetaData) in it, e.g. app.models:Base"
        )));
    }
    let python = &models.python;
    let out = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(spec)
        .current_dir(&models.dir)
        .output()
        .map_err(|e| {
            error::usage(format!(
                "cannot run the backend's Python `{}` ({e}); pass --python PATH (the interpreter of the venv that has SQLAlchemy and the models), or activate that venv (VIRTUAL_ENV)",
                python.display()
            ))
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`{}` said nothing usable about {spec} (exit {:?}): {}{}",
                python.display(),
                out.status.code(),
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    if let Some(kind) = answer["error"].as_str() {
        let message = answer["message"].as_str().unwrap_or_default();
        let (module, attr) = spec.split_once(':').unwrap_or((spec, ""));
        return Err(error::usage(match kind {
            "sqlalchemy" => format!(
                "SQLAlchemy is not installed for `{}` ({message}); pass --python the interpreter of the backend's venv, or `pip install sqlalchemy` there",
                python.display()
            ),
            "import" => format!(
                "importing `{module}` failed (run from the directory it imports from, as for `alembic`, or set PYTHONPATH; the working directory was `{}`):\n{message}",
                models.dir.display()
            ),
            "attr" => format!("`{module}` has no `{attr}` (`{message}` is missing)"),
            "type" => format!(
                "`{spec}` is a {message}, neither a declarative base nor a MetaData; name the base the models derive from (e.g. app.models:Base) or its metadata (app.models:Base.metadata)"
            ),
            "create_all" => format!("SQLAlchemy could not write the DDL for `{spec}`:\n{message}"),
            _ => format!("`{spec}`: {message}"),
        }));
    }
    let sql = answer["sql"].as_str().unwrap_or_default().to_string();
    Ok(vec![(format!("the models {spec} (create_all)"), sql)])
}

/// The Python to run: `--python`, else the active venv's, else `python3`.
#[must_use]
pub fn python(flag: Option<&Path>, virtual_env: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| virtual_env.map(|v| v.join("bin").join("python")))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// One difference as the models' side sees it: which side makes the object, or what each makes
/// of it (one line, escaped as every report line is).
#[must_use]
pub fn line(d: &Drift) -> String {
    let shown = |t: &str| crate::schema::diff::printable(t);
    let what = format!("{} {}", d.kind, shown(&d.object));
    match (&d.drift, &d.expected, &d.found) {
        (DriftKind::Missing, _, _) => format!("{what}: the migrations make it, the models do not"),
        (DriftKind::Extra, _, _) => format!("{what}: the models make it, the migrations do not"),
        (_, Some(e), Some(f)) => {
            format!(
                "{what}: the migrations make {}; the models {}",
                shown(e),
                shown(f)
            )
        }
        _ => format!(
            "{what}: {} (the models differ from the migrations)",
            shown(&d.problem)
        ),
    }
}

/// The model declaration that would make the models agree with the migrations on `drift`
/// (expected: the migrations; found: the models), in SQLAlchemy's words.
#[must_use]
pub fn hint(d: &Drift) -> String {
    let (table, member) = d.object.rsplit_once('.').unwrap_or((&d.object, ""));
    let expected = d.expected.as_deref().unwrap_or_default();
    match (d.kind.as_str(), &d.drift) {
        ("table", DriftKind::Missing) => {
            format!("a model class with `__tablename__ = \"{}\"`", d.object)
        }
        ("table", DriftKind::Extra) => format!(
            "no migration makes table {}: drop its model, or write the migration that makes it",
            d.object
        ),
        ("column", DriftKind::Missing | DriftKind::Differs) => {
            format!(
                "`{member} = {}` in the model of table {table}",
                column(expected)
            )
        }
        ("column", DriftKind::Extra) => format!(
            "no migration makes column {}: drop it from the model, or write the migration that adds it",
            d.object
        ),
        ("constraint", DriftKind::Missing | DriftKind::Differs) => constraint(member, expected),
        ("constraint", DriftKind::Extra) => format!(
            "the models make constraint {} the migrations do not: drop it from the model (a `unique=True`, a ForeignKey or a CheckConstraint)",
            d.object
        ),
        ("index", DriftKind::Missing | DriftKind::Differs) => index(&d.object, expected),
        ("index", DriftKind::Extra) => format!(
            "the models make index {} the migrations do not: drop `index=True` / the `Index(...)` from the model",
            d.object
        ),
        ("sequence", DriftKind::Extra) => format!(
            "sequence {} comes from an Integer primary key (SERIAL); the migrations' key is not one: declare the key as the migrations do (e.g. `Column(UUID(as_uuid=True), primary_key=True, server_default=text(\"gen_random_uuid()\"))`)",
            d.object
        ),
        ("function" | "procedure" | "trigger", DriftKind::Missing | DriftKind::Differs) => format!(
            "the models do not make {} {}: `event.listen(<Model>.__table__, \"after_create\", DDL(\"\"\"<its CREATE statement>\"\"\"))` (create_all runs it); the statement as the migrations make it: {}",
            d.kind,
            d.object,
            if expected.is_empty() {
                "see `migrate verify`"
            } else {
                expected
            }
        ),
        ("comment", DriftKind::Missing | DriftKind::Differs) => format!(
            "`comment={}` on the model's Column or table (`__table_args__ = {{\"comment\": ...}}`)",
            python_str(expected)
        ),
        ("type", DriftKind::Missing | DriftKind::Differs) => format!(
            "`Enum(..., name=\"{}\")` with the values {expected}, in the migrations' order",
            d.object
        ),
        ("privileges" | "owner", _) => format!(
            "{} are not the models' business: the migrations (GRANT) or init own them; nothing to change in the models",
            d.kind
        ),
        _ => format!(
            "make the models produce what the migrations make for {} {} ({})",
            d.kind, d.object, d.problem
        ),
    }
}

/// A SQLAlchemy `Column(...)` for a column definition as the catalog prints it
/// (`type [COLLATE c] NULL|NOT NULL [DEFAULT expr | GENERATED ALWAYS AS (expr) STORED]`).
fn column(def: &str) -> String {
    let (head, generated) = match def.split_once(" GENERATED ALWAYS AS ") {
        Some((h, g)) if g.ends_with(" STORED") => (h, Some(g.trim_end_matches(" STORED"))),
        _ => (def, None),
    };
    let (head, default) = match head.split_once(" DEFAULT ") {
        Some((h, d)) => (h, Some(d)),
        None => (head, None),
    };
    let (ty, not_null) = if let Some(t) = head.strip_suffix(" NOT NULL") {
        (t, true)
    } else {
        (head.strip_suffix(" NULL").unwrap_or(head), false)
    };
    let mut parts = vec![sqlalchemy_type(ty)];
    if let Some(expr) = generated {
        let expr = expr.trim_start_matches('(').trim_end_matches(')');
        parts.push(format!("Computed({}, persisted=True)", python_str(expr)));
    }
    parts.push(format!(
        "nullable={}",
        if not_null { "False" } else { "True" }
    ));
    if let Some(default) = default {
        parts.push(format!("server_default=text({})", python_str(default)));
    }
    format!("Column({})", parts.join(", "))
}

/// SQLAlchemy's name for a PostgreSQL type as `format_type` prints it.
fn sqlalchemy_type(ty: &str) -> String {
    let ty = ty.trim();
    if let Some(n) = ty
        .strip_prefix("character varying(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return format!("String({n})");
    }
    if let Some(ps) = ty
        .strip_prefix("numeric(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return format!("Numeric({})", ps.replace(',', ", "));
    }
    match ty {
        "integer" => "Integer".into(),
        "bigint" => "BigInteger".into(),
        "smallint" => "SmallInteger".into(),
        "text" => "Text".into(),
        "boolean" => "Boolean".into(),
        "uuid" => "UUID(as_uuid=True)".into(),
        "jsonb" => "postgresql.JSONB".into(),
        "json" => "JSON".into(),
        "timestamp with time zone" => "DateTime(timezone=True)".into(),
        "timestamp without time zone" => "DateTime()".into(),
        "date" => "Date".into(),
        "inet" => "postgresql.INET".into(),
        "double precision" => "Float".into(),
        "bytea" => "LargeBinary".into(),
        other => format!("<{other}>"),
    }
}

/// A constraint's model declaration, from its definition (`pg_get_constraintdef`).
fn constraint(name: &str, def: &str) -> String {
    if let Some(cols) = def
        .strip_prefix("UNIQUE (")
        .and_then(|r| r.strip_suffix(')'))
    {
        let cols: Vec<String> = cols.split(", ").map(python_str).collect();
        return format!(
            "`UniqueConstraint({}, name={})` in `__table_args__`",
            cols.join(", "),
            python_str(name)
        );
    }
    if let Some(expr) = def.strip_prefix("CHECK ") {
        let expr = expr.trim_start_matches('(').trim_end_matches(')');
        return format!(
            "`CheckConstraint({}, name={})` in `__table_args__`",
            python_str(expr),
            python_str(name)
        );
    }
    if def.starts_with("PRIMARY KEY") {
        return format!("`primary_key=True` on the key's Column ({def})");
    }
    if let Some(rest) = def.strip_prefix("FOREIGN KEY (")
        && let Some((col, rest)) = rest.split_once(") REFERENCES ")
        && let Some((target, rest)) = rest.split_once('(')
        && let Some((ref_col, actions)) = rest.split_once(')')
    {
        let mut args = vec![python_str(&format!("{}.{ref_col}", target.trim()))];
        for (word, arg) in [(" ON DELETE ", "ondelete"), (" ON UPDATE ", "onupdate")] {
            if let Some(action) = actions.split(word).nth(1) {
                let action = action
                    .split(" ON ")
                    .next()
                    .unwrap_or(action)
                    .trim()
                    .trim_end_matches(" DEFERRABLE");
                args.push(format!("{arg}={}", python_str(action)));
            }
        }
        return format!("`{col} = Column(..., ForeignKey({}))`", args.join(", "));
    }
    format!("a constraint `{name}`: {def}")
}

/// An index's model declaration, from its definition (`pg_get_indexdef`).
fn index(name: &str, def: &str) -> String {
    let unique = def.starts_with("CREATE UNIQUE INDEX");
    let columns = def
        .split_once(" USING ")
        .and_then(|(_, r)| r.split_once('('))
        .map(|(_, r)| r.rsplit_once(')').map_or(r, |(c, _)| c))
        .unwrap_or_default();
    let cols: Vec<String> = columns.split(", ").map(python_str).collect();
    format!(
        "`Index({}, {}{})` in `__table_args__` (or `index=True{}` on the Column, which names it ix_<table>_<column>)",
        python_str(name.rsplit('.').next().unwrap_or(name)),
        cols.join(", "),
        if unique { ", unique=True" } else { "" },
        if unique { ", unique=True" } else { "" }
    )
}

/// A Python string literal.
fn python_str(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(kind: &str, object: &str, d: DriftKind, expected: &str) -> Drift {
        Drift {
            kind: kind.into(),
            object: object.into(),
            drift: d,
            problem: String::new(),
            expected: Some(expected.into()),
            found: None,
        }
    }

    #[test]
    fn hints_say_the_model_declaration() {
        assert_eq!(
            hint(&drift(
                "column",
                "users.is_active",
                DriftKind::Differs,
                "boolean NOT NULL DEFAULT true"
            )),
            "`is_active = Column(Boolean, nullable=False, server_default=text(\"true\"))` in the model of table users"
        );
        assert_eq!(
            hint(&drift(
                "column",
                "usage_logs.tokens_total",
                DriftKind::Missing,
                "integer NULL GENERATED ALWAYS AS ((tokens_prompt + tokens_completion)) STORED"
            )),
            "`tokens_total = Column(Integer, Computed(\"tokens_prompt + tokens_completion\", persisted=True), nullable=True)` in the model of table usage_logs"
        );
        assert!(
            hint(&drift(
                "constraint",
                "users.users_role_id_fkey",
                DriftKind::Differs,
                "FOREIGN KEY (role_id) REFERENCES roles(id) ON DELETE RESTRICT"
            ))
            .contains("ForeignKey(\"roles.id\", ondelete=\"RESTRICT\")")
        );
        assert!(
            hint(&drift(
                "index",
                "ix_users_email",
                DriftKind::Missing,
                "CREATE UNIQUE INDEX ix_users_email ON public.users USING btree (email)"
            ))
            .contains("Index(\"ix_users_email\", \"email\", unique=True)")
        );
        assert_eq!(
            python(None, Some(Path::new("/venv"))),
            PathBuf::from("/venv/bin/python")
        );
    }
}
