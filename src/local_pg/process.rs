//! The processes and system facts around a local cluster: the system user that runs the server,
//! which postmaster (if any) a pid file really names, a server whose data directory was deleted
//! under it, whether a port is free, and where the server binaries are.

use std::ffi::{CStr, CString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

#[derive(Debug, Clone)]
pub(super) struct SystemUser {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

impl SystemUser {
    pub(super) fn lookup(name: &str) -> anyhow::Result<SystemUser> {
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

pub(super) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub(super) fn is_root() -> bool {
    current_uid() == 0
}

/// Whether process `pid` exists (signal 0 sends nothing).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether `pid` is a live postmaster of the cluster in `pgdata`: a postmaster runs with its data
/// directory as working directory, so `/proc/PID/cwd` must be `pgdata` (a pid file can outlive
/// its server, and the pid be taken by another cluster's postmaster). Without `/proc` (not
/// Linux), a live process is taken for ours, as `pg_ctl` does.
pub(super) fn is_our_postmaster(pid: i32, pgdata: &Path) -> bool {
    if pid <= 0 || !alive(pid) {
        return false;
    }
    if !Path::new("/proc/self/cwd").exists() {
        return true;
    }
    let Ok(cwd) = fs::read_link(format!("/proc/{pid}/cwd")) else {
        return false;
    };
    let ours = fs::canonicalize(pgdata).unwrap_or_else(|_| pgdata.to_path_buf());
    cwd == ours
}

/// A postmaster still running in `pgdata` after that directory was deleted (`/proc/PID/cwd`
/// reads `<pgdata> (deleted)`): its pid.
pub(super) fn orphaned_postmaster(pgdata: &Path) -> Option<i32> {
    let deleted = format!("{} (deleted)", pgdata.display());
    let mut pids: Vec<(i32, i32)> = Vec::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cwd) = fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if cwd.as_os_str() != deleted.as_str() {
            continue;
        }
        let parent = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        pids.push((pid, parent));
    }
    let members: Vec<i32> = pids.iter().map(|(p, _)| *p).collect();
    pids.iter()
        .find(|(_, parent)| !members.contains(parent))
        .map(|(pid, _)| *pid)
}

/// Ask a postmaster to shut down (fast: SIGINT), and wait up to 30 s for it to go.
pub(super) fn stop_process(pid: i32) -> bool {
    // SAFETY: sending SIGINT to a pid we checked is a postmaster of ours.
    unsafe { libc::kill(pid, libc::SIGINT) };
    for _ in 0..300 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    !alive(pid)
}

/// Whether something already listens on 127.0.0.1:`port`.
pub(super) fn port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port))
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
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
