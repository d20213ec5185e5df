//! Secrets on the host side: a small tmpfs per container instance (`<instance>/secrets`, never
//! on disk) holding one file per file secret, bound read-only into the container; variables
//! for the secrets delivered in the environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::Error;
use crate::unit::{Mount, MountKind, Unit};

/// The instance's secrets directory.
pub fn dir_of(instance: &Path) -> PathBuf {
    instance.join("secrets")
}

/// Writes `unit`'s secrets for the instance in `instance` (mounting its tmpfs first if need
/// be; a rewrite keeps each file's inode, so a running container sees the new content) and
/// returns the variables of the secrets delivered in the environment.
pub fn stage(instance: &Path, unit: &Unit) -> Result<Vec<(String, String)>, Error> {
    let err = |what: &str, e: String| Error::Secret {
        unit: unit.name.clone(),
        reason: format!("{what}: {e}"),
    };
    let mut vars = Vec::new();
    if unit.secrets.is_empty() {
        return Ok(vars);
    }
    let dir = dir_of(instance);
    if unit.secrets.iter().any(|s| s.target.is_some()) && !crate::rootfs::is_mounted(&dir) {
        std::fs::create_dir_all(&dir).map_err(|e| err("secrets directory", e.to_string()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err("secrets directory", e.to_string()))?;
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=4m,mode=0700"),
        )
        .map_err(|e| err("mounting the secrets tmpfs", e.to_string()))?;
    }
    for s in &unit.secrets {
        let bytes =
            crate::unit::secrets::read(s).map_err(|e| err(&format!("secret {}", s.name), e))?;
        match &s.env {
            Some(var) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    err(
                        &format!("secret {}", s.name),
                        "not UTF-8 text, so not a variable".into(),
                    )
                })?;
                // A file ends with a newline; a password in a variable does not.
                let value = text.strip_suffix('\n').unwrap_or(&text).to_owned();
                vars.push((var.clone(), value));
            }
            None => {
                // In place: the container's bind mount holds the file's inode.
                let path = dir.join(&s.name);
                crate::network::files::write_in_place(&path, &bytes)
                    .map_err(|e| err(&format!("secret {}", s.name), e.to_string()))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(s.mode))
                    .map_err(|e| err(&format!("secret {}", s.name), e.to_string()))?;
            }
        }
    }
    Ok(vars)
}

/// The read-only bind mounts of `unit`'s file secrets from the instance's tmpfs.
pub fn mounts(instance: &Path, unit: &Unit) -> Vec<Mount> {
    let dir = dir_of(instance);
    unit.secrets
        .iter()
        .filter_map(|s| {
            Some(Mount {
                kind: MountKind::Bind,
                source: dir.join(&s.name),
                target: s.target.clone()?,
                readonly: true,
                create: false,
                size: None,
                mode: None,
            })
        })
        .collect()
}
