//! Where and how to connect, without any settings: a URL (or key=value string) completed from
//! libpq's environment the way psql completes it, and the TLS policy. [`resolve`] is pure, so the
//! libpq fallback is unit-tested without a server.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Config;

use crate::error;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used, never to print.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to secure connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

impl TlsMode {
    /// One of our own names (`tls.mode`): disable, prefer, require, verify-full.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    /// A libpq `sslmode` (`allow` acts as `disable`; `verify-ca` as the stricter `verify-full`).
    ///
    /// # Errors
    /// A usage error naming `source` for any other value.
    pub fn from_sslmode(mode: &str, source: &str) -> anyhow::Result<Self> {
        Ok(match mode {
            "disable" | "allow" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" | "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(error::usage(format!(
                    "sslmode `{other}` from {source} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }

    /// The libpq-style name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the connection is encrypted whatever the server offers.
    #[must_use]
    pub fn requires_tls(self) -> bool {
        matches!(self, TlsMode::Require | TlsMode::VerifyFull)
    }
}

/// Everything a connection needs besides its URL (produced by the application's settings).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// libpq's environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`): fills what
    /// a URL leaves out, as psql does.
    pub libpq_env: Vec<(String, String)>,
    /// Used unless the URL says `sslmode=`.
    pub tls: TlsMode,
    /// CA certificates for `verify-full` (else the system store).
    pub root_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Keep retrying a server that is down, starting up or full for this long (`--wait`).
    pub wait: Duration,
    /// When `--wait` ends, for the whole command (re-runs and every connection included); `None`:
    /// `wait` from each connection's first attempt.
    pub deadline: Option<std::time::Instant>,
    /// libpq's password file (`PGPASSFILE`, else `~/.pgpass`), read when neither the URL nor
    /// `PGPASSWORD` gives a password.
    pub passfile: Option<PathBuf>,
    /// Where `--wait` says that it is waiting, and for what (none: quiet).
    pub notify: Option<fn(&str)>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            libpq_env: Vec::new(),
            tls: TlsMode::Prefer,
            root_cert: None,
            connect_timeout: Duration::from_secs(5),
            wait: Duration::ZERO,
            deadline: None,
            passfile: None,
            notify: None,
        }
    }
}

impl ConnectOptions {
    fn env(&self, name: &str) -> Option<&str> {
        self.libpq_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A URL completed from libpq's environment, and the TLS mode it asks for.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub config: Config,
    pub tls: TlsMode,
    /// `target_session_attrs`, as libpq takes it (checked per host by `Target::connect`; the
    /// driver itself knows only three of libpq's six values).
    pub session_attrs: SessionAttrs,
    /// With several hosts and the password from the password file: each host's own password
    /// (libpq matches the file per host; a host with no line gets none). Empty otherwise.
    pub host_passwords: Vec<Option<Secret>>,
    /// Where the password came from, when it was the password file (for authentication errors).
    pub passfile: Option<PathBuf>,
}

/// A black-holed server is given up in seconds, not at TCP's own timeouts (minutes): keepalives
/// on an idle connection, and unacknowledged data, bounded.
pub(crate) fn keepalives(config: &mut Config) {
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(20));
}

/// libpq's `target_session_attrs`: which of the listed hosts a connection settles on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    Any,
    /// `read-write`: a session whose transactions may write (`transaction_read_only` off).
    ReadWrite,
    /// `read-only`.
    ReadOnly,
    /// `primary`: not in recovery.
    Primary,
    /// `standby`: in recovery.
    Standby,
    /// `prefer-standby`: a standby when one answers, else any.
    PreferStandby,
}

impl SessionAttrs {
    fn parse(value: &str) -> Option<SessionAttrs> {
        Some(match value {
            "any" => SessionAttrs::Any,
            "read-write" => SessionAttrs::ReadWrite,
            "read-only" => SessionAttrs::ReadOnly,
            "primary" => SessionAttrs::Primary,
            "standby" => SessionAttrs::Standby,
            "prefer-standby" => SessionAttrs::PreferStandby,
            _ => return None,
        })
    }

    /// As written in a URL (`None` for `any`, which a URL need not say).
    #[must_use]
    pub fn as_param(self) -> Option<&'static str> {
        match self {
            SessionAttrs::Any => None,
            SessionAttrs::ReadWrite => Some("read-write"),
            SessionAttrs::ReadOnly => Some("read-only"),
            SessionAttrs::Primary => Some("primary"),
            SessionAttrs::Standby => Some("standby"),
            SessionAttrs::PreferStandby => Some("prefer-standby"),
        }
    }

    /// Whether a session with these facts qualifies (`in_recovery`, `read_only`), for a pass
    /// that may settle for a standby (`prefer-standby`'s second pass takes anything).
    #[must_use]
    pub fn accepts(self, in_recovery: bool, read_only: bool, second_pass: bool) -> bool {
        match self {
            SessionAttrs::Any => true,
            SessionAttrs::ReadWrite => !read_only,
            SessionAttrs::ReadOnly => read_only,
            SessionAttrs::Primary => !in_recovery,
            SessionAttrs::Standby => in_recovery,
            SessionAttrs::PreferStandby => second_pass || in_recovery,
        }
    }
}

/// Parse `url` (`postgres://` or key=value) and fill what it leaves out from libpq's environment,
/// then libpq's defaults (host `localhost`, user `postgres`). An `sslmode=` in the URL wins over
/// `options.tls`. `source` names the setting, for messages (the password is never shown).
///
/// # Errors
/// A usage error for a URL that does not parse, a bad `PGPORT` or a bad `sslmode`.
pub fn resolve(url: &str, source: &str, options: &ConnectOptions) -> anyhow::Result<Endpoint> {
    check_userinfo(url, source)?;
    let (url, sslmode) = take_sslmode(url);
    let (url, attrs) = take_param(&url, "target_session_attrs");
    let session_attrs = match attrs {
        None => SessionAttrs::Any,
        Some(value) => SessionAttrs::parse(&value).ok_or_else(|| {
            error::usage(format!(
                "{source}: target_session_attrs `{value}` is not one libpq knows; use any, read-write, read-only, primary, standby or prefer-standby"
            ))
        })?,
    };
    let mut config: Config = url.parse().map_err(|e| {
        error::usage(format!(
            "{source} is not a valid PostgreSQL URL ({e}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        ))
    })?;
    if config.get_hosts().is_empty() {
        config.host(options.env("PGHOST").unwrap_or("localhost"));
    }
    if config.get_ports().is_empty()
        && let Some(port) = options.env("PGPORT")
    {
        let port = port
            .parse()
            .map_err(|_| error::usage(format!("PGPORT `{port}` is not a port number")))?;
        config.port(port);
    }
    if config.get_user().is_none() {
        config.user(options.env("PGUSER").unwrap_or("postgres"));
    }
    if config.get_password().is_none()
        && let Some(password) = options.env("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none()
        && let Some(dbname) = options.env("PGDATABASE")
    {
        config.dbname(dbname);
    }
    let mut host_passwords = Vec::new();
    let mut passfile = None;
    if config.get_password().is_none()
        && let Some(file) = &options.passfile
    {
        let user = config.get_user().unwrap_or("postgres").to_string();
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let ports = config.get_ports().to_vec();
        let mut found = Vec::new();
        for (i, host) in config.get_hosts().iter().enumerate() {
            let host = match host {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                // libpq: a Unix-socket connection matches `localhost` lines.
                tokio_postgres::config::Host::Unix(_) => "localhost".to_string(),
            };
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432)
                .to_string();
            found.push(passfile_password(file, [&host, &port, &dbname, &user])?);
        }
        if found.iter().any(Option::is_some) {
            passfile = Some(file.clone());
        }
        match found.as_slice() {
            [Some(password)] => {
                config.password(password.as_str());
            }
            [_] | [] => {}
            _ => host_passwords = found.into_iter().map(|p| p.map(Secret::new)).collect(),
        }
    }
    config.connect_timeout(options.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("aidock-provision");
    }
    let tls = match sslmode {
        Some(mode) => TlsMode::from_sslmode(&mode, source)?,
        None => options.tls,
    };
    keepalives(&mut config);
    Ok(Endpoint {
        config,
        tls,
        session_attrs,
        host_passwords,
        passfile,
    })
}

/// A URL whose user or password holds a raw `@` (`postgres://u:p@ss@host/db`) would be read with
/// part of the password as the host: refuse it, showing no part of it.
fn check_userinfo(url: &str, source: &str) -> anyhow::Result<()> {
    let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    else {
        return Ok(());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.matches('@').count() > 1 {
        return Err(error::usage(format!(
            "{source} has more than one `@` before the host, so part of the user or password would be taken for the host (the URL is not shown: it holds a password); write each `@` in the user or password as %40 (and `:` as %3A, `/` as %2F)"
        )));
    }
    Ok(())
}

/// The password of the first line of libpq's password file that matches
/// `[host, port, database, user]` (`*` matches anything; `\:` and `\\` are escapes). A missing
/// file is no password.
///
/// # Errors
/// A file readable by group or others, which libpq refuses too (exit 2, with the `chmod`).
pub fn passfile_password(
    file: &std::path::Path,
    wanted: [&str; 4],
) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Err(error::usage(format!(
            "the password file `{}` (PGPASSFILE, else ~/.pgpass) is not a plain file; point PGPASSFILE at the file itself, or remove it",
            file.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(error::usage(format!(
            "password file `{}` has group or world access (mode {:o}), so libpq and aidock-provision refuse to use it; run `chmod 0600 {}`",
            file.display(),
            meta.permissions().mode() & 0o777,
            file.display()
        )));
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        error::usage(format!(
            "cannot read password file `{}`: {e}",
            file.display()
        ))
    })?;
    Ok(text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = passfile_fields(line);
            (fields.len() == 5
                && fields[..4]
                    .iter()
                    .zip(wanted)
                    .all(|((field, wildcard), want)| *wildcard || field == want))
            .then(|| fields[4].0.clone())
        }))
}

/// Split a password-file line at unescaped colons, undoing `\:` and `\\`; each field with
/// whether it is the wildcard (a bare `*`: an escaped `\*` is a literal star, as in libpq).
fn passfile_fields(line: &str) -> Vec<(String, bool)> {
    let mut fields = vec![(String::new(), false)];
    let mut escaped_any = false;
    let mut chars = line.chars();
    let close = |fields: &mut Vec<(String, bool)>, escaped: bool| {
        let last = fields.last_mut().expect("one field");
        last.1 = last.0 == "*" && !escaped;
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").0.push(next);
                    escaped_any = true;
                }
            }
            ':' if fields.len() < 5 => {
                close(&mut fields, escaped_any);
                escaped_any = false;
                fields.push((String::new(), false));
            }
            c => fields.last_mut().expect("one field").0.push(c),
        }
    }
    close(&mut fields, escaped_any);
    fields
}

/// The `sslmode` a URL or key=value string asks for, if any.
#[must_use]
pub fn url_sslmode(url: &str) -> Option<String> {
    take_sslmode(url).1
}

/// Split `sslmode=...` out of a URL or key=value string: tokio-postgres rejects `verify-full`.
fn take_sslmode(url: &str) -> (String, Option<String>) {
    take_param(url, "sslmode")
}

/// Take parameter `name` out of a URL or key=value string: the rest, and its value.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let (head, params, separator) =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            match url.split_once('?') {
                Some((base, query)) => (Some(base), query, "&"),
                None => return (url.to_string(), None),
            }
        } else {
            (None, url, " ")
        };
    let mut mode = None;
    let kept: Vec<&str> = params
        .split(separator)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| match pair.split_once('=') {
            Some((key, v)) if key == name => {
                mode = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    let rest = kept.join(separator);
    let url = match head {
        Some(base) if rest.is_empty() => base.to_string(),
        Some(base) => format!("{base}?{rest}"),
        None => rest,
    };
    (url, mode)
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::Host;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ConnectOptions {
        ConnectOptions {
            libpq_env: pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..ConnectOptions::default()
        }
    }

    fn host(e: &Endpoint) -> String {
        match e.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn libpq_environment_fills_only_what_the_url_leaves_out() {
        let all = env(&[
            ("PGHOST", "db.internal"),
            ("PGPORT", "6543"),
            ("PGUSER", "admin"),
            ("PGPASSWORD", "from-env"),
            ("PGDATABASE", "ops"),
        ]);
        let e = resolve("postgresql:///", "test", &all).expect("resolves");
        assert_eq!(host(&e), "db.internal");
        assert_eq!(e.config.get_ports(), [6543]);
        assert_eq!(e.config.get_user(), Some("admin"));
        assert_eq!(e.config.get_password(), Some(&b"from-env"[..]));
        assert_eq!(e.config.get_dbname(), Some("ops"));

        let e = resolve("postgresql://u:p@h:5433/d", "test", &all).expect("resolves");
        assert_eq!(host(&e), "h");
        assert_eq!(e.config.get_ports(), [5433]);
        assert_eq!(e.config.get_user(), Some("u"));
        assert_eq!(e.config.get_password(), Some(&b"p"[..]));
        assert_eq!(e.config.get_dbname(), Some("d"));
    }

    #[test]
    fn libpq_defaults_without_environment() {
        let e = resolve("postgresql:///x", "test", &env(&[])).expect("resolves");
        assert_eq!(host(&e), "localhost");
        assert_eq!(e.config.get_user(), Some("postgres"));
        assert_eq!(e.config.get_password(), None);
        assert_eq!(e.config.get_application_name(), Some("aidock-provision"));
    }

    #[test]
    fn bad_ports_urls_and_sslmodes_are_usage_errors() {
        let err =
            resolve("postgresql:///x", "test", &env(&[("PGPORT", "high")])).expect_err("port");
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("PGPORT `high`"));
        let err =
            resolve("postgresql://h:notaport/x", "server.admin_url", &env(&[])).expect_err("url");
        assert!(err.to_string().contains("server.admin_url"), "{err}");
        let err =
            resolve("postgresql://h/x?sslmode=bogus", "database.url", &env(&[])).expect_err("mode");
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn a_raw_at_sign_in_the_password_is_refused_without_showing_it() {
        let err = resolve(
            "postgresql://postgres:Bad@Mk3@127.0.0.1:5432/postgres",
            "server.admin_url",
            &env(&[]),
        )
        .expect_err("two @");
        assert_eq!(crate::error::exit_code(&err), 2);
        let text = format!("{err:#}");
        assert!(text.contains("%40"), "{text}");
        assert!(!text.contains("Bad") && !text.contains("Mk3"), "{text}");
        let e = resolve(
            "postgresql://postgres:Bad%40Mk3@127.0.0.1:5432/postgres",
            "t",
            &env(&[]),
        )
        .expect("encoded");
        assert_eq!(e.config.get_password(), Some(&b"Bad@Mk3"[..]));
    }

    #[test]
    fn sslmode_in_the_url_wins_over_the_option() {
        let options = ConnectOptions {
            tls: TlsMode::Require,
            ..ConnectOptions::default()
        };
        let e = resolve("postgresql://h/x?sslmode=disable", "t", &options).expect("resolves");
        assert_eq!(e.tls, TlsMode::Disable);
        let e = resolve("host=h sslmode=verify-ca user=u", "t", &options).expect("resolves");
        assert_eq!(e.tls, TlsMode::VerifyFull);
        let e = resolve("postgresql://h/x", "t", &options).expect("resolves");
        assert_eq!(e.tls, TlsMode::Require);
    }

    #[test]
    fn sslmode_is_taken_out_of_urls() {
        let (url, mode) = take_sslmode("postgres://u@h/db?sslmode=verify-full&application_name=x");
        assert_eq!(url, "postgres://u@h/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        let (url, mode) = take_sslmode("host=h sslmode=require user=u");
        assert_eq!(url, "host=h user=u");
        assert_eq!(mode.as_deref(), Some("require"));
        let (url, mode) = take_sslmode("postgres://u@h/db?sslmode=disable");
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(mode.as_deref(), Some("disable"));
    }

    fn passfile(text: &str, mode: u32) -> tempfile_path::Path {
        tempfile_path::write(text, mode)
    }

    /// A private temporary file for one test (removed when dropped).
    mod tempfile_path {
        use std::os::unix::fs::PermissionsExt as _;

        pub struct Path(pub std::path::PathBuf);

        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }

        pub fn write(text: &str, mode: u32) -> Path {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "aidock-pgpass-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            Path(path)
        }
    }

    #[test]
    fn the_password_file_follows_libpq() {
        let file = passfile(
            "# comment\nother:5432:*:*:no\ndb.internal:6543:ops:admin:first\n*:*:*:admin:wild\\:card\n",
            0o600,
        );
        let get = |w: [&str; 4]| passfile_password(&file.0, w).expect("readable");
        assert_eq!(
            get(["db.internal", "6543", "ops", "admin"]).as_deref(),
            Some("first")
        );
        assert_eq!(
            get(["db.internal", "5432", "ops", "admin"]).as_deref(),
            Some("wild:card")
        );
        assert_eq!(get(["db.internal", "5432", "ops", "bob"]), None);
        // An escaped star is a literal star, not a wildcard.
        let literal = passfile("h:5432:\\*:u:star\n", 0o600);
        let star = |db: &str| passfile_password(&literal.0, ["h", "5432", db, "u"]).expect("ok");
        assert_eq!(star("*").as_deref(), Some("star"));
        assert_eq!(star("other"), None);
        // Several hosts: each gets only its own line's password.
        let two = passfile("127.0.0.2:6001:*:u:for-a\n", 0o600);
        let options = ConnectOptions {
            passfile: Some(two.0.clone()),
            ..ConnectOptions::default()
        };
        let e = resolve(
            "postgresql://u@127.0.0.2:6001,127.0.0.1:6002/db",
            "t",
            &options,
        )
        .expect("resolves");
        assert_eq!(e.config.get_password(), None, "no shared password");
        assert_eq!(
            e.host_passwords
                .iter()
                .map(|p| p.as_ref().map(|s| s.expose().to_string()))
                .collect::<Vec<_>>(),
            [Some("for-a".to_string()), None]
        );
        // Through resolve: only when neither the URL nor PGPASSWORD has one.
        let options = ConnectOptions {
            passfile: Some(file.0.clone()),
            ..ConnectOptions::default()
        };
        let e =
            resolve("postgresql://admin@db.internal:6543/ops", "t", &options).expect("resolves");
        assert_eq!(e.config.get_password(), Some(&b"first"[..]));
        let e = resolve(
            "postgresql://admin:given@db.internal:6543/ops",
            "t",
            &options,
        )
        .expect("resolves");
        assert_eq!(e.config.get_password(), Some(&b"given"[..]));
        let open = passfile("*:*:*:*:x\n", 0o644);
        let err = passfile_password(&open.0, ["h", "5432", "d", "u"]).expect_err("too open");
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("chmod 0600"), "{err}");
        assert_eq!(
            passfile_password(
                std::path::Path::new("/nonexistent/pgpass"),
                ["h", "1", "d", "u"]
            )
            .expect("missing is fine"),
            None
        );
    }

    #[test]
    fn every_target_session_attrs_libpq_knows_is_taken_and_others_are_named() {
        for (value, attrs) in [
            ("any", SessionAttrs::Any),
            ("read-write", SessionAttrs::ReadWrite),
            ("read-only", SessionAttrs::ReadOnly),
            ("primary", SessionAttrs::Primary),
            ("standby", SessionAttrs::Standby),
            ("prefer-standby", SessionAttrs::PreferStandby),
        ] {
            let url = format!("postgresql://u@h1:5432,h2:5432/db?target_session_attrs={value}");
            let e = resolve(&url, "server.admin_url", &env(&[])).expect(value);
            assert_eq!(e.session_attrs, attrs, "{value}");
        }
        let Err(err) = resolve(
            "postgresql://u@h/db?target_session_attrs=leader",
            "server.admin_url",
            &env(&[]),
        ) else {
            panic!("refused");
        };
        let text = format!("{err:#}");
        assert!(
            text.contains("target_session_attrs `leader`") && text.contains("prefer-standby"),
            "{text}"
        );
        assert!(SessionAttrs::PreferStandby.accepts(false, false, true));
        assert!(!SessionAttrs::PreferStandby.accepts(false, false, false));
        assert!(SessionAttrs::Primary.accepts(false, true, false));
        assert!(!SessionAttrs::ReadWrite.accepts(false, true, false));
    }
}
