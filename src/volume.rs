//! Named volumes: directories under `<root>/volumes/NAME/_data` (Docker's layout), made on a
//! unit's first use, filled once from the image's content at the mount point (Docker's
//! copy-up), kept when the unit goes; removed only by `rctl volume rm` or `prune`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A volume operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such volume.
    #[error("no volume {0:?}")]
    Absent(String),
    /// A loaded unit names it.
    #[error("volume {name:?} is in use by unit {}", units.join(", unit "))]
    InUse {
        /// The volume.
        name: String,
        /// The units naming it.
        units: Vec<String>,
    },
    /// Not a volume name.
    #[error("invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64")]
    Name(String),
    /// The filesystem refused.
    #[error("volume {name:?}: {path}: {source}")]
    Io {
        /// The volume.
        name: String,
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What `rctl volume ls` and `inspect` show of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// Its name.
    pub name: String,
    /// Its data directory on the host.
    pub mountpoint: PathBuf,
    /// When it was made (RFC 3339).
    pub created: String,
    /// Bytes of its files.
    pub size: u64,
    /// Units whose file names it.
    pub used_by: Vec<String>,
}

/// Whether `name` is a volume name (Docker's rule, bounded).
pub fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The volumes under one directory.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    /// Volumes kept in `dir` (`<root>/volumes`).
    pub fn new(dir: PathBuf) -> Self {
        Volumes { dir }
    }

    fn io(name: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let name = name.to_owned();
        let path = path.display().to_string();
        move |source| Error::Io { name, path, source }
    }

    /// Volume `name`'s data directory.
    pub fn data(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Makes volume `name` if it does not exist; true if it was made now. Made whole or not
    /// at all: a directory beside, renamed into place.
    pub fn ensure(&self, name: &str) -> Result<bool, Error> {
        if !valid_name(name) {
            return Err(Error::Name(name.to_owned()));
        }
        if self.data(name).is_dir() {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.dir).map_err(Self::io(name, &self.dir))?;
        let tmp = self.dir.join(format!(".{name}.new{}", std::process::id()));
        let _ = crate::tree::remove(&tmp);
        let data = tmp.join("_data");
        std::fs::create_dir_all(&data).map_err(Self::io(name, &data))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o701))
            .map_err(Self::io(name, &tmp))?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))
            .map_err(Self::io(name, &data))?;
        let dest = self.dir.join(name);
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(true),
            // Made meanwhile by another start: theirs stands.
            Err(_) if self.data(name).is_dir() => {
                let _ = crate::tree::remove(&tmp);
                Ok(false)
            }
            Err(e) => {
                let _ = crate::tree::remove(&tmp);
                Err(Self::io(name, &dest)(e))
            }
        }
    }

    /// The names of the volumes there are, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n) && self.data(n).is_dir())
            .collect();
        out.sort();
        out
    }

    /// What there is to show of volume `name`, with `used_by` the units naming it, and its
    /// size (a walk of its files).
    pub fn info(&self, name: &str, used_by: Vec<String>) -> Result<VolumeInfo, Error> {
        let mut info = self.describe(name, used_by)?;
        info.size = crate::tree::size(&info.mountpoint);
        Ok(info)
    }

    /// [`Volumes::info`] without the size (0): no walk of the files, for listings polled often.
    pub fn describe(&self, name: &str, used_by: Vec<String>) -> Result<VolumeInfo, Error> {
        let data = self.data(name);
        if !valid_name(name) || !data.is_dir() {
            return Err(Error::Absent(name.to_owned()));
        }
        // Its birth time where the filesystem keeps one, else when it last changed.
        let made = std::fs::metadata(self.dir.join(name))
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .unwrap_or(std::time::UNIX_EPOCH);
        Ok(VolumeInfo {
            name: name.to_owned(),
            mountpoint: data.clone(),
            created: humantime::format_rfc3339_millis(made).to_string(),
            size: 0,
            used_by,
        })
    }

    /// Removes volume `name` (the caller checked it is unused).
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        if !valid_name(name) || !self.data(name).is_dir() {
            return Err(Error::Absent(name.to_owned()));
        }
        // Renamed away first, so a half-removed volume is never found by a start.
        let path = self.dir.join(name);
        let gone = self.dir.join(format!(".{name}.gone{}", std::process::id()));
        std::fs::rename(&path, &gone).map_err(Self::io(name, &path))?;
        crate::tree::remove(&gone).map_err(Self::io(name, &gone))
    }
}

/// Docker's copy-up: the image's content at `target` inside `rootfs` (files, directories,
/// links, with owners and modes) into the new volume's `data`, whose own owner and mode become
/// the image directory's. Nothing is copied when the path is not a directory in the image or
/// goes through a symbolic link (image content is untrusted: a link could point anywhere on
/// the host).
pub fn copy_up(rootfs: &Path, target: &str, data: &Path) -> std::io::Result<()> {
    let mut src = rootfs.to_path_buf();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(part) => {
                src.push(part);
                match std::fs::symlink_metadata(&src) {
                    Ok(m) if m.file_type().is_symlink() => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            Component::RootDir | Component::CurDir => {}
            // Refused when the unit was loaded; never followed here.
            _ => return Ok(()),
        }
    }
    let meta = std::fs::symlink_metadata(&src)?;
    if !meta.is_dir() {
        return Ok(());
    }
    copy_tree(&src, data)?;
    own_like(data, &meta)
}

fn own_like(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// Copies what is below `src` into `dst` with a work list, not recursion: an image's tree may
/// nest as deep as its paths' length limit allows. Directories get their owner and mode last,
/// once their contents are in.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    let mut dirs = Vec::new();
    while let Some((src, dst)) = pending.pop() {
        for entry in std::fs::read_dir(&src)? {
            let entry = entry?;
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let meta = std::fs::symlink_metadata(&from)?;
            let t = meta.file_type();
            if t.is_dir() {
                std::fs::create_dir(&to)?;
                pending.push((from, to.clone()));
                dirs.push((to, meta));
                continue;
            } else if t.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            } else if t.is_file() {
                std::fs::copy(&from, &to)?;
            } else {
                // Devices, fifos, sockets: not data; Docker's copy skips what it cannot copy
                // too.
                continue;
            }
            own_like(&to, &meta)?;
        }
    }
    for (dir, meta) in dirs.iter().rev() {
        own_like(dir, meta)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (n, ok) in [
            ("pgdata", true),
            ("a.b-c_d", true),
            ("-x", false),
            ("", false),
            ("a/b", false),
            ("..", false),
        ] {
            assert_eq!(valid_name(n), ok, "{n:?}");
        }
    }

    #[test]
    fn copy_up_copies_the_tree_and_never_follows_a_link() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        std::fs::create_dir_all(root.join("srv/data/sub")).unwrap();
        std::fs::write(root.join("srv/data/sub/f"), "seed").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("srv/escape")).unwrap();
        std::os::unix::fs::symlink("sub/f", root.join("srv/data/link")).unwrap();
        let v = Volumes::new(t.path().join("volumes"));
        assert!(v.ensure("one").unwrap());
        assert!(!v.ensure("one").unwrap());
        copy_up(&root, "/srv/data", &v.data("one")).unwrap();
        assert_eq!(
            std::fs::read_to_string(v.data("one").join("sub/f")).unwrap(),
            "seed"
        );
        assert_eq!(
            std::fs::read_link(v.data("one").join("link")).unwrap(),
            Path::new("sub/f")
        );
        v.ensure("two").unwrap();
        copy_up(&root, "/srv/escape", &v.data("two")).unwrap();
        assert_eq!(
            std::fs::read_dir(v.data("two")).unwrap().count(),
            0,
            "nothing through a link"
        );
        assert_eq!(v.names(), ["one", "two"]);
        v.remove("two").unwrap();
        assert_eq!(v.names(), ["one"]);
        assert!(matches!(v.remove("two"), Err(Error::Absent(_))));
    }
}
