//! File-system acts that stay safe when the server runs as another user than the one running the
//! tool (root starting the cluster as `postgres`): nothing is followed that another user could
//! have put there. Paths are checked with `lstat` (never `stat`), files are opened with
//! `O_NOFOLLOW` and checked on the open descriptor, new files and directories are created
//! exclusively, and as root a directory tree is used only when no other user can change any of
//! its ancestors.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};

/// Create a directory with `mode` (never following or reusing what is there).
pub(super) fn create_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    fs::DirBuilder::new().mode(mode).create(dir)
}

/// Create a directory with `mode` that appears already given to `uid`/`gid`: made under a
/// temporary name beside it, given away, then renamed into place without replacing anything
/// (`RENAME_NOREPLACE`), so a concurrent run never sees it half made (still the tool user's).
/// `AlreadyExists` when it was there (or another run put it there first).
pub(super) fn create_dir_owned(dir: &Path, mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let name = dir
        .file_name()
        .ok_or_else(|| std::io::Error::other("a directory without a name"))?;
    let tmp = dir.with_file_name(format!(
        ".{}.new-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    create_dir(&tmp, mode)?;
    let done = std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid)).and_then(|()| {
        let from = std::ffi::CString::new(tmp.as_os_str().as_bytes())?;
        let to = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: both paths are NUL-terminated C strings that live across the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    if done.is_err() {
        let _ = fs::remove_dir(&tmp);
    }
    done
}

/// Create `path` anew (removing a previous file or link of that name first, never following it)
/// with `mode`, and write `text`.
pub(super) fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            bail!("refusing to write `{}`: it is a directory", path.display())
        }
        Ok(_) => {
            fs::remove_file(path).with_context(|| format!("replacing `{}`", path.display()))?;
        }
        Err(_) => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("creating `{}`", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing `{}`", path.display()))
}

/// Open an existing regular file without following a symbolic link, and check on the open
/// descriptor that it is a regular file with one link, owned by one of `owners`.
pub(super) fn open_checked(path: &Path, owners: &[u32]) -> anyhow::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                anyhow::anyhow!(
                    "refusing `{}`: it is a symbolic link, which another user may have put there; remove it",
                    path.display()
                )
            } else {
                anyhow::Error::from(e).context(format!("opening `{}`", path.display()))
            }
        })?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading `{}`", path.display()))?;
    if !meta.is_file() {
        bail!("refusing `{}`: it is not a regular file", path.display());
    }
    if meta.nlink() != 1 {
        bail!(
            "refusing `{}`: it has {} hard links, so it may be another file in disguise; remove it",
            path.display(),
            meta.nlink()
        );
    }
    if !owners.contains(&meta.uid()) {
        bail!(
            "refusing `{}`: it belongs to uid {}, not to the user running the tool or the server; remove it",
            path.display(),
            meta.uid()
        );
    }
    Ok(file)
}

/// Read a file checked as [`open_checked`] does.
pub(super) fn read_checked(path: &Path, owners: &[u32]) -> anyhow::Result<String> {
    let mut text = String::new();
    open_checked(path, owners)?
        .read_to_string(&mut text)
        .with_context(|| format!("reading `{}`", path.display()))?;
    Ok(text)
}

/// Append a line to a file checked as [`open_checked`] does (as its owner would).
pub(super) fn append_checked(path: &Path, owners: &[u32], line: &str) -> anyhow::Result<()> {
    open_checked(path, owners)?;
    let mut file = fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening `{}`", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("writing `{}`", path.display()))
}

/// A directory that is really one (not a link to one), owned by `uid`.
pub(super) fn check_dir(dir: &Path, uid: u32) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading `{}`", dir.display()))?;
    if meta.file_type().is_symlink() {
        bail!(
            "refusing `{}`: it is a symbolic link; set local.data_dir to the real directory",
            dir.display()
        );
    }
    if !meta.is_dir() {
        bail!("refusing `{}`: it is not a directory", dir.display());
    }
    if meta.uid() != uid {
        bail!(
            "refusing `{}`: it belongs to uid {}, not {uid}",
            dir.display(),
            meta.uid()
        );
    }
    Ok(())
}

/// As root: refuse a data directory any of whose ancestors another user could change (owned by
/// someone else, or writable by group or others without the sticky bit that keeps root's own
/// entries root's). Such a user could swap a directory for a link between our check and our
/// write, and have root write, chown or delete what they choose. Symbolic links on the way are
/// followed only where root alone could have made them.
///
/// # Errors
/// The first ancestor that is not root's alone, with the two ways out.
pub(super) fn check_root_only_path(dir: &Path) -> anyhow::Result<()> {
    /// One step of a path, owned (a link's target adds steps while walking).
    enum Step {
        Root,
        Up,
        Down(std::ffi::OsString),
    }
    fn steps(path: &Path) -> anyhow::Result<Vec<Step>> {
        let mut out = Vec::new();
        for part in path.components().rev() {
            out.push(match part {
                Component::RootDir => Step::Root,
                Component::CurDir => continue,
                Component::ParentDir => Step::Up,
                Component::Normal(name) => Step::Down(name.to_os_string()),
                Component::Prefix(_) => bail!("unsupported path `{}`", path.display()),
            });
        }
        Ok(out)
    }
    let mut checked = PathBuf::from("/");
    let mut rest = steps(dir)?;
    let mut hops = 0;
    while let Some(step) = rest.pop() {
        let name = match step {
            Step::Root => {
                checked = PathBuf::from("/");
                continue;
            }
            Step::Up => {
                checked.pop();
                continue;
            }
            Step::Down(name) => name,
        };
        let parent = fs::symlink_metadata(&checked)
            .with_context(|| format!("reading `{}`", checked.display()))?;
        let next = checked.join(&name);
        let Ok(meta) = fs::symlink_metadata(&next) else {
            // Not there yet: root creates it and everything below, in a parent only root can
            // change.
            return check_parent(&checked, &parent, None, dir);
        };
        check_parent(&checked, &parent, Some(&meta), dir)?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 16 {
                bail!("too many symbolic links resolving `{}`", dir.display());
            }
            if meta.uid() != 0 {
                bail!(refusal(
                    dir,
                    &next,
                    "is a symbolic link owned by another user"
                ));
            }
            let target = fs::read_link(&next)
                .with_context(|| format!("reading the link `{}`", next.display()))?;
            rest.extend(steps(&target)?);
            continue;
        }
        checked = next;
    }
    Ok(())
}

/// A directory may hold the next part of the path when only root can change its entries.
fn check_parent(
    path: &Path,
    meta: &fs::Metadata,
    entry: Option<&fs::Metadata>,
    dir: &Path,
) -> anyhow::Result<()> {
    let writable_by_others = meta.mode() & 0o022 != 0;
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.uid() != 0 {
        bail!(refusal(
            dir,
            path,
            &format!("belongs to uid {}", meta.uid())
        ));
    }
    if writable_by_others && !(sticky && entry.is_none_or(|e| e.uid() == 0)) {
        bail!(refusal(
            dir,
            path,
            &format!(
                "is writable by other users (mode {:o})",
                meta.mode() & 0o7777
            )
        ));
    }
    Ok(())
}

fn refusal(dir: &Path, at: &Path, why: &str) -> String {
    format!(
        "refusing to run the local cluster as root in `{}`: `{}` {why}, so another user could redirect what root writes, chowns or deletes there. Run aidock-provision as the user who owns the project, or set local.data_dir (AIDOCK__LOCAL__DATA_DIR) to a directory only root can change, e.g. /var/lib/aidock-pg",
        dir.display(),
        at.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn root_only_paths() {
        if !is_root() {
            return;
        }
        let base = std::env::temp_dir().join(format!("aidock-fsguard-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        create_dir(&base, 0o755).expect("mkdir");
        assert!(
            check_root_only_path(&base.join("a/b")).is_ok(),
            "root's own tree"
        );
        let open = base.join("open");
        create_dir(&open, 0o777).expect("mkdir");
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
        let err = check_root_only_path(&open.join("pg")).expect_err("world-writable");
        assert!(err.to_string().contains("writable by other users"), "{err}");
        let theirs = base.join("theirs");
        create_dir(&theirs, 0o755).expect("mkdir");
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
        let err = check_root_only_path(&theirs.join("pg")).expect_err("another user's");
        assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
        // A link root made inside root's tree is followed (and checked at its target).
        std::os::unix::fs::symlink(&theirs, base.join("link")).expect("symlink");
        assert!(check_root_only_path(&base.join("link/pg")).is_err());
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn files_are_not_followed() {
        let base = std::env::temp_dir().join(format!("aidock-fsguard-f-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        create_dir(&base, 0o700).expect("mkdir");
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let secret = base.join("secret");
        write_new(&secret, "s3cret", 0o600).expect("write");
        let link = base.join("link");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        let err = read_checked(&link, &[me]).expect_err("a link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // write_new replaces the link itself, never its target.
        write_new(&link, "new", 0o600).expect("replace");
        assert_eq!(fs::read_to_string(&secret).expect("read"), "s3cret");
        assert_eq!(read_checked(&link, &[me]).expect("own file"), "new");
        let hard = base.join("hard");
        fs::hard_link(&secret, &hard).expect("hard link");
        assert!(read_checked(&hard, &[me]).is_err(), "two links");
        let _ = fs::remove_dir_all(&base);
    }
}
