//! What a container mounts from the host, made ready at its start: bind sources checked (or
//! made, with `create`), named volumes made and filled on first use, secrets staged on the
//! instance's tmpfs. Out come the mounts as the spec takes them and the secret variables.

use std::path::{Path, PathBuf};

use super::{secrets, Error};
use crate::context::Context;
use crate::unit::{Mount, MountKind, Unit};

/// What `prepare` made ready.
pub struct Prepared {
    /// The unit's mounts with host paths (a volume's data directory for its name), then its
    /// file secrets' read-only binds.
    pub mounts: Vec<Mount>,
    /// The variables of its secrets delivered in the environment.
    pub vars: Vec<(String, String)>,
}

/// Makes the unit's mounts ready for the container of the instance in `instance`, whose root
/// filesystem is mounted at `rootfs`.
pub fn prepare(
    ctx: &Context,
    unit: &Unit,
    instance: &Path,
    rootfs: &Path,
) -> Result<Prepared, Error> {
    let mut mounts = Vec::with_capacity(unit.mounts.len() + unit.secrets.len());
    for m in &unit.mounts {
        let mut m = m.clone();
        match m.kind {
            MountKind::Bind => bind_source(&m)?,
            MountKind::Volume => m.source = volume(ctx, &m, rootfs)?,
            MountKind::Tmpfs => {}
        }
        mounts.push(m);
    }
    let vars = secrets::stage(instance, unit)?;
    mounts.extend(secrets::mounts(instance, unit));
    Ok(Prepared { mounts, vars })
}

/// A bind source: made where asked (every start: it may have been removed meanwhile), else a
/// clear error now rather than the runtime's later.
fn bind_source(m: &Mount) -> Result<(), Error> {
    // An existing source (a file too, through a symlink: `/etc/localtime`) is used as it is.
    if m.create && !m.source.exists() {
        std::fs::create_dir_all(&m.source).map_err(|e| Error::MountSource {
            path: m.source.clone(),
            reason: format!("cannot create it: {e}"),
        })
    } else if std::fs::symlink_metadata(&m.source).is_err() {
        Err(Error::MountSource {
            path: m.source.clone(),
            reason: "does not exist (`create = true` makes a missing directory)".into(),
        })
    } else {
        Ok(())
    }
}

/// Volume `m.source`'s data directory, the volume made on first use and then filled from the
/// image's content at the mount point (Docker's copy-up).
fn volume(ctx: &Context, m: &Mount, rootfs: &Path) -> Result<PathBuf, Error> {
    let name = m.source.to_string_lossy().into_owned();
    let made = ctx.volumes.ensure(&name)?;
    let data = ctx.volumes.data(&name);
    if made {
        if let Err(e) = crate::volume::copy_up(rootfs, &m.target, &data) {
            // Made again, and filled again, at the next start.
            let _ = ctx.volumes.remove(&name);
            return Err(Error::MountSource {
                path: data,
                reason: format!("copying the image's {} into volume {name}: {e}", m.target),
            });
        }
        tracing::info!(volume = %name, "volume created");
    }
    Ok(data)
}
