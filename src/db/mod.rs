//! Connecting (a resolved [`endpoint`] plus [`tls`], timeouts, error classification),
//! identifier and literal quoting, SQLSTATE helpers, and [`advisory`] lock keys. Knows nothing of
//! settings: callers pass [`ConnectOptions`].

pub mod advisory;
pub mod endpoint;
pub mod ha;
pub mod ident;
pub mod pooler;
pub mod sql;
pub mod tls;
pub mod trust;

pub use endpoint::{ConnectOptions, Secret, SessionAttrs, TlsMode, url_sslmode};

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{self, connect_error};

pub use crate::error::{ConnectError, Reason, connect_reason};

/// Where and how to connect: a parsed URL plus the TLS policy.
#[derive(Clone)]
pub struct Target {
    pub(crate) config: Config,
    tls: TlsMode,
    /// The rustls connector for every mode but `disable` (built once per target).
    connector: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// Which setting this came from, for messages ("server.admin_url", "the local cluster").
    source: String,
    /// How long to keep retrying a server that is down, starting or full (`--wait`).
    pub(crate) wait: Duration,
    /// When `--wait` ends for the whole command (else `wait` from each connection's start).
    deadline: Option<std::time::Instant>,
    /// Which listed host to settle on (`target_session_attrs`, checked per host).
    session_attrs: SessionAttrs,
    /// Each host's own password from the password file (several hosts, none in the URL).
    host_passwords: Vec<Option<Secret>>,
    /// The password file the password came from, for authentication errors.
    passfile: Option<std::path::PathBuf>,
    /// Where `--wait` says it waits.
    notify: Option<fn(&str)>,
    /// The admin's sessions: `search_path` pinned to `pg_catalog, pg_temp` at connect time
    /// ([`trust`]).
    pinned: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.describe())
    }
}

impl Target {
    /// Parse a `postgres://` URL or `key=value` string, completed from libpq's environment
    /// ([`endpoint::resolve`]), with a TLS connector for every mode but `disable`.
    ///
    /// # Errors
    /// A usage error naming `source` (the password is never shown); an unreadable root cert.
    pub fn parse(url: &str, source: &str, options: &ConnectOptions) -> anyhow::Result<Target> {
        let endpoint::Endpoint {
            config,
            tls,
            session_attrs,
            host_passwords,
            passfile,
        } = endpoint::resolve(url, source, options)?;
        let connector = match tls {
            TlsMode::Disable => None,
            mode => Some(tls::connector(mode, options.root_cert.as_deref())?),
        };
        Ok(Target {
            config,
            tls,
            connector,
            source: source.to_string(),
            wait: options.wait,
            deadline: options.deadline,
            session_attrs,
            host_passwords,
            passfile,
            notify: options.notify,
            pinned: false,
        })
    }

    /// The admin's endpoint: every session it opens has `search_path = pg_catalog, pg_temp` from
    /// its first statement on (the startup packet's `options`; where a pooler refuses that
    /// parameter, a `SET` right after connecting), so no object another role made in a
    /// database's schemas is ever found by an unqualified name in the admin's SQL (see
    /// [`trust`]). [`Target::as_role`] drops the pin: the app's sessions keep its own path.
    #[must_use]
    pub fn pinned(mut self) -> Target {
        self.pinned = true;
        self
    }

    /// The same endpoint without the pin: only for a database no other role can write (a
    /// template the admin builds, owned by it and closed to PUBLIC), where the project's own
    /// migrations and seeds run as the admin with the usual `search_path`.
    #[must_use]
    pub fn unpinned(mut self) -> Target {
        self.pinned = false;
        self
    }

    /// Whether this target's sessions pin `search_path` ([`Target::pinned`]).
    #[must_use]
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The same server as another role on another database (e.g. the app role on its database).
    #[must_use]
    pub fn as_role(&self, user: &str, password: &Secret, dbname: &str) -> Target {
        let mut config = self.config.clone();
        config.user(user).password(password.expose()).dbname(dbname);
        Target {
            config,
            tls: self.tls,
            connector: self.connector.clone(),
            source: format!("role `{user}` on {}", self.source),
            wait: self.wait,
            deadline: self.deadline,
            session_attrs: self.session_attrs,
            host_passwords: Vec::new(),
            passfile: None,
            notify: self.notify,
            pinned: false,
        }
    }

    /// The same role on another database.
    #[must_use]
    pub fn with_dbname(&self, dbname: &str) -> Target {
        let mut config = self.config.clone();
        config.dbname(dbname);
        Target {
            config,
            tls: self.tls,
            connector: self.connector.clone(),
            source: self.source.clone(),
            wait: self.wait,
            deadline: self.deadline,
            session_attrs: self.session_attrs,
            host_passwords: self.host_passwords.clone(),
            passfile: self.passfile.clone(),
            notify: self.notify,
            pinned: self.pinned,
        }
    }

    /// The same connection under another `application_name` (what `pg_stat_activity` shows).
    #[must_use]
    pub fn named(&self, application_name: &str) -> Target {
        let mut named = self.clone();
        named.config.application_name(application_name);
        named
    }

    /// The role this target logs in as.
    #[must_use]
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("postgres")
    }

    /// The database this target connects to (defaults to the user name, as libpq does).
    #[must_use]
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or_else(|| self.user())
    }

    /// How many hosts the URL lists (several: a high-availability setup, one of them primary).
    #[must_use]
    pub fn host_count(&self) -> usize {
        self.config.get_hosts().len()
    }

    /// A URL for people: the password is masked; every host and `target_session_attrs` are
    /// kept, so what is printed reaches the same server (the primary of an HA group).
    #[must_use]
    pub fn describe(&self) -> String {
        let password = if self.config.get_password().is_some() || !self.host_passwords.is_empty() {
            ":***"
        } else {
            ""
        };
        let ports = self.config.get_ports();
        let port = |i: usize| {
            ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432)
        };
        let mut tcp = Vec::new();
        let mut params = Vec::new();
        for (i, host) in self.config.get_hosts().iter().enumerate() {
            match host {
                Host::Tcp(h) if h.contains(':') => tcp.push(format!("[{h}]:{}", port(i))),
                Host::Tcp(h) => tcp.push(format!("{h}:{}", port(i))),
                Host::Unix(p) => {
                    params.push(format!("host={}", p.display()));
                    params.push(format!("port={}", port(i)));
                }
            }
        }
        if let Some(attrs) = self.session_attrs.as_param() {
            params.push(format!("target_session_attrs={attrs}"));
        }
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        format!(
            "postgresql://{}{password}@{}/{}{query}",
            self.user(),
            tcp.join(","),
            self.dbname()
        )
    }

    /// Open a connection; its driver task runs on the current tokio runtime.
    ///
    /// # Errors
    /// Unreachable (exit 4) for network failures and timeouts; a clear message for a wrong
    /// password, a missing database or role, and other refusals by the server.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Ok(self.connect_to_host().await?.0)
    }

    /// [`Target::connect`], and which listed host (its index) took the connection.
    ///
    /// # Errors
    /// As [`Target::connect`].
    pub async fn connect_to_host(&self) -> anyhow::Result<(Client, usize)> {
        // Under --wait, a server that is down, starting up or full is retried with backoff, until
        // one deadline for the whole command (every connection and re-run shares it).
        let now = std::time::Instant::now();
        let deadline = self.deadline.unwrap_or(now + self.wait);
        let began = deadline.checked_sub(self.wait).unwrap_or(now);
        let mut pause = Duration::from_millis(100);
        let mut said = None::<std::time::Instant>;
        loop {
            match self.connect_once().await {
                Err(e)
                    if matches!(
                        connect_reason(&e),
                        Some(Reason::Unreachable | Reason::NoSlot | Reason::StartingUp)
                    ) && std::time::Instant::now() < deadline =>
                {
                    // Said at once, then every 5 s: a wait that says nothing looks like a hang.
                    if let Some(notify) = self.notify
                        && said.is_none_or(|at| at.elapsed() >= Duration::from_secs(5))
                    {
                        let why = e.to_string();
                        let why = why.split(';').next().unwrap_or_default();
                        notify(&format!(
                            "waiting for {} ({:.1}s of {:?} so far): {why}",
                            self.describe(),
                            began.elapsed().as_secs_f64(),
                            self.wait
                        ));
                        said = Some(std::time::Instant::now());
                    }
                    // The last pause ends at the deadline, and one more attempt is made there.
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    tokio::time::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) if !self.wait.is_zero() => {
                    return Err(e.context(format!(
                        "gave up after waiting {:.1}s (--wait {:?})",
                        began.elapsed().as_secs_f64(),
                        self.wait
                    )));
                }
                result => return result,
            }
        }
    }

    /// The time each host gets to answer (connection, TLS, authentication, the session check).
    pub(crate) fn host_timeout(&self) -> Duration {
        self.config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(5))
    }

    /// One round over the listed hosts, as libpq makes it: each host in turn, each bounded by
    /// `connect_timeout` whole (the driver bounds only the socket, so a frozen server would hold
    /// the round forever), settling on the first that `target_session_attrs` accepts.
    async fn connect_once(&self) -> anyhow::Result<(Client, usize)> {
        let timeout = self.host_timeout();
        let hosts = self.config.get_hosts().len().max(1);
        let passes: &[bool] = if self.session_attrs == SessionAttrs::PreferStandby {
            &[false, true]
        } else {
            &[false]
        };
        let mut failures: Vec<(usize, anyhow::Error)> = Vec::new();
        let mut wrong_kind: Vec<(usize, &'static str)> = Vec::new();
        for &second_pass in passes {
            for i in 0..hosts {
                let config = if hosts == 1 && self.host_passwords.is_empty() {
                    self.config.clone()
                } else {
                    self.one_host(i)
                };
                let attempt = async {
                    let client = self.connect_config(config).await?;
                    let facts = if self.session_attrs == SessionAttrs::Any {
                        None
                    } else {
                        Some(session_facts(&client).await?)
                    };
                    Ok::<_, tokio_postgres::Error>((client, facts))
                };
                match tokio::time::timeout(timeout, attempt).await {
                    Ok(Ok((client, None))) => return Ok((client, i)),
                    Ok(Ok((client, Some((in_recovery, read_only))))) => {
                        if self.session_attrs.accepts(in_recovery, read_only, second_pass) {
                            return Ok((client, i));
                        }
                        wrong_kind.push((
                            i,
                            if in_recovery {
                                "a standby (in recovery)"
                            } else if read_only {
                                "read-only"
                            } else {
                                "a primary"
                            },
                        ));
                    }
                    Ok(Err(e)) => failures.push((i, self.classify(&e))),
                    Err(_) => failures.push((
                        i,
                        connect_error(
                            Reason::Unreachable,
                            format!(
                                "{} did not answer within {timeout:?} (connect_timeout; a frozen or unreachable server)",
                                self.host_label(i)
                            ),
                        ),
                    )),
                }
            }
        }
        Err(self.round_failed(failures, &wrong_kind, timeout))
    }

    /// Why a round over the hosts found none: with one host, its own error; with several, each.
    fn round_failed(
        &self,
        mut failures: Vec<(usize, anyhow::Error)>,
        wrong_kind: &[(usize, &'static str)],
        timeout: Duration,
    ) -> anyhow::Error {
        if wrong_kind.is_empty() && failures.len() == 1 {
            let (_, e) = failures.remove(0);
            if self.config.get_hosts().len() <= 1 && e.to_string().contains("did not answer within")
            {
                return connect_error(
                    Reason::Unreachable,
                    format!(
                        "connecting to {} ({}) timed out after {timeout:?}; check that the server is running and reachable (host, port, firewall)",
                        self.describe(),
                        self.source
                    ),
                );
            }
            return e;
        }
        // The reason that decides the exit code: a host that refused us for a reason of its own
        // (a wrong password, no such database) outranks hosts that were down.
        let reason = failures
            .iter()
            .filter_map(|(_, e)| connect_reason(e))
            .find(|r| !matches!(r, Reason::Unreachable | Reason::NoSlot | Reason::StartingUp))
            .unwrap_or(Reason::Unreachable);
        let mut lines: Vec<String> = wrong_kind
            .iter()
            .map(|(i, what)| format!("{} is {what}", self.host_label(*i)))
            .collect();
        lines.extend(failures.iter().map(|(_, e)| format!("{e}")));
        let wanted = self.session_attrs.as_param().unwrap_or("any");
        let fix = if wrong_kind.is_empty() {
            "check that the servers are running and reachable".to_string()
        } else {
            format!(
                "none is what target_session_attrs={wanted} asks for; during a failover the new primary may take a moment (--wait waits for it), else point the URL at the primary"
            )
        };
        connect_error(
            reason,
            format!(
                "no host of {} ({}) took the connection: {}; {fix}",
                self.describe(),
                self.source,
                lines.join("; ")
            ),
        )
    }

    /// `host:port` of listed host `i`, for messages.
    #[must_use]
    pub fn host_label(&self, i: usize) -> String {
        match self.endpoint(i) {
            Some((host, port)) if host.contains(':') => format!("[{host}]:{port}"),
            Some((host, port)) => format!("{host}:{port}"),
            None => format!("host {i}"),
        }
    }

    /// Host and port of listed host `i` (a socket directory for a Unix socket).
    #[must_use]
    pub fn endpoint(&self, i: usize) -> Option<(String, u16)> {
        let host = match self.config.get_hosts().get(i)? {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        };
        let ports = self.config.get_ports();
        let port = ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432);
        Some((host, port))
    }

    /// This target on the one listed host at `host:port` (the same node another session of this
    /// command is on), `None` when it does not list it.
    #[must_use]
    pub fn only(&self, host: &str, port: u16) -> Option<Target> {
        let i = (0..self.config.get_hosts().len()).find(|&i| {
            self.endpoint(i)
                .is_some_and(|(h, p)| h == host && p == port)
        })?;
        let mut one = self.clone();
        one.config = self.one_host(i);
        one.host_passwords = Vec::new();
        one.session_attrs = SessionAttrs::Any;
        Some(one)
    }

    /// Open a connection without classifying errors (callers that branch on the SQLSTATE).
    ///
    /// # Errors
    /// The driver's error.
    pub async fn connect_raw(&self) -> Result<Client, tokio_postgres::Error> {
        let hosts = self.config.get_hosts().len();
        if self.host_passwords.is_empty() && hosts <= 1 {
            return self.connect_config(self.config.clone()).await;
        }
        let mut last = None;
        for i in 0..hosts {
            match tokio::time::timeout(self.host_timeout(), self.connect_config(self.one_host(i)))
                .await
            {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(e)) => last = Some(e),
                Err(_) => {}
            }
        }
        match last {
            Some(e) => Err(e),
            None => self.connect_config(self.one_host(0)).await,
        }
    }

    /// This target's settings for host `i` alone, with its password: from the password file
    /// when each host has its own line there, else the target's.
    fn one_host(&self, i: usize) -> Config {
        let password = if self.host_passwords.is_empty() {
            HostPassword::Target
        } else {
            match &self.host_passwords[i] {
                Some(p) => HostPassword::Own(p),
                None => HostPassword::NoLine,
            }
        };
        let from = &self.config;
        let mut config = Config::new();
        match &from.get_hosts()[i] {
            Host::Tcp(h) => config.host(h),
            Host::Unix(p) => config.host_path(p),
        };
        let ports = from.get_ports();
        if let Some(port) = ports.get(i).or_else(|| ports.first()) {
            config.port(*port);
        }
        if let Some(user) = from.get_user() {
            config.user(user);
        }
        if let Some(dbname) = from.get_dbname() {
            config.dbname(dbname);
        }
        if let Some(options) = from.get_options() {
            config.options(options);
        }
        if let Some(name) = from.get_application_name() {
            config.application_name(name);
        }
        if let Some(timeout) = from.get_connect_timeout() {
            config.connect_timeout(*timeout);
        }
        endpoint::keepalives(&mut config);
        match password {
            HostPassword::Own(password) => {
                config.password(password.expose());
            }
            HostPassword::NoLine => {}
            HostPassword::Target => {
                if let Some(password) = from.get_password() {
                    config.password(password);
                }
            }
        }
        config
    }

    pub(crate) async fn connect_config(
        &self,
        config: Config,
    ) -> Result<Client, tokio_postgres::Error> {
        if !self.pinned {
            return self.connect_tls(config).await;
        }
        let mut with_path = config.clone();
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {}", trust::PIN_OPTION),
            _ => trust::PIN_OPTION.to_string(),
        };
        with_path.options(&options);
        match self.connect_tls(with_path).await {
            Err(e) if trust::startup_option_refused(&e) => {
                // A pooler that passes no startup options (PgBouncer): the same setting as the
                // session's first statement. Reads inside an app's database set it again in
                // their own transaction (`trust::CatalogSession`), where a transaction pooler
                // may have moved the session.
                let client = self.connect_tls(config).await?;
                client.batch_execute(trust::PIN_STATEMENT).await?;
                Ok(client)
            }
            result => result,
        }
    }

    async fn connect_tls(&self, mut config: Config) -> Result<Client, tokio_postgres::Error> {
        if let Some(connector) = &self.connector {
            config.ssl_mode(if self.tls == TlsMode::Prefer {
                SslMode::Prefer
            } else {
                SslMode::Require
            });
            spawn_connection(&config, connector.clone()).await
        } else {
            config.ssl_mode(SslMode::Disable);
            spawn_connection(&config, NoTls).await
        }
    }

    fn classify(&self, e: &tokio_postgres::Error) -> anyhow::Error {
        let who = format!("{} ({})", self.describe(), self.source);
        let from_file = self
            .passfile
            .as_ref()
            .map(|f| {
                format!(
                    " (the password came from the password file `{}`)",
                    f.display()
                )
            })
            .unwrap_or_default();
        let Some(db) = e.as_db_error() else {
            let chain = error_chain(e);
            if chain.contains("password missing") {
                return connect_error(
                    Reason::WrongPassword,
                    format!(
                        "{who} asks role `{}` for a password and none was given; put it in the URL, PGPASSWORD, or a line of the password file (PGPASSFILE, else ~/.pgpass) for that host, port, database and role",
                        self.user()
                    ),
                );
            }
            if chain.contains("certificate") || chain.contains("CertificateRequired") {
                return connect_error(
                    Reason::Tls,
                    format!(
                        "TLS verification of {who} failed: {chain}; with tls.mode = verify-full the server's certificate must be signed by a CA in tls.root_cert (or the system store) and be issued for the host name you connect to"
                    ),
                );
            }
            if chain.contains("does not support TLS") {
                return connect_error(
                    Reason::Tls,
                    format!(
                        "{who} does not offer TLS, but tls.mode is `{}`; enable ssl on the server (ssl = on, with a certificate); outside the production profile, which always needs TLS, tls.mode may be lowered instead",
                        self.tls.as_str()
                    ),
                );
            }
            return connect_error(
                Reason::Unreachable,
                format!(
                    "cannot connect to {who}: {}; check that the server is running, and that host and port are right and reachable",
                    error_chain(e)
                ),
            );
        };
        let code = db.code();
        let (reason, message) = if *code == SqlState::INVALID_PASSWORD {
            (
                Reason::WrongPassword,
                format!(
                    "password authentication failed for role `{}` at {who}{from_file}; check the password in the URL or settings",
                    self.user()
                ),
            )
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            (
                Reason::Refused,
                format!(
                    "the server refused role `{}` at {who}: {}; check that the role exists and that pg_hba.conf allows it",
                    self.user(),
                    db.message()
                ),
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            (
                Reason::NoDatabase,
                format!(
                    "database `{}` does not exist at {who}; run `aidock-provision init` to create it",
                    self.dbname()
                ),
            )
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            // The server is up but has no slot for us: as good as unreachable for now (exit 4).
            (
                Reason::NoSlot,
                format!(
                    "{who} has no free connection slot: {} (SQLSTATE 53300); retry when fewer clients are connected, or raise max_connections or the role's connection limit",
                    db.message()
                ),
            )
        } else if *code == SqlState::CANNOT_CONNECT_NOW {
            (
                Reason::StartingUp,
                format!(
                    "{who} is starting up or shutting down: {} (SQLSTATE 57P03); retry in a moment",
                    db.message()
                ),
            )
        } else {
            (
                Reason::Other,
                format!("connecting to {who}: {} ({})", db.message(), code.code()),
            )
        };
        connect_error(reason, message)
    }
}

/// Where one host's password comes from.
enum HostPassword<'a> {
    /// The target's own (the URL's, `PGPASSWORD`, or the file's one matching line).
    Target,
    /// This host's own line of the password file.
    Own(&'a Secret),
    /// The password file has no line for this host: none (as libpq).
    NoLine,
}

/// Whether a session can write, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writable {
    Yes,
    /// A streaming-replication standby (`pg_is_in_recovery()`).
    Standby,
    /// The session's transactions are read-only by setting (the role's or the database's
    /// `default_transaction_read_only`): the role, for the message.
    ReadOnly(String),
}

/// Whether this session can write; a simple query, so it also works behind PgBouncer in
/// transaction pooling mode.
///
/// # Errors
/// The query failing.
pub async fn writable(client: &impl tokio_postgres::GenericClient) -> anyhow::Result<Writable> {
    let messages = client
        .simple_query(
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only'), current_user",
        )
        .await
        .map_err(|e| anyhow::anyhow!(describe_error(&e)))
        .context("asking the server whether this session can write")?;
    let Some(row) = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    }) else {
        return Ok(Writable::Yes);
    };
    Ok(if row.get(0) == Some("t") {
        Writable::Standby
    } else if row.get(1) == Some("on") {
        Writable::ReadOnly(row.get(2).unwrap_or_default().to_string())
    } else {
        Writable::Yes
    })
}

/// Whether the server is a streaming-replication standby.
///
/// # Errors
/// The query failing.
pub async fn is_standby(client: &impl tokio_postgres::GenericClient) -> anyhow::Result<bool> {
    Ok(writable(client).await? == Writable::Standby)
}

/// The refusal for writing through a standby: exit 4, naming the server and the fix.
#[must_use]
pub fn standby_error(target: &Target) -> anyhow::Error {
    error::unreachable(format!(
        "{} is a read-only standby (pg_is_in_recovery() is true), so nothing can be written there; point the URL at the primary, or list every host with target_session_attrs=read-write (postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write)",
        target.describe()
    ))
}

/// The refusal for a role whose transactions are read-only by setting: exit 2, with the fix.
#[must_use]
pub fn read_only_error(role: &str) -> anyhow::Error {
    error::usage(format!(
        "role `{role}` works in read-only transactions (default_transaction_read_only = on, set for the role or the database), so nothing can be written; as an admin run `ALTER ROLE {role} RESET default_transaction_read_only` (or for the database: `ALTER DATABASE ... RESET default_transaction_read_only`), or use a role that may write",
        role = quote_ident(role)
    ))
}

/// Refuse to write through a standby (every write would fail with SQLSTATE 25006 "read-only
/// transaction", exit 4 naming the server) or as a role that is read-only by setting (exit 2).
///
/// # Errors
/// The server is in recovery, the session is read-only, or the check itself failed.
pub async fn require_primary(client: &Client, target: &Target) -> anyhow::Result<()> {
    match writable(client).await? {
        Writable::Yes => Ok(()),
        Writable::Standby => Err(standby_error(target)),
        Writable::ReadOnly(role) => Err(read_only_error(&role)),
    }
}

/// Whether a fresh session is in recovery and read-only (what `target_session_attrs` decides
/// on); one simple query, so it works behind a pooler.
async fn session_facts(client: &Client) -> Result<(bool, bool), tokio_postgres::Error> {
    let messages = client
        .simple_query("SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('transaction_read_only')")
        .await?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0) == Some("t"), r.get(1) == Some("on")))
            }
            _ => None,
        })
        .unwrap_or((false, false)))
}

/// Connect and drive the connection on its own task.
async fn spawn_connection<T>(config: &Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    let (client, conn) = config.connect(tls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Twelve random lower-case letters and digits: unique names for scratch databases, staging
/// tables and socket directories.
#[must_use]
pub fn random_tag() -> String {
    use rand::RngExt as _;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(12)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect()
}

/// Quote an identifier for SQL (`"name"`, doubling embedded quotes).
#[must_use]
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a string literal for SQL text that is printed, never for values sent to the server
/// (those are bound parameters).
#[must_use]
pub fn quote_literal(value: &str) -> String {
    if value.contains('\\') {
        format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// Run `CREATE DATABASE ... TEMPLATE ...` (`sql`), waiting a moment (up to 2 s) while the
/// template is still "being accessed by other users" (55006): sessions of a build or a read
/// that are ending.
///
/// # Errors
/// The statement's own error, or 55006 after the wait.
pub async fn create_from_template(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    let mut tries = 0;
    loop {
        match client.batch_execute(sql).await {
            Err(e) if sqlstate(&e) == Some(&SqlState::OBJECT_IN_USE) && tries < 40 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            done => return done,
        }
    }
}

/// The SQLSTATE of a server error, if it is one.
#[must_use]
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.as_db_error().map(tokio_postgres::error::DbError::code)
}

/// Whether an error means "someone else created it first": duplicate object or database, or the
/// catalog's unique index noticing a concurrent insert.
#[must_use]
pub fn is_concurrent_create(e: &tokio_postgres::Error) -> bool {
    sqlstate(e).is_some_and(|c| {
        *c == SqlState::DUPLICATE_OBJECT
            || *c == SqlState::DUPLICATE_DATABASE
            || *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Describe a server error for people: message, detail, hint, SQLSTATE.
#[must_use]
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                let _ = write!(text, "\ndetail: {detail}");
            }
            if let Some(hint) = db.hint() {
                let _ = write!(text, "\nhint: {hint}");
            }
            text
        }
        None => error_chain(e),
    }
}

/// Run a future to completion on a new runtime; the CLI is synchronous at the top.
///
/// # Errors
/// When the runtime cannot be built, or the future fails.
pub fn block_on<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
    }
}
