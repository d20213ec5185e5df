//! The attachment cache: one file per (network, container, interface), written when an ADD
//! starts and again when it ends, removed by a successful DEL. It holds the configuration and
//! parameters the ADD ran with and its result, so that a DEL after a daemon restart (or after
//! the operator edited or removed the network) undoes exactly what the ADD did.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Attachment, CniResult, Error, NetworkList};
use crate::store::atomic;

/// Tells a cache file from other JSON, and its version from later ones.
const KIND: &str = "rcd-cni-attachment/1";

/// An attachment as the cache remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAttachment {
    /// The network configuration the ADD ran with.
    pub network: NetworkList,
    /// The ADD's parameters.
    pub attachment: Attachment,
    /// The ADD's result so far: the last plugin's output (None before the first one ended).
    pub result: Option<CniResult>,
    /// True once every plugin's ADD succeeded; false while it runs or after a crash in it.
    pub complete: bool,
}

/// The file's form.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    kind: String,
    network: Value,
    attachment: Attachment,
    #[serde(default)]
    result: Option<Value>,
    complete: bool,
}

/// The file for an attachment. `+` is in neither network names nor container ids, so the
/// name is unambiguous.
pub(crate) fn path(dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{network}+{container_id}+{ifname}.json"))
}

/// Writes an entry atomically; `durable` also fsyncs its data (the final result, which a DEL
/// after a power cut still needs to release IPAM leases kept on disk).
pub(crate) fn write(
    dir: &Path,
    network: &NetworkList,
    attachment: &Attachment,
    result: Option<&Value>,
    complete: bool,
) -> Result<(), Error> {
    let file = path(
        dir,
        &network.name,
        &attachment.container_id,
        &attachment.ifname,
    );
    let entry = Entry {
        kind: KIND.to_string(),
        network: network.raw.clone(),
        attachment: attachment.clone(),
        result: result.cloned(),
        complete,
    };
    let cache_err = |source| Error::Cache {
        path: file.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(cache_err)?;
    // In-progress entries only need to survive a daemon crash; the final one is fsynced.
    let sync = if complete {
        atomic::Sync::Data
    } else {
        atomic::Sync::None
    };
    atomic::write_json_with(&file, &entry, sync).map_err(cache_err)
}

/// Reads an entry; None if there is none.
pub(crate) fn read(file: &Path) -> Result<Option<CachedAttachment>, Error> {
    let cache_err = |source| Error::Cache {
        path: file.to_path_buf(),
        source,
    };
    let Some(entry) = atomic::read_json::<Entry>(file).map_err(cache_err)? else {
        return Ok(None);
    };
    let bad = |message: String| {
        cache_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            message,
        ))
    };
    if entry.kind != KIND {
        return Err(bad(format!("kind {:?}, not {KIND:?}", entry.kind)));
    }
    let network = NetworkList::from_value(entry.network, &file.display().to_string())?;
    let result = match entry.result {
        Some(v) => Some(CniResult::from_value(v).map_err(|e| bad(format!("result: {e}")))?),
        None => None,
    };
    Ok(Some(CachedAttachment {
        network,
        attachment: entry.attachment,
        result,
        complete: entry.complete,
    }))
}

/// Removes an entry; a missing one is fine.
pub(crate) fn remove(file: &Path) -> Result<(), Error> {
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Cache {
            path: file.to_path_buf(),
            source,
        }),
    }
}

/// Every entry file in `dir`. Temporary files of interrupted writes are dotfiles: skipped, and
/// removed when a process that is gone left them.
pub(crate) fn list(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Cache {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Cache {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(".json") {
            files.push(entry.path());
        } else if crate::store::atomic::is_stale_temp(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    files.sort();
    Ok(files)
}
