//! Trust: a unit file or directory path in, whether only root can change it out.
//!
//! Unit files are configuration that runs processes as root, so a file or a
//! directory that a non-root user can write is refused, as sshd refuses loose
//! key files.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Error;

/// Permission bits that let group or others write.
const GROUP_OTHER_WRITE: u32 = 0o022;

/// Checks one unit file: the file it resolves to (symlinks followed) must be a
/// regular file, and both it and the directory holding it, as well as the
/// directory holding the link itself, must be owned by root and not writable by
/// group or others.
pub fn check(path: &Path) -> Result<(), Error> {
    let resolved = fs::canonicalize(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = fs::metadata(&resolved).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(Error::Untrusted {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    owned_by_root_and_closed(&meta).map_err(|reason| Error::Untrusted {
        path: path.to_path_buf(),
        reason,
    })?;
    if let Some(dir) = resolved.parent() {
        check_dir(dir)?;
    }
    // The link's own directory decides which file the link names.
    let link_dir = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("/"),
    };
    let link_dir = fs::canonicalize(link_dir).map_err(|source| Error::Read {
        path: link_dir.to_path_buf(),
        source,
    })?;
    if Some(link_dir.as_path()) != resolved.parent() {
        check_dir(&link_dir)?;
    }
    Ok(())
}

/// Checks a directory of unit files (symlinks followed): owned by root, not
/// writable by group or others. The daemon checks its units directory once with this.
pub fn check_dir(path: &Path) -> Result<(), Error> {
    let meta = fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::Untrusted {
            path: path.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    owned_by_root_and_closed(&meta).map_err(|reason| Error::Untrusted {
        path: path.to_path_buf(),
        reason,
    })
}

/// The reason a file or directory is untrusted, if it is.
fn owned_by_root_and_closed(meta: &fs::Metadata) -> Result<(), String> {
    if meta.uid() != 0 {
        return Err(format!("owned by uid {}, not root", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & GROUP_OTHER_WRITE != 0 {
        return Err(format!("writable by group or others (mode {mode:04o})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        let done = fs::set_permissions(path, fs::Permissions::from_mode(mode));
        assert!(done.is_ok(), "chmod {}: {done:?}", path.display());
    }

    fn reason(result: Result<(), Error>) -> Option<String> {
        match result {
            Ok(()) => None,
            Err(Error::Untrusted { reason, .. }) => Some(reason),
            Err(e) => Some(format!("other error: {e}")),
        }
    }

    #[test]
    fn file_modes() {
        // The tests run as root, so every file created here is owned by root.
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir");
        };
        chmod(dir.path(), 0o755);
        let file = dir.path().join("web.toml");
        assert!(fs::write(&file, "").is_ok());
        let cases: &[(u32, Option<&str>)] = &[
            (0o644, None),
            (0o600, None),
            (0o444, None),
            (0o664, Some("writable by group or others (mode 0664)")),
            (0o666, Some("writable by group or others (mode 0666)")),
            (0o646, Some("writable by group or others (mode 0646)")),
        ];
        for (mode, want) in cases {
            chmod(&file, *mode);
            assert_eq!(reason(check(&file)).as_deref(), *want, "mode {mode:o}");
        }
    }

    #[test]
    fn directory_modes() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir");
        };
        let file = dir.path().join("web.toml");
        assert!(fs::write(&file, "").is_ok());
        chmod(&file, 0o644);
        chmod(dir.path(), 0o777);
        assert_eq!(
            reason(check(&file)).as_deref(),
            Some("writable by group or others (mode 0777)")
        );
        assert_eq!(
            reason(check_dir(dir.path())).as_deref(),
            Some("writable by group or others (mode 0777)")
        );
        chmod(dir.path(), 0o755);
        assert_eq!(reason(check(&file)), None);
        assert_eq!(reason(check_dir(dir.path())), None);
        assert_eq!(reason(check_dir(&file)).as_deref(), Some("not a directory"));
        assert_eq!(
            reason(check(dir.path())).as_deref(),
            Some("not a regular file")
        );
    }

    #[test]
    fn ownership() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir");
        };
        chmod(dir.path(), 0o755);
        let file = dir.path().join("web.toml");
        assert!(fs::write(&file, "").is_ok());
        chmod(&file, 0o644);
        assert!(std::os::unix::fs::chown(&file, Some(1000), Some(1000)).is_ok());
        assert_eq!(
            reason(check(&file)).as_deref(),
            Some("owned by uid 1000, not root")
        );
    }

    #[test]
    fn symlinks_check_the_target_and_both_directories() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir");
        };
        chmod(dir.path(), 0o755);
        let units = dir.path().join("units");
        let elsewhere = dir.path().join("elsewhere");
        assert!(fs::create_dir(&units).is_ok() && fs::create_dir(&elsewhere).is_ok());
        chmod(&units, 0o755);
        let target = elsewhere.join("web.toml");
        assert!(fs::write(&target, "").is_ok());
        chmod(&target, 0o644);
        let link = units.join("web.toml");
        assert!(symlink(&target, &link).is_ok());

        chmod(&elsewhere, 0o777);
        assert_eq!(
            reason(check(&link)).as_deref(),
            Some("writable by group or others (mode 0777)")
        );
        chmod(&elsewhere, 0o755);
        assert_eq!(reason(check(&link)), None);
        chmod(&target, 0o666);
        assert_eq!(
            reason(check(&link)).as_deref(),
            Some("writable by group or others (mode 0666)")
        );
        chmod(&target, 0o644);
        chmod(&units, 0o777);
        assert_eq!(
            reason(check(&link)).as_deref(),
            Some("writable by group or others (mode 0777)")
        );
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let result = check(Path::new("/nonexistent/rcd/web.toml"));
        assert!(matches!(result, Err(Error::Read { .. })), "{result:?}");
    }
}
