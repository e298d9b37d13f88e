//! The only place that reads settings files, the environment and flags; returns one validated
//! [`Settings`].
//!
//! Layers, lowest to highest precedence: built-in defaults, `<config-dir>/default.toml`,
//! `<config-dir>/<profile>.toml`, environment, flags. Every value remembers where it came from so
//! that an error can name the key and its source.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context as _;
use config::{Config, Map, Source, Value, ValueKind};

use crate::app::output::errln;
use crate::cli::Global;
use crate::error;

const BUILTIN_DEFAULT: &str = include_str!("../../config/default.toml");
const BUILTIN_PROFILES: &[(&str, &str)] = &[
    ("dev", include_str!("../../config/dev.toml")),
    ("test", include_str!("../../config/test.toml")),
    ("production", include_str!("../../config/production.toml")),
];

/// The dev password from the AI Dock seed guide; production refuses it.
pub const DEV_PASSWORD: &str = "aidock";

/// Every key a settings file or `AIDOCK__*` variable may set (the keys of `config/default.toml`).
static KNOWN_KEYS: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    let table: toml::Table = BUILTIN_DEFAULT
        .parse()
        .expect("the built-in default.toml is valid TOML");
    let mut keys = BTreeSet::new();
    collect_toml_keys("", &table, &mut keys);
    keys
});

fn collect_toml_keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => collect_toml_keys(&path, inner, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

pub use crate::db::{Secret, TlsMode};

/// Where a setting's value came from, for messages ("from environment variable X").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The defaults built into the binary (config/default.toml as shipped).
    BuiltIn,
    /// A file, an environment variable or a flag, as said in messages.
    Given(String),
}

impl Origin {
    const BUILT_IN: &'static str = "built-in defaults";

    fn from_text(text: &str) -> Origin {
        if text == Self::BUILT_IN {
            Origin::BuiltIn
        } else {
            Origin::Given(text.to_string())
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str(Self::BUILT_IN),
            Origin::Given(text) => f.write_str(text),
        }
    }
}

/// Everything a command needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: String,
    pub production: bool,
    pub server: Server,
    pub database: Database,
    pub local: Local,
    pub tls: Tls,
    pub migrate: Migrate,
    pub seed: Seed,
    pub output: Output,
    /// libpq's environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), which fills what a
    /// connection URL leaves out, as psql would.
    pub libpq_env: Vec<(String, String)>,
    /// libpq's password file: PGPASSFILE, else ~/.pgpass.
    pub passfile: Option<PathBuf>,
    /// The project root (`--project`, `AIDOCK_PROJECT_DIR`, else the nearest directory upward
    /// holding `.aidock/`, `config/` or `sql/`): its `config/`, `sql/`, `seeds/` and local cluster
    /// are used, whichever directory a command runs from.
    pub project: Option<PathBuf>,
    /// When the command started: `--wait` is one deadline from here, for every connection and
    /// every re-run.
    pub started: std::time::Instant,
    /// A re-run after a commit that could not be confirmed on the cluster's primary (HA): what
    /// a run reads must be confirmed the same way (issue #46).
    pub confirm_reads: bool,
    /// The active Python venv (`VIRTUAL_ENV`): whose Python imports the backend's models
    /// (`--to-models`, `verify --models`) when `--python` is not given.
    pub virtual_env: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Server {
    /// `None` means the project-local cluster.
    pub admin_url: Option<String>,
    pub connect_timeout: Duration,
    /// How long a standby gets to flush a commit under a multi-host URL (0: no check).
    pub confirm_timeout: Duration,
    /// How long to keep retrying a server that refuses connections, starts up or is full.
    pub wait: Duration,
    /// What a pooler in between keeps (`server.pool_mode`).
    pub pool_mode: crate::db::pooler::PoolMode,
}

#[derive(Debug, Clone)]
pub struct Database {
    pub url: Option<String>,
    pub name: String,
    pub owner: String,
    pub password: Secret,
    /// Where the password came from, for messages.
    pub password_source: Origin,
    pub connection_limit: i32,
    pub encoding: String,
    pub locale: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Local {
    pub data_dir: PathBuf,
    /// The settings file `local.data_dir` came from, if it came from one (as root such a file
    /// must be root's alone: `local_pg::check_settings_file`).
    pub data_dir_file: Option<PathBuf>,
    pub port: u16,
    /// `local.data_dir` is relative and no project was found: there is no project-local cluster
    /// to use (one is never made in whatever directory a command runs from).
    pub outside_project: bool,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub mode: TlsMode,
    pub mode_source: Origin,
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Migrate {
    pub dir: Option<PathBuf>,
    pub lock_timeout: Duration,
    /// How long a run keeps trying again after a lock wait timed out (0: never).
    pub lock_retry_for: Duration,
    /// The schemas the migrations own (empty: every non-system schema); the others are the
    /// platform's.
    pub schemas: Vec<String>,
    pub statement_timeout: Duration,
    pub wait_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Seed {
    pub dir: Option<PathBuf>,
    pub rng_seed: u64,
    pub dev_users: u32,
    pub dev_usage_logs: u64,
    /// Threads hashing passwords (0: one per core).
    pub hash_threads: u32,
    /// Connections loading usage logs side by side (0: one per core).
    pub copy_connections: u32,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// `None`: follow the users already in the database, else argon2id.
    pub password_scheme: Option<crate::seed::dev::Scheme>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub verbose: bool,
    pub quiet: bool,
    pub json: bool,
    pub yes: bool,
}

impl Settings {
    /// Load settings from the process environment and the working directory.
    ///
    /// # Errors
    /// A usage error naming the key and its source for any unknown key or bad value.
    pub fn load(global: &Global) -> anyhow::Result<Settings> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let settings = Settings::load_with(global, &env)?;
        // The engine's one process-wide setting (see schema::scope): which schemas are ours.
        crate::schema::scope::set_owned(settings.migrate.schemas.clone());
        Ok(settings)
    }

    /// Load settings from an explicit environment map (tests pass their own).
    ///
    /// # Errors
    /// A usage error naming the key and its source for any unknown key or bad value.
    pub fn load_with(global: &Global, env: &HashMap<String, String>) -> anyhow::Result<Settings> {
        let (profile, profile_source) = match (&global.profile, env.get("AIDOCK_PROFILE")) {
            (Some(p), _) => (p.clone(), "--profile".to_string()),
            (None, Some(p)) if !p.is_empty() => {
                (p.clone(), "environment variable AIDOCK_PROFILE".to_string())
            }
            _ => ("dev".to_string(), "the default".to_string()),
        };
        if !is_valid_profile_name(&profile) {
            return Err(error::usage(format!(
                "profile `{profile}` (from {profile_source}) is not a valid name; use dev, test, production or the stem of a config/<NAME>.toml file"
            )));
        }

        let project = project_root(global, env)?;
        let mut layers = vec![Layer::from_toml(BUILTIN_DEFAULT, Origin::BUILT_IN)?];
        let (config_dir, explicit_dir) = match &global.config_dir {
            Some(dir) => (dir.clone(), true),
            None => (
                project
                    .as_ref()
                    .map_or_else(|| PathBuf::from("config"), |p| p.join("config")),
                false,
            ),
        };
        if explicit_dir && !config_dir.is_dir() {
            return Err(error::usage(format!(
                "config directory `{}` (from --config-dir) does not exist",
                config_dir.display()
            )));
        }
        let default_file = config_dir.join("default.toml");
        if default_file.is_file() {
            layers.push(file_layer(&default_file)?);
        }
        let profile_file = config_dir.join(format!("{profile}.toml"));
        if profile_file.is_file() {
            layers.push(file_layer(&profile_file)?);
        } else if let Some((_, text)) = BUILTIN_PROFILES.iter().find(|(name, _)| *name == profile) {
            layers.push(Layer::from_toml(
                text,
                &format!("built-in {profile} profile"),
            )?);
        } else {
            return Err(error::usage(format!(
                "profile `{profile}` (from {profile_source}) has no settings file: expected `{}`; use dev, test, production or create that file",
                profile_file.display()
            )));
        }
        layers.push(Layer::from_env(env));
        layers.push(Layer::from_flags(global));
        // Production is a fact, not a setting: the profile's name decides, and any layer may turn
        // it on, but none can turn it off (an `AIDOCK__PRODUCTION=false`, or a config directory
        // whose production.toml forgot the key, must not disarm the guards). Issue #10.
        let production =
            profile == "production" || layers.iter().any(|l| l.sets_true("production"));
        let mut builder = Config::builder();
        for layer in layers {
            builder = builder.add_source(layer);
        }
        let config = builder
            .build()
            .map_err(|e| error::usage(format!("reading settings: {e}")))?;

        let root = config
            .collect()
            .map_err(|e| error::usage(format!("reading settings: {e}")))?;
        let reader = Reader { root };
        reader.reject_unknown_keys()?;
        let mut settings = reader.settings(profile, global, project.as_deref())?;
        settings.production = production;
        settings.project = project;
        settings.libpq_env = ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"]
            .iter()
            .filter_map(|k| env.get(*k).map(|v| ((*k).to_string(), v.clone())))
            .collect();
        settings.virtual_env = env
            .get("VIRTUAL_ENV")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        settings.passfile = env.get("PGPASSFILE").map(PathBuf::from).or_else(|| {
            env.get("HOME")
                .map(|home| PathBuf::from(home).join(".pgpass"))
        });
        // PGSSLMODE is an environment variable: it beats the settings files (as libpq's does),
        // but not the more specific AIDOCK__TLS__MODE. A bad value is an error either way.
        if let Some(mode) = env.get("PGSSLMODE") {
            let parsed = TlsMode::from_sslmode(mode, "environment variable PGSSLMODE")?;
            if !env.contains_key("AIDOCK__TLS__MODE") {
                settings.tls.mode = parsed;
                settings.tls.mode_source = Origin::Given("environment variable PGSSLMODE".into());
            }
        }
        Ok(settings)
    }

    /// What every connection needs besides its URL.
    #[must_use]
    pub fn connect_options(&self) -> crate::db::ConnectOptions {
        crate::db::ConnectOptions {
            libpq_env: self.libpq_env.clone(),
            tls: self.tls.mode,
            root_cert: self.tls.root_cert.clone(),
            connect_timeout: self.server.connect_timeout,
            wait: self.server.wait,
            deadline: (!self.server.wait.is_zero()).then(|| self.started + self.server.wait),
            passfile: self.passfile.clone(),
            notify: (!self.output.quiet).then_some(say_waiting as fn(&str)),
        }
    }

    /// The app role's password must be set wherever this tool logs in with it or sets it; an
    /// empty one is a configuration error found before connecting.
    ///
    /// # Errors
    /// A usage error naming where the (empty) password came from.
    pub fn check_password(&self) -> anyhow::Result<()> {
        if self.database.password.expose().is_empty() {
            return Err(error::usage(format!(
                "the password of role `{}` is empty (from {}); set database.password_file or AIDOCK__DATABASE__PASSWORD",
                self.database.owner, self.database.password_source
            )));
        }
        Ok(())
    }

    /// The refusal for production when its requirements are not met; call before connecting.
    ///
    /// # Errors
    /// A usage error naming the setting to change.
    pub fn check_production(&self) -> anyhow::Result<()> {
        if !self.production {
            return Ok(());
        }
        // With database.url the app's password travels in that URL, not in database.password.
        let uses_password = self.database.url.is_none() || self.server.admin_url.is_some();
        if uses_password
            && (self.database.password.expose().is_empty()
                || self.database.password.expose() == DEV_PASSWORD)
        {
            return Err(error::usage(format!(
                "the {} profile requires a non-default password for role `{}`; set database.password_file or AIDOCK__DATABASE__PASSWORD (now from {})",
                self.profile, self.database.owner, self.database.password_source
            )));
        }
        // An `sslmode=` in a URL wins over tls.mode when connecting, so it is checked too.
        for (url, key) in [
            (&self.server.admin_url, "server.admin_url"),
            (&self.database.url, "database.url"),
        ] {
            let Some(mode) = url.as_deref().and_then(crate::db::url_sslmode) else {
                continue;
            };
            let parsed = TlsMode::from_sslmode(&mode, key)?;
            if !matches!(parsed, TlsMode::Require | TlsMode::VerifyFull) {
                return Err(error::usage(format!(
                    "the {} profile requires TLS on every connection, but {key} says `sslmode={mode}`; use sslmode=require or verify-full (or remove it: tls.mode is `{}`)",
                    self.profile,
                    self.tls.mode.as_str()
                )));
            }
        }
        if !matches!(self.tls.mode, TlsMode::Require | TlsMode::VerifyFull) {
            return Err(error::usage(format!(
                "the {} profile requires tls.mode `require` or `verify-full`, but it is `{}` (from {}); set AIDOCK__TLS__MODE",
                self.profile,
                self.tls.mode.as_str(),
                self.tls.mode_source
            )));
        }
        Ok(())
    }
}

fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether `name` is a valid role or database name: `^[a-z_][a-z0-9_]{0,62}$`.
#[must_use]
pub fn is_valid_identifier(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

fn file_layer(path: &Path) -> anyhow::Result<Layer> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading settings file `{}`", path.display()))?;
    Layer::from_toml(&text, &format!("file `{}`", path.display()))
}

/// A settings layer whose values carry a readable origin (an environment variable or flag).
#[derive(Debug, Clone)]
struct Layer(Map<String, Value>);

impl Layer {
    /// Whether this layer sets top-level boolean `key` to true.
    fn sets_true(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| match &v.kind {
            ValueKind::Boolean(b) => *b,
            ValueKind::String(s) => s == "true",
            _ => false,
        })
    }

    fn from_toml(text: &str, origin: &str) -> anyhow::Result<Layer> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            error::usage(format!("{origin} is not valid TOML: {}", e.message()))
        })?;
        let mut map = Map::new();
        for (key, value) in table {
            map.insert(key, toml_to_value(value, origin));
        }
        Ok(Layer(map))
    }

    fn from_env(env: &HashMap<String, String>) -> Layer {
        let mut map = Map::new();
        let mut names: Vec<&String> = env.keys().collect();
        // Sorted so that a short name (AIDOCK_ADMIN_URL) deterministically beats its long twin.
        names.sort();
        for name in names {
            let value = &env[name];
            if let Some(rest) = name.strip_prefix("AIDOCK__") {
                let key = rest.to_ascii_lowercase().replace("__", ".");
                map.insert(
                    key,
                    origin_value(&format!("environment variable {name}"), value),
                );
            }
        }
        for (name, key) in [
            ("AIDOCK_ADMIN_URL", "server.admin_url"),
            ("DATABASE_URL", "database.url"),
        ] {
            if let Some(value) = env.get(name) {
                map.insert(
                    key.to_string(),
                    origin_value(&format!("environment variable {name}"), value),
                );
            }
        }
        Layer(map)
    }

    fn from_flags(global: &Global) -> Layer {
        let mut map = Map::new();
        let mut put = |key: &str, flag: &str, value: Option<String>| {
            if let Some(value) = value {
                map.insert(key.to_string(), origin_value(flag, &value));
            }
        };
        put("server.admin_url", "--admin-url", global.admin_url.clone());
        put("server.wait", "--wait", global.wait.clone());
        put(
            "database.url",
            "--database-url",
            global.database_url.clone(),
        );
        put(
            "migrate.dir",
            "--migrations-dir",
            global
                .migrations_dir
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        put(
            "seed.dir",
            "--seeds-dir",
            global.seeds_dir.as_ref().map(|p| p.display().to_string()),
        );
        Layer(map)
    }
}

fn toml_to_value(value: toml::Value, origin: &str) -> Value {
    let kind = match value {
        toml::Value::String(s) => ValueKind::String(s),
        toml::Value::Integer(n) => ValueKind::I64(n),
        toml::Value::Float(f) => ValueKind::Float(f),
        toml::Value::Boolean(b) => ValueKind::Boolean(b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(items) => ValueKind::Array(
            items
                .into_iter()
                .map(|v| toml_to_value(v, origin))
                .collect(),
        ),
        toml::Value::Table(table) => ValueKind::Table(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_value(v, origin)))
                .collect(),
        ),
    };
    Value::new(Some(&origin.to_string()), kind)
}

fn origin_value(origin: &str, value: &str) -> Value {
    Value::new(
        Some(&origin.to_string()),
        ValueKind::String(value.to_string()),
    )
}

impl Source for Layer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// Typed, origin-aware access to the merged configuration.
struct Reader {
    /// The merged values; read from here (not through serde) so that every value keeps its origin.
    root: Map<String, Value>,
}

impl Reader {
    fn reject_unknown_keys(&self) -> anyhow::Result<()> {
        let mut found = Vec::new();
        walk_values("", &self.root, &mut found);
        for (key, value) in found {
            if !KNOWN_KEYS.contains(&key) {
                let suggestion = KNOWN_KEYS
                    .iter()
                    .map(|k| (strsim::jaro_winkler(k, &key), k))
                    .filter(|(score, _)| *score > 0.85)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                return Err(error::usage(format!(
                    "unknown setting `{key}` (from {}); {suggestion}every valid key is listed in config/default.toml",
                    origin_of(&value)
                )));
            }
        }
        Ok(())
    }

    fn raw(&self, key: &str) -> Value {
        let mut parts = key.split('.');
        let first = parts.next().unwrap_or_default();
        let mut value = self.root.get(first);
        for part in parts {
            value = match value.map(|v| &v.kind) {
                Some(ValueKind::Table(t)) => t.get(part),
                _ => None,
            };
        }
        value
            .cloned()
            .expect("every known key has a built-in default")
    }

    fn bad(&self, key: &str, expected: &str) -> anyhow::Error {
        let value = self.raw(key);
        error::usage(format!(
            "setting `{key}` = {:?} (from {}) is invalid: expected {expected}",
            value.to_string(),
            origin_of(&value)
        ))
    }

    fn string(&self, key: &str) -> anyhow::Result<String> {
        let value = self.raw(key);
        match value.kind {
            ValueKind::String(s) => Ok(s),
            ValueKind::I64(_) | ValueKind::U64(_) | ValueKind::Boolean(_) | ValueKind::Float(_) => {
                Ok(value.to_string())
            }
            _ => Err(self.bad(key, "a string")),
        }
    }

    fn optional(&self, key: &str) -> anyhow::Result<Option<String>> {
        let s = self.string(key)?;
        Ok(if s.trim().is_empty() { None } else { Some(s) })
    }

    fn int<T: TryFrom<i64>>(&self, key: &str, expected: &str) -> anyhow::Result<T> {
        let value = self.raw(key);
        let n = match &value.kind {
            ValueKind::I64(n) => Some(*n),
            ValueKind::U64(n) => i64::try_from(*n).ok(),
            ValueKind::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        n.and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.bad(key, expected))
    }

    fn bool(&self, key: &str) -> anyhow::Result<bool> {
        let value = self.raw(key);
        match &value.kind {
            ValueKind::Boolean(b) => Ok(*b),
            ValueKind::String(s) if s == "true" => Ok(true),
            ValueKind::String(s) if s == "false" => Ok(false),
            _ => Err(self.bad(key, "true or false")),
        }
    }

    /// A comma-separated list of names (schema names as they are, case kept), possibly empty.
    fn name_list(&self, key: &str) -> anyhow::Result<Vec<String>> {
        let s = self.string(key)?;
        let names: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if names.iter().any(|n| n.len() > 63 || n.contains('\0')) {
            return Err(self.bad(
                key,
                "schema names (at most 63 bytes each) separated by commas, e.g. \"public\"",
            ));
        }
        Ok(names)
    }

    fn duration(&self, key: &str) -> anyhow::Result<Duration> {
        let s = self.string(key)?;
        parse_duration(&s).ok_or_else(|| {
            self.bad(
                key,
                "a duration with units such as 500ms, 5s, 1m30s, 2min or 1h (a bare number has no unit)",
            )
        })
    }

    /// A duration the server is told (`SET lock_timeout`, `statement_timeout`): PostgreSQL keeps
    /// these in milliseconds in an `int`, so anything above 2147483647 ms (about 24.8 days) is
    /// refused here, naming the key, instead of by the server half-way through a run.
    fn server_duration(&self, key: &str) -> anyhow::Result<Duration> {
        let d = self.duration(key)?;
        if d.as_millis() > i32::MAX as u128 {
            return Err(self.bad(
                key,
                "a duration PostgreSQL accepts: at most 2147483647ms (about 24 days; 0 means no limit)",
            ));
        }
        Ok(d)
    }

    fn identifier(&self, key: &str) -> anyhow::Result<String> {
        let s = self.string(key)?;
        if is_valid_identifier(&s) {
            Ok(s)
        } else {
            Err(self.bad(
                key,
                "a name matching ^[a-z_][a-z0-9_]{0,62}$ (lower-case letters, digits, underscores; at most 63 characters)",
            ))
        }
    }

    fn origin(&self, key: &str) -> String {
        origin_of(&self.raw(key))
    }

    fn settings(
        &self,
        profile: String,
        global: &Global,
        project: Option<&Path>,
    ) -> anyhow::Result<Settings> {
        let password_file = self.optional("database.password_file")?;
        let (password, password_source) = match password_file {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    error::usage(format!(
                        "cannot read the password file `{path}` named by database.password_file (from {}): {e}",
                        self.origin("database.password_file")
                    ))
                })?;
                let first = text.lines().next().unwrap_or("").to_string();
                (Secret::new(first), Origin::Given(format!("file `{path}`")))
            }
            None => (
                Secret::new(self.string("database.password")?),
                Origin::from_text(&self.origin("database.password")),
            ),
        };
        let tls_mode_text = self.string("tls.mode")?;
        let tls_mode = TlsMode::parse(&tls_mode_text)
            .ok_or_else(|| self.bad("tls.mode", "disable, prefer, require or verify-full"))?;
        let port: u16 = self.int("local.port", "a port number from 1 to 65535")?;
        if port == 0 {
            return Err(self.bad("local.port", "a port number from 1 to 65535"));
        }
        let connection_limit: i32 = self.int(
            "database.connection_limit",
            "-1 (no limit) or a positive number",
        )?;
        if connection_limit < -1 {
            return Err(self.bad(
                "database.connection_limit",
                "-1 (no limit) or a positive number",
            ));
        }
        let encoding = self.string("database.encoding")?;
        if encoding.is_empty()
            || !encoding
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(self.bad("database.encoding", "an encoding name such as UTF8"));
        }
        let locale = self.optional("database.locale")?;
        if let Some(l) = &locale
            && !l
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        {
            return Err(self.bad("database.locale", "a locale name such as en_US.UTF-8"));
        }
        let positive = "a whole number of at least 1";
        Ok(Settings {
            started: std::time::Instant::now(),
            confirm_reads: false,
            virtual_env: None,
            production: self.bool("production")?,
            server: Server {
                admin_url: self.optional("server.admin_url")?,
                connect_timeout: self.duration("server.connect_timeout")?,
                confirm_timeout: self.duration("server.confirm_timeout")?,
                wait: self.duration("server.wait")?,
                pool_mode: match self.string("server.pool_mode")?.as_str() {
                    "" => crate::db::pooler::PoolMode::Detect,
                    "transaction" => crate::db::pooler::PoolMode::Transaction,
                    "session" => crate::db::pooler::PoolMode::Session,
                    _ => {
                        return Err(self.bad(
                            "server.pool_mode",
                            "\"\" (find out), \"transaction\" or \"session\"",
                        ));
                    }
                },
            },
            database: Database {
                url: self.optional("database.url")?,
                name: self.identifier("database.name")?,
                owner: self.identifier("database.owner")?,
                password,
                password_source,
                connection_limit,
                encoding,
                locale,
            },
            local: Local {
                outside_project: project.is_none()
                    && self
                        .optional("local.data_dir")?
                        .is_some_and(|d| !Path::new(&d).is_absolute()),
                data_dir: project_relative(
                    PathBuf::from(
                        self.optional("local.data_dir")?
                            .ok_or_else(|| self.bad("local.data_dir", "a directory path"))?,
                    ),
                    project,
                ),
                data_dir_file: self
                    .origin("local.data_dir")
                    .strip_prefix("file `")
                    .and_then(|f| f.strip_suffix('`'))
                    .map(PathBuf::from),
                port,
            },
            tls: Tls {
                mode: tls_mode,
                mode_source: Origin::from_text(&self.origin("tls.mode")),
                root_cert: self.optional("tls.root_cert")?.map(PathBuf::from),
            },
            migrate: Migrate {
                dir: self.optional("migrate.dir")?.map(PathBuf::from),
                lock_timeout: self.server_duration("migrate.lock_timeout")?,
                lock_retry_for: self.duration("migrate.lock_retry_for")?,
                schemas: self.name_list("migrate.schemas")?,
                statement_timeout: self.server_duration("migrate.statement_timeout")?,
                wait_timeout: self.duration("migrate.wait_timeout")?,
            },
            seed: Seed {
                // The project's seeds/ when it has one, else the copy built into the binary.
                dir: self.optional("seed.dir")?.map(PathBuf::from).or_else(|| {
                    project
                        .map(|p| p.join("seeds"))
                        .filter(|s| s.join("roles.toml").is_file())
                }),
                rng_seed: self.int("seed.rng_seed", "a whole number of at least 0")?,
                dev_users: self.int("seed.dev_users", "a whole number of at least 0")?,
                dev_usage_logs: self.int("seed.dev_usage_logs", "a whole number of at least 0")?,
                hash_threads: self.int(
                    "seed.hash_threads",
                    "0 (one per core) or a number of threads",
                )?,
                copy_connections: self.int(
                    "seed.copy_connections",
                    "0 (one per core) or a number of connections",
                )?,
                argon2_memory_kib: self.int("seed.argon2.memory_kib", "a whole number of KiB")?,
                argon2_iterations: self.int("seed.argon2.iterations", positive)?,
                argon2_parallelism: self.int("seed.argon2.parallelism", positive)?,
                password_scheme: match self.optional("seed.password_scheme")? {
                    None => None,
                    Some(text) => {
                        Some(crate::seed::dev::Scheme::parse(&text).ok_or_else(|| {
                            self.bad("seed.password_scheme", "argon2id or bcrypt")
                        })?)
                    }
                },
            },
            output: Output {
                verbose: global.verbose > 0,
                quiet: global.quiet,
                json: global.json,
                yes: global.yes,
            },
            profile,
            libpq_env: Vec::new(),
            passfile: None,
            project: None,
        })
    }
}

/// What `--wait` says while it waits (on stderr).
fn say_waiting(line: &str) {
    errln!("{line}");
}

/// The project root: `--project`, else `AIDOCK_PROJECT_DIR`, else the nearest directory upward
/// from the current one that holds `.aidock/`, `config/` or `sql/` (none: not in a project).
fn project_root(global: &Global, env: &HashMap<String, String>) -> anyhow::Result<Option<PathBuf>> {
    let named = match (&global.project, env.get("AIDOCK_PROJECT_DIR")) {
        (Some(dir), _) => Some((dir.clone(), "--project")),
        (None, Some(dir)) if !dir.is_empty() => Some((
            PathBuf::from(dir),
            "environment variable AIDOCK_PROJECT_DIR",
        )),
        _ => None,
    };
    if let Some((dir, source)) = named {
        if !dir.is_dir() {
            return Err(error::usage(format!(
                "project directory `{}` (from {source}) does not exist",
                dir.display()
            )));
        }
        return Ok(Some(std::path::absolute(&dir).unwrap_or(dir)));
    }
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(None);
    };
    Ok(cwd
        .ancestors()
        .find(|dir| {
            dir.join(".aidock").is_dir() || dir.join("config").is_dir() || dir.join("sql").is_dir()
        })
        .map(Path::to_path_buf))
}

/// A relative `local.data_dir` belongs to the project, not to the current directory: it is taken
/// from the project root (run from `src/`, `init` must find the cluster it made from the root,
/// not make a second one).
fn project_relative(path: PathBuf, project: Option<&Path>) -> PathBuf {
    match project {
        Some(root) if !path.is_absolute() => root.join(&path),
        _ => path,
    }
}

fn walk_values(prefix: &str, map: &Map<String, Value>, out: &mut Vec<(String, Value)>) {
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match &value.kind {
            ValueKind::Table(inner) => walk_values(&path, inner, out),
            _ => out.push((path, value.clone())),
        }
    }
}

fn origin_of(value: &Value) -> String {
    value.origin().unwrap_or(Origin::BUILT_IN).to_string()
}

/// Parse a duration with units (`500ms`, `5s`, `1m30s`, `2min`, `1h`, `5sec`): humantime's
/// syntax. A bare number is refused: its unit would be a guess.
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.bytes().all(|b| b.is_ascii_digit()) && text != "0" {
        return None;
    }
    if text == "0" {
        return Some(Duration::ZERO);
    }
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["aidock", "_x", "a1_b", &"a".repeat(63)] {
            assert!(is_valid_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "x;drop",
            "Robert\"",
            "1abc",
            "Aidock",
            "a-b",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), None, "a bare number has no unit");
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5sec"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2min"), Some(Duration::from_mins(2)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_hours(1)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
    }

    #[test]
    fn known_keys_come_from_default_toml() {
        assert!(KNOWN_KEYS.contains("database.name"));
        assert!(KNOWN_KEYS.contains("seed.argon2.memory_kib"));
        assert!(!KNOWN_KEYS.contains("database"));
    }

    #[test]
    fn pgsslmode_applies_only_when_no_setting_chose_a_tls_mode() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        let global = Global::default();
        let s = Settings::load_with(&global, &env(&[("PGSSLMODE", "require")])).expect("settings");
        assert_eq!(s.tls.mode, TlsMode::Require);
        assert_eq!(s.connect_options().tls, TlsMode::Require);
        let s = Settings::load_with(
            &global,
            &env(&[("PGSSLMODE", "require"), ("AIDOCK__TLS__MODE", "disable")]),
        )
        .expect("settings");
        assert_eq!(s.tls.mode, TlsMode::Disable, "the setting wins");
        let err = Settings::load_with(&global, &env(&[("PGSSLMODE", "bogus")])).expect_err("bad");
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("PGSSLMODE"), "{err}");
    }
}
