//! The project-local PostgreSQL cluster: find the system's server binaries, `initdb`, start and stop
//! (as the `postgres` system user when we are root), used by the CLI and by the test harness.
//!
//! Layout under the data directory: `pgdata/` (the cluster), `admin.password` (0600, the generated
//! superuser password), `server.log`, `.lock` (serialises concurrent starts), and a socket directory
//! (`sock/`, or a short directory under /tmp when that path would be too long for a Unix socket).

use std::ffi::{CStr, CString};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};
use rand::RngExt as _;

const SUPERUSER: &str = "postgres";
const MARKER: &str = "# aidock-provision settings";
/// Unix socket paths are limited to 107 bytes (`sun_path`); leave room for `.s.PGSQL.NNNNN`.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// How a cluster is created; the CLI uses the defaults, the test harness tunes it.
#[derive(Debug, Clone)]
pub struct Options {
    /// Listen on 127.0.0.1 as well as the Unix socket.
    pub tcp: bool,
    /// Durable writes; tests turn this off for speed.
    pub fsync: bool,
    /// Extra `postgresql.conf` lines, e.g. `log_statement = 'all'`.
    pub extra_conf: Vec<String>,
    /// The server binaries to use instead of the system's newest (the test suite's version matrix).
    pub bindir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tcp: true,
            fsync: true,
            extra_conf: Vec::new(),
            bindir: None,
        }
    }
}

/// Whether the cluster exists and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No cluster in the data directory.
    Absent,
    Stopped,
    Running,
}

/// A project-local cluster rooted at a data directory.
#[derive(Debug, Clone)]
pub struct LocalPg {
    /// Found on first use: `local status`, `url` and a missing cluster need no binaries.
    bindir: std::sync::OnceLock<PathBuf>,
    root: PathBuf,
    /// The configured data directory when the cluster lives elsewhere ([`RELOCATED_PARENT`]).
    relocated_from: Option<PathBuf>,
    port: u16,
    run_as: Option<SystemUser>,
    /// As root without a `postgres` system user: why nothing can be started (said on first use).
    run_as_missing: Option<String>,
    options: Options,
}

#[derive(Debug, Clone)]
struct SystemUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl LocalPg {
    /// A handle on the cluster at `data_dir` (made absolute); nothing is created yet.
    ///
    /// # Errors
    /// When the data directory cannot be made absolute. Missing server binaries or system user
    /// are reported by the operations that need them, not here.
    pub fn new(data_dir: &Path, port: u16, options: Options) -> anyhow::Result<LocalPg> {
        let root = std::path::absolute(data_dir)
            .with_context(|| format!("resolving data directory `{}`", data_dir.display()))?;
        let (run_as, run_as_missing) = if is_root() {
            match SystemUser::lookup(SUPERUSER) {
                Ok(user) => (Some(user), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            }
        } else {
            (None, None)
        };
        let bindir = std::sync::OnceLock::new();
        if let Some(dir) = &options.bindir {
            let _ = bindir.set(dir.clone());
        }
        // As root, the server runs as `postgres`, which cannot enter a mode-700 home (a
        // container's /root): the cluster then lives in a private per-project directory it can
        // reach, recorded next to the configured one so every later command finds it.
        let recorded = fs::read_to_string(location_record(&root))
            .ok()
            .map(|text| PathBuf::from(text.trim()));
        let relocate = recorded.or_else(|| {
            run_as
                .as_ref()
                .filter(|user| check_reachable(&root, user).is_err())
                .map(|_| relocated(&root))
        });
        let (root, relocated_from) = match relocate {
            Some(elsewhere) => (elsewhere, Some(root)),
            None => (root, None),
        };
        Ok(LocalPg {
            bindir,
            root,
            relocated_from,
            port,
            run_as,
            run_as_missing,
            options,
        })
    }

    /// Fail early, before anything is created, when the server could not be run at all.
    fn require_runnable(&self) -> anyhow::Result<()> {
        if let Some(why) = &self.run_as_missing {
            bail!("{why}");
        }
        self.bindir()?;
        Ok(())
    }

    fn bindir(&self) -> anyhow::Result<&Path> {
        if let Some(dir) = self.bindir.get() {
            return Ok(dir);
        }
        let found = find_bindir()?;
        Ok(self.bindir.get_or_init(|| found))
    }

    /// The data directory (the `local.data_dir` setting, absolute).
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The PostgreSQL data directory inside [`Self::root`].
    #[must_use]
    pub fn pgdata(&self) -> PathBuf {
        self.root.join("pgdata")
    }

    /// The server log file.
    #[must_use]
    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The TCP port.
    #[must_use]
    /// The TCP port: the one the running server listens on (from its pid file), else the
    /// configured one (which the next start applies).
    pub fn port(&self) -> u16 {
        self.running_port().unwrap_or(self.port)
    }

    /// Line 4 of `postmaster.pid` is the port of a running server.
    fn running_port(&self) -> Option<u16> {
        if self.state().ok()? != State::Running {
            return None;
        }
        let text = fs::read_to_string(self.pgdata().join("postmaster.pid")).ok()?;
        text.lines().nth(3)?.trim().parse().ok()
    }

    fn password_file(&self) -> PathBuf {
        self.root.join("admin.password")
    }

    /// The directory holding the server's Unix socket: `sock/` inside the data directory, or,
    /// when that path is too long for a Unix socket, the private directory under /tmp that the
    /// last start recorded in `socket_dir`.
    #[must_use]
    pub fn socket_dir(&self) -> PathBuf {
        let inside = self.root.join("sock");
        if inside.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            return inside;
        }
        fs::read_to_string(self.socket_record())
            .ok()
            .map(|s| PathBuf::from(s.trim()))
            .unwrap_or(inside)
    }

    fn socket_record(&self) -> PathBuf {
        self.root.join("socket_dir")
    }

    /// Make the socket directory ready for a start: private (0700) and owned by the server's
    /// user. Under /tmp (world-writable) its name is random, never predictable, and one that is
    /// found with another owner, a wider mode or as a symlink is refused, never adopted: another
    /// local user could otherwise move the live socket or have us chown a directory of theirs.
    fn prepare_socket_dir(&self) -> anyhow::Result<PathBuf> {
        let owner = self.run_as.as_ref().map_or_else(current_uid, |u| u.uid);
        let inside = self.root.join("sock");
        if inside.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            if !inside.exists() {
                create_private_dir(&inside)?;
                self.give_to_server_user(&inside)?;
            }
            // Inside our own data directory an older, wider mode is ours to tighten.
            let meta = fs::symlink_metadata(&inside)
                .with_context(|| format!("reading `{}`", inside.display()))?;
            if meta.is_dir() && meta.uid() == owner && meta.mode() & 0o077 != 0 {
                fs::set_permissions(&inside, fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("making `{}` private", inside.display()))?;
            }
            check_private_dir(&inside, owner)?;
            return Ok(inside);
        }
        let recorded = self.socket_dir();
        if recorded != inside && fs::symlink_metadata(&recorded).is_ok() {
            check_private_dir(&recorded, owner)?;
            return Ok(recorded);
        }
        // None yet, or /tmp was cleaned: a new random name, created exclusively.
        for _ in 0..16 {
            let dir = PathBuf::from(format!("/tmp/aidock-{}", crate::db::random_tag()));
            match create_private_dir(&dir) {
                Ok(()) => {
                    if let Some(user) = &self.run_as {
                        std::os::unix::fs::lchown(&dir, Some(user.uid), Some(user.gid))
                            .with_context(|| {
                                format!("giving `{}` to the {} user", dir.display(), user.name)
                            })?;
                    }
                    check_private_dir(&dir, owner)?;
                    write_private(
                        &self.socket_record(),
                        dir.to_str().context("socket directory path is not UTF-8")?,
                    )?;
                    return Ok(dir);
                }
                Err(e)
                    if e.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
        }
        bail!("could not create a private socket directory under /tmp (16 names were taken)")
    }

    /// The generated superuser password.
    ///
    /// # Errors
    /// When the cluster was never initialised or the file is unreadable.
    pub fn admin_password(&self) -> anyhow::Result<String> {
        let text = fs::read_to_string(self.password_file()).with_context(|| {
            format!(
                "reading the local cluster's admin password `{}`; run `aidock-provision local start` first",
                self.password_file().display()
            )
        })?;
        Ok(text.trim().to_string())
    }

    /// The admin URL over TCP (what `local url` prints; works with psql).
    ///
    /// # Errors
    /// When the password file cannot be read.
    pub fn admin_url(&self) -> anyhow::Result<String> {
        Ok(format!(
            "postgresql://{SUPERUSER}:{}@127.0.0.1:{}/postgres",
            self.admin_password()?,
            self.port()
        ))
    }

    /// Whether the cluster exists and runs.
    ///
    /// # Errors
    /// Never, today; kept fallible for callers that may need to read more.
    pub fn state(&self) -> anyhow::Result<State> {
        if !self.pgdata().join("PG_VERSION").is_file() {
            return Ok(State::Absent);
        }
        // What `pg_ctl status` checks, without needing the binaries: the postmaster's pid file
        // names a live process.
        let pid = fs::read_to_string(self.pgdata().join("postmaster.pid"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .next()
                    .and_then(|l| l.trim().parse::<i32>().ok())
            })
            .filter(|pid| *pid > 0);
        let running = pid.is_some_and(|pid| {
            // SAFETY: signal 0 only checks that the process exists; nothing is sent.
            let rc = unsafe { libc::kill(pid, 0) };
            rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        });
        Ok(if running {
            State::Running
        } else {
            State::Stopped
        })
    }

    /// Create the cluster if needed and start it if it is not running; returns what it did.
    ///
    /// # Errors
    /// When initdb or the server fails; the message carries the end of the server log.
    pub fn start(&self) -> anyhow::Result<Started> {
        self.require_runnable()?;
        self.prepare_root()?;
        let _lock = DirLock::acquire(&self.root.join(".lock"))?;
        let created = if self.pgdata().join("PG_VERSION").is_file() {
            false
        } else {
            self.initdb()?;
            true
        };
        if self.state()? == State::Running {
            return Ok(if created {
                Started::Created
            } else {
                Started::AlreadyRunning
            });
        }
        // A postmaster.pid left by a crash names a dead process; pg_ctl said it is not running.
        let stale = self.pgdata().join("postmaster.pid");
        if stale.exists() {
            fs::remove_file(&stale)
                .with_context(|| format!("removing stale `{}`", stale.display()))?;
        }
        let socket_dir = self.prepare_socket_dir()?;
        self.write_runtime_conf(&socket_dir)?;
        let out = self
            .pg_command("pg_ctl")
            .arg("start")
            .arg("-w")
            .args(["-t", "60"])
            .arg("-D")
            .arg(self.pgdata())
            .arg("-l")
            .arg(self.log_file())
            .output_named()?;
        if !out.status.success() {
            bail!(
                "starting PostgreSQL in `{}` failed: {}\nlast lines of {}:\n{}",
                self.pgdata().display(),
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_file().display(),
                self.log_tail(15)
            );
        }
        Ok(if created {
            Started::Created
        } else {
            Started::Started
        })
    }

    /// Stop the cluster (fast shutdown); returns whether it was running.
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop(&self) -> anyhow::Result<bool> {
        if self.state()? != State::Running {
            return Ok(false);
        }
        self.require_runnable()?;
        let out = self
            .pg_command("pg_ctl")
            .arg("stop")
            .args(["-m", "fast", "-w", "-t", "60"])
            .arg("-D")
            .arg(self.pgdata())
            .output_named()?;
        if !out.status.success() && self.state()? == State::Running {
            bail!(
                "stopping PostgreSQL in `{}` failed: {}",
                self.pgdata().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(true)
    }

    /// Stop the cluster and remove the data directory and socket directory.
    ///
    /// # Errors
    /// When stopping or deleting fails.
    pub fn destroy(&self) -> anyhow::Result<bool> {
        if !self.root.exists() {
            return Ok(false);
        }
        self.stop()?;
        let socket_dir = self.socket_dir();
        // Only what we made: a private directory of ours under /tmp, never what a tampered
        // record names.
        let owner = self.run_as.as_ref().map_or_else(current_uid, |u| u.uid);
        if !socket_dir.starts_with(&self.root)
            && socket_dir.parent() == Some(Path::new("/tmp"))
            && socket_dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("aidock-"))
            && check_private_dir(&socket_dir, owner).is_ok()
        {
            fs::remove_dir_all(&socket_dir)
                .with_context(|| format!("removing `{}`", socket_dir.display()))?;
        }
        fs::remove_dir_all(&self.root)
            .with_context(|| format!("removing `{}`", self.root.display()))?;
        if let Some(configured) = &self.relocated_from {
            let _ = fs::remove_file(location_record(configured));
        }
        Ok(true)
    }

    /// The configured data directory, when the cluster lives elsewhere (see [`Self::root`]).
    #[must_use]
    pub fn relocated_from(&self) -> Option<&Path> {
        self.relocated_from.as_deref()
    }

    /// The last `lines` lines of the server log (for error messages).
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.log_file()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// As root: whether the `postgres` user can reach the data directory (always true otherwise).
    ///
    /// # Errors
    /// A message naming the blocking directory and the fix.
    pub fn check_reachable(&self) -> anyhow::Result<()> {
        match &self.run_as {
            Some(user) => check_reachable(&self.root, user),
            None => Ok(()),
        }
    }

    fn prepare_root(&self) -> anyhow::Result<()> {
        if let Some(configured) = &self.relocated_from {
            prepare_relocated_parent()?;
            let record = location_record(configured);
            if let Some(parent) = record.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating `{}`", parent.display()))?;
            }
            write_private(
                &record,
                self.root
                    .to_str()
                    .context("the cluster path is not UTF-8")?,
            )?;
        }
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating data directory `{}`", self.root.display()))?;
        if let Some(user) = &self.run_as {
            check_reachable(&self.root, user)?;
            self.give_to_server_user(&self.root)?;
        }
        Ok(())
    }

    fn give_to_server_user(&self, dir: &Path) -> anyhow::Result<()> {
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
                .with_context(|| format!("giving `{}` to the {} user", dir.display(), user.name))?;
        }
        Ok(())
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let password: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        // initdb reads the password from a file; it lives only while initdb runs.
        let pwfile = self.root.join(".initdb-password");
        write_private(&pwfile, &password)?;
        self.give_to_server_user(&pwfile)?;
        let pgdata = self.pgdata();
        if pgdata.exists() {
            // A previous initdb died half-way (no PG_VERSION): start over.
            fs::remove_dir_all(&pgdata)
                .with_context(|| format!("removing incomplete `{}`", pgdata.display()))?;
        }
        let mut cmd = self.pg_command("initdb");
        cmd.arg("-D")
            .arg(&pgdata)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        if !self.options.fsync {
            cmd.arg("--no-sync");
        }
        let out = cmd.output_named();
        let _ = fs::remove_file(&pwfile);
        let out = out?;
        if !out.status.success() {
            bail!(
                "initdb into `{}` failed: {}",
                pgdata.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(pgdata.join("postgresql.conf"))
            .context("opening postgresql.conf")?;
        writeln!(conf, "\n{MARKER}\ninclude_if_exists = 'aidock.conf'")
            .context("writing postgresql.conf")?;
        write_private(&self.password_file(), &password)
    }

    /// Rewrite `aidock.conf` from the current settings (the port may have changed since initdb).
    fn write_runtime_conf(&self, socket_dir: &Path) -> anyhow::Result<()> {
        let socket = socket_dir
            .to_str()
            .context("socket directory path is not UTF-8")?;
        let mut text = format!(
            "{MARKER}: rewritten at every start\nport = {}\nlisten_addresses = '{}'\nunix_socket_directories = '{}'\n",
            self.port,
            if self.options.tcp { "127.0.0.1" } else { "" },
            socket.replace('\'', "''")
        );
        if !self.options.fsync {
            text.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        for line in &self.options.extra_conf {
            text.push_str(line);
            text.push('\n');
        }
        let path = self.pgdata().join("aidock.conf");
        fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
        self.give_to_server_user(&path)
    }

    fn pg_command(&self, program: &str) -> Command {
        // Callers went through `require_runnable` (start) or found a running cluster (stop).
        let bindir = self
            .bindir()
            .map_or_else(|_| PathBuf::from(program), |d| d.join(program));
        let mut cmd = Command::new(bindir);
        cmd.stdin(Stdio::null()).current_dir("/");
        // Never let a caller's libpq environment redirect the tools at another server.
        for var in ["PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGDATABASE"] {
            cmd.env_remove(var);
        }
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }
}

/// What [`LocalPg::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Created,
    Started,
    AlreadyRunning,
}

trait OutputExt {
    fn output_named(&mut self) -> anyhow::Result<Output>;
}

impl OutputExt for Command {
    fn output_named(&mut self) -> anyhow::Result<Output> {
        let program = self.get_program().to_string_lossy().into_owned();
        self.output()
            .with_context(|| format!("running `{program}`"))
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating `{}`", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing `{}`", path.display()))
}

/// Where clusters go that the server's user could not reach where they were configured.
const RELOCATED_PARENT: &str = "/var/lib/aidock-provision";

/// The file next to a configured data directory that names where its cluster really lives.
fn location_record(configured: &Path) -> PathBuf {
    let mut name = configured.as_os_str().to_owned();
    name.push(".location");
    PathBuf::from(name)
}

/// `/var/lib/aidock-provision/<hash of the configured path>`.
fn relocated(configured: &Path) -> PathBuf {
    let hash = crate::migrate::source::checksum(&configured.to_string_lossy());
    Path::new(RELOCATED_PARENT).join(&hash[..16])
}

/// The parent of relocated clusters: root's own, not writable by others (nobody else may plant
/// a directory or link there).
fn prepare_relocated_parent() -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let parent = Path::new(RELOCATED_PARENT);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .with_context(|| format!("creating `{}`", parent.display()))?;
    let meta =
        fs::symlink_metadata(parent).with_context(|| format!("reading `{}`", parent.display()))?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        bail!(
            "refusing `{}`: it must be a directory owned by root and writable by nobody else; remove it and run again",
            parent.display()
        );
    }
    Ok(())
}

/// `mkdir` with mode 0700 (never following or reusing what is there).
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("creating socket directory `{}`", dir.display()))
}

/// Refuse a socket directory that is a symlink, not a directory, not owned by `uid`, or open to
/// anyone else.
fn check_private_dir(dir: &Path, uid: u32) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading `{}`", dir.display()))?;
    let problem = if meta.file_type().is_symlink() {
        Some("is a symbolic link".to_string())
    } else if !meta.is_dir() {
        Some("is not a directory".to_string())
    } else if meta.uid() != uid {
        Some(format!("is owned by uid {}, not {uid}", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!("has mode {:o}, not 700", meta.mode() & 0o7777))
    } else {
        None
    };
    match problem {
        Some(problem) => bail!(
            "refusing socket directory `{}`: it {problem}, so another local user could reach or replace the server's socket; remove it (`rm -rf {}`) and start again",
            dir.display(),
            dir.display()
        ),
        None => Ok(()),
    }
}

fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl SystemUser {
    fn lookup(name: &str) -> anyhow::Result<SystemUser> {
        let cname = CString::new(name).expect("user names have no NUL");
        let mut buf = vec![0u8; 16 * 1024];
        // SAFETY: an all-zero passwd is a valid value for getpwnam_r to fill in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and buf's length is passed.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &raw mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &raw mut result,
            )
        };
        if rc != 0 || result.is_null() {
            bail!(
                "running as root, but there is no `{name}` system user to run PostgreSQL as (initdb refuses root); install the server package (`apt-get install postgresql` creates it) or run as an ordinary user"
            );
        }
        // SAFETY: on success pw_name points at a NUL-terminated string inside buf.
        let found = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        Ok(SystemUser {
            name: found,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// As root the server runs as `postgres`, which must be able to walk down to the data directory.
fn check_reachable(dir: &Path, user: &SystemUser) -> anyhow::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let ok = mode & 0o001 != 0
            || (meta.uid() == user.uid && mode & 0o100 != 0)
            || (meta.gid() == user.gid && mode & 0o010 != 0);
        if !ok {
            bail!(
                "the `{}` system user that runs PostgreSQL cannot reach `{}`: `{}` (mode {:o}) does not let it through. Set local.data_dir (env AIDOCK__LOCAL__DATA_DIR) to a directory it can reach, e.g. /var/tmp/aidock-pg, or run `chmod o+x {}`",
                user.name,
                dir.display(),
                ancestor.display(),
                mode & 0o7777,
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// Find the directory holding `initdb` and `pg_ctl`: PATH, `pg_config --bindir`, then
/// `/usr/lib/postgresql/*/bin` (newest version first).
///
/// # Errors
/// When none has them; the message names the package to install.
pub fn find_bindir() -> anyhow::Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                // Debian links some tools into /usr/bin via a wrapper; resolve to the real bindir.
                let real = fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir);
                return Ok(real);
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    if let Some((_, dir)) = versions.into_iter().next() {
        return Ok(dir);
    }
    bail!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, via `pg_config --bindir`, or in /usr/lib/postgresql/*/bin; install the server: `apt-get install postgresql` (Debian/Ubuntu), `dnf install postgresql-server` (Fedora), `brew install postgresql` (macOS), or set server.admin_url (AIDOCK_ADMIN_URL) to use an existing server"
    )
}

/// An exclusive `flock` on a file, released on drop: serialises concurrent `start`s.
struct DirLock(fs::File);

impl DirLock {
    fn acquire(path: &Path) -> anyhow::Result<DirLock> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening lock file `{}`", path.display()))?;
        // SAFETY: the fd is valid while `file` lives.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking `{}`", path.display()));
        }
        Ok(DirLock(file))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: the fd is valid while `self.0` lives.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&self.0), libc::LOCK_UN) };
    }
}
