//! The project-local PostgreSQL cluster: find the system's server binaries, `initdb`, start and stop
//! (as the `postgres` system user when we are root), used by the CLI and by the test harness.
//!
//! Layout under the data directory (the *root*), which belongs to whoever runs the tool:
//! `admin.password` (0600, the generated superuser password), `aidock.conf` (the runtime settings
//! the server includes), `.lock` (serialises starts and destroys), `socket_dir` (where a socket
//! directory under /tmp was made, when `sock/` would be too long a path); and the server user's own
//! `pgdata/` (the cluster), `log/` (its log) and `sock/` (its Unix socket). Root never writes,
//! chowns, reads or deletes through a path the server's user (or anyone else) could change:
//! everything root touches is in directories root alone can change ([`fsguard`]), files are
//! opened without following links and checked, and what must be written inside `pgdata/` is
//! written by the server's user itself.

mod fsguard;
mod process;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};
use rand::RngExt as _;

pub use process::find_bindir;
use process::{SystemUser, current_uid, is_root};

const SUPERUSER: &str = "postgres";
/// Unix socket paths are limited to 107 bytes (`sun_path`); leave room for `.s.PGSQL.NNNNN`.
const MAX_SOCKET_DIR_LEN: usize = 90;
/// The line `postgresql.conf` ends with: the runtime settings, from the root (one level up).
const INCLUDE: &str = "include_if_exists = '../aidock.conf'";

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
    /// A location record that was not honoured, and why (said by `status` and `destroy`).
    ignored_record: Option<String>,
    port: u16,
    run_as: Option<SystemUser>,
    /// As root without a `postgres` system user: why nothing can be started (said on first use).
    run_as_missing: Option<String>,
    options: Options,
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
        let (recorded, ignored_record) = match honoured_location(&root) {
            Ok(found) => (found, None),
            Err(why) => (None, Some(why)),
        };
        let relocate = recorded.or_else(|| {
            run_as
                .as_ref()
                .filter(|user| check_reachable(&root, user).is_err())
                .map(|_| Path::new(RELOCATED_PARENT).join(crate::db::random_tag()))
        });
        let (root, relocated_from) = match relocate {
            Some(elsewhere) => (elsewhere, Some(root)),
            None => (root, None),
        };
        Ok(LocalPg {
            bindir,
            root,
            relocated_from,
            ignored_record,
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
        self.root.join("log").join("server.log")
    }

    /// A location record next to the configured data directory that was not honoured, and why.
    #[must_use]
    pub fn ignored_record(&self) -> Option<&str> {
        self.ignored_record.as_deref()
    }

    /// The TCP port: the one the running server listens on (from its pid file), else the
    /// configured one (which the next start applies).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.running_port().unwrap_or(self.port)
    }

    /// Line 4 of `postmaster.pid` is the port of a running server.
    fn running_port(&self) -> Option<u16> {
        if self.state().ok()? != State::Running {
            return None;
        }
        self.pid_file_line(3)?.trim().parse().ok()
    }

    /// The uids whose files the tool reads in the cluster: its own and the server's.
    fn owners(&self) -> Vec<u32> {
        let mut owners = vec![current_uid()];
        owners.extend(self.run_as.as_ref().map(|u| u.uid));
        owners
    }

    /// The uid that owns the server's directories.
    fn server_uid(&self) -> u32 {
        self.run_as.as_ref().map_or_else(current_uid, |u| u.uid)
    }

    fn pid_file_line(&self, n: usize) -> Option<String> {
        let text =
            fsguard::read_checked(&self.pgdata().join("postmaster.pid"), &self.owners()).ok()?;
        text.lines().nth(n).map(str::to_string)
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
        fsguard::read_checked(&self.socket_record(), &[current_uid()])
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
        let owner = self.server_uid();
        let inside = self.root.join("sock");
        if inside.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            self.server_dir(&inside, "socket directory")?;
            return Ok(inside);
        }
        let recorded = self.socket_dir();
        if recorded != inside && fs::symlink_metadata(&recorded).is_ok() {
            check_private_dir(&recorded, owner, "socket directory")?;
            return Ok(recorded);
        }
        // None yet, or /tmp was cleaned: a new random name, created exclusively.
        for _ in 0..16 {
            let dir = PathBuf::from(format!("/tmp/aidock-{}", crate::db::random_tag()));
            match fsguard::create_dir(&dir, 0o700) {
                Ok(()) => {
                    self.give_to_server_user(&dir)?;
                    check_private_dir(&dir, owner, "socket directory")?;
                    fsguard::write_new(
                        &self.socket_record(),
                        dir.to_str().context("socket directory path is not UTF-8")?,
                        0o600,
                    )?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(anyhow::Error::from(e))
                        .with_context(|| format!("creating socket directory `{}`", dir.display()));
                }
            }
        }
        bail!("could not create a private socket directory under /tmp (16 names were taken)")
    }

    /// The generated superuser password.
    ///
    /// # Errors
    /// When the cluster was never initialised, or the file is not the tool's own.
    pub fn admin_password(&self) -> anyhow::Result<String> {
        self.guard()?;
        let text = fsguard::read_checked(&self.password_file(), &[current_uid()]).with_context(
            || {
                format!(
                    "reading the local cluster's admin password `{}`; run `aidock-provision local start` first",
                    self.password_file().display()
                )
            },
        )?;
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
    /// A data directory that is a symbolic link.
    pub fn state(&self) -> anyhow::Result<State> {
        if fs::symlink_metadata(&self.root).is_ok_and(|m| m.file_type().is_symlink()) {
            fsguard::check_dir(&self.root, current_uid())?;
        }
        if !fs::symlink_metadata(self.pgdata().join("PG_VERSION")).is_ok_and(|m| m.is_file()) {
            return Ok(State::Absent);
        }
        // What `pg_ctl status` checks, without needing the binaries, and more: the pid file
        // names a live postmaster of this very data directory (a stale pid may now be another's).
        let pid = self
            .pid_file_line(0)
            .and_then(|l| l.trim().parse::<i32>().ok());
        Ok(
            if pid.is_some_and(|pid| process::is_our_postmaster(pid, &self.pgdata())) {
                State::Running
            } else {
                State::Stopped
            },
        )
    }

    /// A server still running on this cluster's data directory after it was deleted.
    #[must_use]
    pub fn orphaned_server(&self) -> Option<i32> {
        process::orphaned_postmaster(&self.pgdata())
    }

    /// As root: the paths root acts on are root's alone.
    fn guard(&self) -> anyhow::Result<()> {
        if !is_root() {
            return Ok(());
        }
        fsguard::check_root_only_path(self.relocated_from.as_ref().unwrap_or(&self.root))?;
        if self.relocated_from.is_some() {
            fsguard::check_root_only_path(&self.root)?;
        }
        Ok(())
    }

    /// Create the cluster if needed and start it if it is not running; returns what it did.
    ///
    /// # Errors
    /// When initdb or the server fails; the message carries the end of the server log.
    pub fn start(&self) -> anyhow::Result<Started> {
        self.require_runnable()?;
        self.guard()?;
        self.prepare_root()?;
        let _lock = DirLock::acquire(&self.root.join(".lock"))?;
        if let Some(pid) = self.orphaned_server() {
            bail!(
                "a PostgreSQL server (pid {pid}) still runs on `{}`, which was deleted under it; stop it first (`aidock-provision local destroy --yes` does, or `kill -INT {pid}`)",
                self.pgdata().display()
            );
        }
        let created = if self.pgdata().join("PG_VERSION").is_file() {
            false
        } else {
            self.initdb()?;
            true
        };
        self.ensure_include()?;
        if self.state()? == State::Running {
            return Ok(if created {
                Started::Created
            } else {
                Started::AlreadyRunning
            });
        }
        // A postmaster.pid left by a crash (or naming another cluster's server now): not ours.
        let stale = self.pgdata().join("postmaster.pid");
        if fs::symlink_metadata(&stale).is_ok() {
            fs::remove_file(&stale)
                .with_context(|| format!("removing stale `{}`", stale.display()))?;
        }
        // local.port taken (another checkout's cluster, another user's): the next free one,
        // said by the caller (`moved_from`); every URL comes from the port the server really
        // listens on. Never a server that is not this project's.
        let port = self.free_port()?;
        // The log is the server user's to write; one that is not a plain file of its own (a
        // link it planted) is removed, never followed by anyone but that user.
        let log = self.log_file();
        if fs::symlink_metadata(&log)
            .is_ok_and(|m| !m.is_file() || m.nlink() != 1 || m.uid() != self.server_uid())
        {
            fs::remove_file(&log).with_context(|| format!("removing `{}`", log.display()))?;
        }
        let socket_dir = self.prepare_socket_dir()?;
        self.write_runtime_conf(&socket_dir, port)?;
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
        self.guard()?;
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

    /// Stop the cluster (also a server left running on a deleted data directory) and remove the
    /// data directory and socket directory: exactly what this project made, nothing a record or
    /// a link names. A data directory holding anything the tool did not make (another project's
    /// files, a home directory a setting named) is refused before anything is stopped or deleted.
    ///
    /// # Errors
    /// Foreign content (exit 3, naming it); stopping or deleting failing.
    pub fn destroy(&self) -> anyhow::Result<bool> {
        let orphan = self.orphaned_server();
        if fs::symlink_metadata(&self.root).is_err() {
            if let Some(pid) = orphan {
                process::stop_process(pid);
                return Ok(true);
            }
            return Ok(false);
        }
        self.guard()?;
        fsguard::check_dir(&self.root, current_uid())?;
        self.refuse_foreign_content("delete")?;
        let _lock = DirLock::acquire(&self.root.join(".lock"))?;
        if let Some(pid) = orphan {
            process::stop_process(pid);
        }
        self.stop()?;
        let socket_dir = self.socket_dir();
        // Only what we made: a private directory of ours under /tmp, never what a tampered
        // record names.
        if !socket_dir.starts_with(&self.root)
            && socket_dir.parent() == Some(Path::new("/tmp"))
            && socket_dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("aidock-"))
            && check_private_dir(&socket_dir, self.server_uid(), "socket directory").is_ok()
        {
            fs::remove_dir_all(&socket_dir)
                .with_context(|| format!("removing `{}`", socket_dir.display()))?;
        }
        // Entry by entry, the tool's own names only; then the (now empty) directory itself.
        let leftovers: Vec<String> = fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| is_own_entry(n) && !OWN_ENTRIES.contains(&n.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        for name in OWN_ENTRIES
            .iter()
            .copied()
            .chain(leftovers.iter().map(String::as_str))
        {
            let path = self.root.join(name);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("removing `{}`", path.display()))?;
        }
        fs::remove_dir(&self.root).with_context(|| {
            format!(
                "removing `{}` (something was added to it while the cluster was being removed; nothing of the tool's is left in it)",
                self.root.display()
            )
        })?;
        if let Some(configured) = &self.relocated_from {
            let _ = fs::remove_file(location_record(configured));
        }
        // The project's `.aidock/` that only held the cluster: an empty one would make its
        // folder look like a project root to every later command.
        let made_for = self.relocated_from.as_ref().unwrap_or(&self.root);
        if let Some(parent) = made_for.parent()
            && parent.file_name().is_some_and(|n| n == ".aidock")
        {
            let _ = fs::remove_dir(parent);
        }
        Ok(true)
    }

    /// Refuse (exit 3, before anything happens) a data directory holding entries the tool does
    /// not make ([`OWN_ENTRIES`]), or a `pgdata/` that is not a cluster: `local.data_dir` may
    /// name any directory, and root must not `what` one it did not make.
    fn refuse_foreign_content(&self, what: &str) -> anyhow::Result<()> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(());
        };
        let mut foreign: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !is_own_entry(name))
            .collect();
        let pgdata = self.pgdata();
        if fs::symlink_metadata(&pgdata).is_ok_and(|m| !m.is_dir()) {
            foreign.push("pgdata (not a directory)".into());
        }
        if foreign.is_empty() {
            return Ok(());
        }
        foreign.sort();
        Err(crate::error::refused(format!(
            "`{}` holds what aidock-provision did not make ({}), so it will not {what} it; local.data_dir (AIDOCK__LOCAL__DATA_DIR) must name a new or empty directory, or one the tool made. Nothing was changed",
            self.root.display(),
            foreign.join(", ")
        )))
    }

    /// The configured data directory, when the cluster lives elsewhere (see [`Self::root`]).
    #[must_use]
    pub fn relocated_from(&self) -> Option<&Path> {
        self.relocated_from.as_deref()
    }

    /// The last `lines` lines of the server log (for error messages).
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fsguard::read_checked(&self.log_file(), &self.owners()).unwrap_or_default();
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

    /// The root (the tool user's), and in it the server user's `pgdata/`, `log/` directories.
    fn prepare_root(&self) -> anyhow::Result<()> {
        let me = current_uid();
        if let Some(configured) = &self.relocated_from {
            prepare_relocated_parent()?;
            match fsguard::create_dir(&self.root, 0o711) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(anyhow::Error::from(e))
                        .with_context(|| format!("creating `{}`", self.root.display()));
                }
            }
            fsguard::check_dir(&self.root, me)?;
            let configured_text = configured
                .to_str()
                .context("the data directory path is not UTF-8")?;
            fsguard::write_new(&self.root.join(PROJECT_RECORD), configured_text, 0o644)?;
            let record = location_record(configured);
            if let Some(parent) = record.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating `{}`", parent.display()))?;
            }
            fsguard::write_new(
                &record,
                self.root
                    .to_str()
                    .context("the cluster path is not UTF-8")?,
                0o644,
            )?;
        } else {
            if let Some(parent) = self.root.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating `{}`", parent.display()))?;
            }
            match fsguard::create_dir(&self.root, 0o700) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(anyhow::Error::from(e)).with_context(|| {
                        format!("creating data directory `{}`", self.root.display())
                    });
                }
            }
            self.adopt_old_layout()?;
            self.refuse_foreign_content("start a cluster in")?;
            fsguard::check_dir(&self.root, me).with_context(|| {
                format!(
                    "the local cluster's data directory must belong to the user running aidock-provision (uid {me})"
                )
            })?;
        }
        if let Some(user) = &self.run_as {
            check_reachable(&self.root, user)?;
            // The server's user passes through to its own directories; nothing more.
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o711))
                .with_context(|| format!("setting the mode of `{}`", self.root.display()))?;
        }
        self.server_dir(&self.pgdata(), "data directory")?;
        self.server_dir(&self.root.join("log"), "log directory")
    }

    /// Clusters made by earlier versions gave the whole root to the server's user: take it back
    /// (its parent is root's alone, so it cannot have been swapped) and check what it holds.
    fn adopt_old_layout(&self) -> anyhow::Result<()> {
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        let meta = fs::symlink_metadata(&self.root)
            .with_context(|| format!("reading `{}`", self.root.display()))?;
        if meta.file_type().is_symlink() || !meta.is_dir() || meta.uid() != user.uid {
            return Ok(());
        }
        std::os::unix::fs::lchown(&self.root, Some(0), Some(0))
            .with_context(|| format!("taking back `{}`", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o711))
            .with_context(|| format!("setting the mode of `{}`", self.root.display()))?;
        // What the server's user could have replaced while it owned the directory.
        for name in [".lock", "socket_dir", ".initdb-password", "server.log"] {
            let path = self.root.join(name);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.uid() != 0 || !m.is_file()) {
                fs::remove_file(&path).with_context(|| format!("removing `{}`", path.display()))?;
            }
        }
        if fs::symlink_metadata(self.password_file()).is_ok() {
            fsguard::read_checked(&self.password_file(), &[0]).context(
                "the local cluster's admin password file was replaced while the server's user owned its directory; run `aidock-provision local destroy --yes` and start again",
            )?;
        }
        Ok(())
    }

    /// A directory of the server's user inside the root: made private and given to it when
    /// new, else checked to be its own, really a directory.
    fn server_dir(&self, dir: &Path, what: &str) -> anyhow::Result<()> {
        // Given away before it appears: a concurrent run checking it never sees it ours.
        let made = match &self.run_as {
            Some(user) => fsguard::create_dir_owned(dir, 0o700, user.uid, user.gid),
            None => fsguard::create_dir(dir, 0o700),
        };
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(anyhow::Error::from(e))
                    .with_context(|| format!("creating `{}`", dir.display()));
            }
        }
        check_private_dir(dir, self.server_uid(), what)
    }

    /// `lchown` to the server's user: never through a link.
    fn give_to_server_user(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(user) = &self.run_as {
            std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).with_context(|| {
                format!("giving `{}` to the {} user", path.display(), user.name)
            })?;
        }
        Ok(())
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let password: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        // initdb reads the password from a file the server's user can read, which lives only
        // while initdb runs: created anew (never through a link) in that user's `log/`.
        let pwfile = self.root.join("log").join(".initdb-password");
        fsguard::write_new(&pwfile, &password, 0o600)?;
        self.give_to_server_user(&pwfile)?;
        let pgdata = self.pgdata();
        if fs::read_dir(&pgdata).is_ok_and(|mut d| d.next().is_some()) {
            // A previous initdb died half-way (no PG_VERSION): start over.
            fs::remove_dir_all(&pgdata)
                .with_context(|| format!("removing incomplete `{}`", pgdata.display()))?;
            self.server_dir(&pgdata, "data directory")?;
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
        fsguard::write_new(&self.password_file(), &password, 0o600)
    }

    /// `postgresql.conf` ends by including the root's `aidock.conf`; written by the server's
    /// user (the file is its own), once.
    fn ensure_include(&self) -> anyhow::Result<()> {
        let conf = self.pgdata().join("postgresql.conf");
        if fsguard::read_checked(&conf, &self.owners())?
            .lines()
            .any(|l| l == INCLUDE)
        {
            return Ok(());
        }
        if self.run_as.is_none() {
            return fsguard::append_checked(&conf, &[current_uid()], INCLUDE);
        }
        let out = self
            .pg_command("sh")
            .args([
                "-c",
                "printf '\\n# aidock-provision settings\\n%s\\n' \"$1\" >> \"$2\"",
            ])
            .arg("sh")
            .arg(INCLUDE)
            .arg(&conf)
            .output_named()?;
        if !out.status.success() {
            bail!(
                "adding the settings include to `{}` failed: {}",
                conf.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The port to start on: local.port, or (taken) the next free one above it.
    fn free_port(&self) -> anyhow::Result<u16> {
        if !self.options.tcp || !process::port_taken(self.port) {
            return Ok(self.port);
        }
        (self.port.saturating_add(1)..=self.port.saturating_add(100))
            .find(|p| !process::port_taken(*p))
            .with_context(|| {
                format!(
                    "port {} on 127.0.0.1 is taken by another server (another checkout's local cluster?), and so are the 100 after it, so the cluster in `{}` cannot start; set local.port (AIDOCK__LOCAL__PORT) to a free port",
                    self.port,
                    self.root.display()
                )
            })
    }

    /// When the running server is not on local.port (it was taken when it started): that port.
    #[must_use]
    pub fn moved_from(&self) -> Option<u16> {
        self.running_port()
            .filter(|p| *p != self.port)
            .map(|_| self.port)
    }

    /// Rewrite `aidock.conf` from the current settings (the port may have changed since initdb).
    fn write_runtime_conf(&self, socket_dir: &Path, port: u16) -> anyhow::Result<()> {
        let socket = socket_dir
            .to_str()
            .context("socket directory path is not UTF-8")?;
        let mut text = format!(
            "# aidock-provision settings: rewritten at every start\nport = {}\nlisten_addresses = '{}'\nunix_socket_directories = '{}'\n",
            port,
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
        // Read by the server's user; nothing secret in it.
        fsguard::write_new(&self.root.join("aidock.conf"), &text, 0o644)
    }

    fn pg_command(&self, program: &str) -> Command {
        // Callers went through `require_runnable` (start) or found a running cluster (stop).
        let path = if program == "sh" {
            PathBuf::from("/bin/sh")
        } else {
            self.bindir()
                .map_or_else(|_| PathBuf::from(program), |d| d.join(program))
        };
        let mut cmd = Command::new(path);
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

/// Where clusters go that the server's user could not reach where they were configured.
const RELOCATED_PARENT: &str = "/var/lib/aidock-provision";

/// Inside a relocated cluster: the configured data directory it was made for.
const PROJECT_RECORD: &str = "project";

/// Everything the tool makes in a data directory (and what earlier versions made there): the
/// only names `local destroy` deletes, and the only ones `start` accepts in a directory it is
/// given.
const OWN_ENTRIES: &[&str] = &[
    "pgdata",
    "log",
    "sock",
    "admin.password",
    "aidock.conf",
    ".lock",
    "socket_dir",
    PROJECT_RECORD,
    ".initdb-password",
    "server.log",
];

/// One of [`OWN_ENTRIES`], or one being made under its temporary name by a concurrent run (or
/// left so by a killed one): `.pgdata.new-PID-RAND` ([`fsguard::create_dir_owned`]).
fn is_own_entry(name: &str) -> bool {
    OWN_ENTRIES.contains(&name)
        || name
            .strip_prefix('.')
            .and_then(|rest| rest.split_once(".new-"))
            .is_some_and(|(own, _)| OWN_ENTRIES.contains(&own))
}

/// As root: a settings file that chose a path root acts on (`local.data_dir`) must be root's
/// alone: a regular file root owns, writable by nobody else, in a directory tree only root can
/// change. Otherwise another user could point root's `local destroy` at any directory.
///
/// # Errors
/// The file or a directory above it that another user could change, with the fix.
pub fn check_settings_file(file: &Path, key: &str) -> anyhow::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let meta = fs::symlink_metadata(file)
        .with_context(|| format!("reading settings file `{}`", file.display()))?;
    let why = if !meta.is_file() {
        Some("is not a regular file".to_string())
    } else if meta.uid() != 0 {
        Some(format!("belongs to uid {}", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "is writable by other users (mode {:o})",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    if let Some(why) = why {
        bail!(
            "refusing `{key}` from `{}` as root: the file {why}, so another user could choose the directory root creates and deletes. Set it in root's environment instead (AIDOCK__LOCAL__DATA_DIR), or make the file root's alone (chown root, chmod go-w)",
            file.display()
        );
    }
    let dir = std::path::absolute(file)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/"));
    fsguard::check_root_only_path(&dir).with_context(|| {
        format!(
            "refusing `{key}` from `{}` as root (set it in root's environment instead: AIDOCK__LOCAL__DATA_DIR)",
            file.display()
        )
    })
}

/// The file next to a configured data directory that names where its cluster really lives.
fn location_record(configured: &Path) -> PathBuf {
    let mut name = configured.as_os_str().to_owned();
    name.push(".location");
    PathBuf::from(name)
}

/// The relocated cluster `configured`'s record names, when it is one this project made: a
/// directory of root's own directly under [`RELOCATED_PARENT`] with a random name, whose own
/// record names this very configured directory (a copied checkout's record names a cluster made
/// for the original, and is not honoured). `Err` says why a record was not honoured.
fn honoured_location(configured: &Path) -> Result<Option<PathBuf>, String> {
    let record = location_record(configured);
    if fs::symlink_metadata(&record).is_err() {
        return Ok(None);
    }
    let ignore = |why: String| {
        Err(format!(
            "ignoring `{}`: {why}; it is replaced when the cluster starts",
            record.display()
        ))
    };
    if !is_root() {
        return ignore("only root relocates clusters".into());
    }
    let text = match fsguard::read_checked(&record, &[0]) {
        Ok(text) => text,
        Err(e) => return ignore(format!("{e:#}")),
    };
    let named = PathBuf::from(text.trim());
    let tag_ok = named.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.len() == 12
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if named.parent() != Some(Path::new(RELOCATED_PARENT)) || !tag_ok {
        return ignore(format!(
            "it names `{}`, which is not a cluster directory this tool makes under {RELOCATED_PARENT}",
            named.display()
        ));
    }
    if fs::symlink_metadata(&named).is_err() {
        return Ok(None);
    }
    if let Err(e) = fsguard::check_dir(&named, 0) {
        return ignore(format!("{e:#}"));
    }
    match fsguard::read_checked(&named.join(PROJECT_RECORD), &[0]) {
        Ok(owner) if Path::new(owner.trim()) == configured => Ok(Some(named)),
        Ok(owner) => ignore(format!(
            "it names the cluster made for `{}` (a copied checkout?), not for this one",
            owner.trim()
        )),
        Err(e) => ignore(format!("{e:#}")),
    }
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

/// Refuse a directory that is a symlink, not a directory, not owned by `uid`, or open to anyone
/// else.
fn check_private_dir(dir: &Path, uid: u32, what: &str) -> anyhow::Result<()> {
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
            "refusing {what} `{}`: it {problem}, so another local user could reach or replace what the server keeps there; remove it (`rm -rf {}`) and start again",
            dir.display(),
            dir.display()
        ),
        None => Ok(()),
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

/// An exclusive `flock` on a file of the tool's user (never a link), released on drop:
/// serialises starts and destroys.
struct DirLock(fs::File);

impl DirLock {
    fn acquire(path: &Path) -> anyhow::Result<DirLock> {
        let open = || {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
        };
        let file = match open() {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                fs::remove_file(path).with_context(|| format!("removing `{}`", path.display()))?;
                open().with_context(|| format!("opening lock file `{}`", path.display()))?
            }
            Err(e) => {
                return Err(anyhow::Error::from(e))
                    .with_context(|| format!("opening lock file `{}`", path.display()));
            }
        };
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
